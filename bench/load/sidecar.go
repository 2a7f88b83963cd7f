//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"text/template"
	"time"
)

// findHAProxy returns the haproxy binary's path, or an error that says how
// to install it.
func findHAProxy(name string) (string, error) {
	bin, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("haproxy not found (%v): install it with `apt-get install -y haproxy` (Debian; bench/run does that when run as root), or give its path with -haproxy", err)
	}
	return bin, nil
}

// haproxyConfig is the config of one sidecar: A listens in plaintext and
// forwards over mTLS, checking B's certificate and name; B accepts only
// mTLS with a certificate of the same CA and forwards in plaintext. Both
// proxy HTTP (mode http, as a sidecar of an HTTP service does) and keep
// connections alive on both sides, reusing server connections across
// client connections. No logging.
var haproxyConfig = template.Must(template.New("haproxy").Parse(`global
    nbthread {{.Threads}}
    maxconn 4096
    ssl-server-verify required

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s

frontend in
{{- if .Listen.TLS}}
    bind {{.Listen.Addr}} ssl crt {{.Certs.B}} ca-file {{.Certs.CA}} verify required
{{- else}}
    bind {{.Listen.Addr}}
{{- end}}
    default_backend out

backend out
{{- if .Forward.TLS}}
    server next {{.Forward.Addr}} ssl crt {{.Certs.A}} ca-file {{.Certs.CA}} verify required verifyhost {{.ServerName}} sni str({{.ServerName}})
{{- else}}
    server next {{.Forward.Addr}}
{{- end}}
`))

type hop struct {
	Addr string
	TLS  bool
}

// haproxy is one haproxy child process.
type haproxy struct {
	cmd     *exec.Cmd
	log     string
	exited  chan struct{}
	waitErr error
}

// startHAProxy runs bin in the foreground (-db: one process, its threads
// included in its /proc/<pid>/stat) with the config of a sidecar from
// listen to forward, and returns once listen accepts connections.
func startHAProxy(ctx context.Context, bin, dir, name string, threads int, certs sidecarCerts, listen, forward hop) (*haproxy, error) {
	cfg := filepath.Join(dir, name+".cfg")
	var b strings.Builder
	if err := haproxyConfig.Execute(&b, map[string]any{
		"Threads": threads, "Certs": certs, "Listen": listen, "Forward": forward, "ServerName": sidecarServerName,
	}); err != nil {
		return nil, err
	}
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	h := &haproxy{log: filepath.Join(dir, name+".log"), exited: make(chan struct{})}
	logf, err := os.Create(h.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own descriptor
	h.cmd = exec.Command(bin, "-db", "-f", cfg)
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := h.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() {
		h.waitErr = h.cmd.Wait()
		close(h.exited)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", listen.Addr, time.Second)
		if err == nil {
			c.Close()
			return h, nil
		}
		select {
		case <-h.exited:
			out, _ := os.ReadFile(h.log)
			return nil, fmt.Errorf("haproxy %s exited (%v): %s", name, h.waitErr, strings.TrimSpace(string(out)))
		case <-ctx.Done():
			h.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			h.stop()
			return nil, fmt.Errorf("haproxy %s not listening on %s after 10s (log: %s)", name, listen.Addr, h.log)
		}
	}
}

// stop ends the process: SIGTERM, then SIGKILL after 5s.
func (h *haproxy) stop() {
	h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
		return
	case <-time.After(5 * time.Second):
	}
	h.cmd.Process.Kill()
	<-h.exited
}

// startSidecars starts the sidecar pattern: the handler on a plain
// net/http server, haproxy B in front of it, haproxy A in front of B, and
// a plain client of A whose connections it counts.
func startSidecars(ctx context.Context, c config, bin, dir string) (*variant, error) {
	certs, err := writeSidecarCerts(dir)
	if err != nil {
		return nil, fmt.Errorf("sidecar certificates: %w", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: handler(c.size)}
	go srv.Serve(lis)
	var procs []*haproxy
	stopAll := func() {
		for _, p := range procs {
			p.stop()
		}
		srv.Close()
	}
	aAddr, bAddr, err := freeLoopbackAddr(), freeLoopbackAddr(), error(nil)
	if aAddr == "" || bAddr == "" {
		err = errors.New("no free loopback port")
	}
	for _, s := range []struct {
		name            string
		listen, forward hop
	}{
		{"b", hop{bAddr, true}, hop{lis.Addr().String(), false}},
		{"a", hop{aAddr, false}, hop{bAddr, true}},
	} {
		if err != nil {
			break
		}
		var p *haproxy
		if p, err = startHAProxy(ctx, bin, dir, s.name, c.haproxyThreads, certs, s.listen, s.forward); err == nil {
			procs = append(procs, p)
		}
	}
	if err != nil {
		stopAll()
		return nil, err
	}
	var dials atomic.Int64
	tr := keepAlive()
	dialer := &net.Dialer{}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return dialer.DialContext(ctx, network, addr)
	}
	v := &variant{
		name:   "haproxy",
		client: &http.Client{Transport: tr},
		url:    "http://" + aAddr + "/",
		peer:   "plaintext",
		pids:   []int{procs[1].cmd.Process.Pid, procs[0].cmd.Process.Pid}, // A, B
		conns:  dials.Load,
		close: func() {
			tr.CloseIdleConnections()
			stopAll()
		},
	}
	if err := v.probe(ctx, c); err != nil {
		v.close()
		return nil, err
	}
	return v, nil
}

// freeLoopbackAddr returns a loopback address with a port free now, or ""
// if there is none.
func freeLoopbackAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return ""
	}
	defer l.Close()
	return l.Addr().String()
}
