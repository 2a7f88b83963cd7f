package main

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
)

// pprofEnv names the variable that serves net/http/pprof, for debugging
// only: it is not a flag, and it refuses an address off loopback, since
// profiles show what the process holds.
const pprofEnv = "MESHLET_PPROF_ADDR"

// startPprof serves /debug/pprof/ on $MESHLET_PPROF_ADDR when it is set
// to a loopback address, and returns what stops it.
func startPprof(log *slog.Logger) func() {
	addr := os.Getenv(pprofEnv)
	if addr == "" {
		return func() {}
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		log.Warn(pprofEnv+" is not a loopback ip:port; pprof is off", "value", addr)
		return func() {}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Warn("pprof is off", "err", err)
		return func() {}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	log.Info("debugging: pprof serving", "address", ln.Addr().String())
	return func() { srv.Close() }
}
