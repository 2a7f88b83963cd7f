"""A Python gRPC Greeter client for meshlet's interop tests.

It calls /meshlet.example.greeter.v1.Greeter/SayHello on a target, an
xds:///host:port target that gRPC's own xDS client resolves from the
bootstrap file that GRPC_XDS_BOOTSTRAP names, with gRPC's generic API and
hand-encoded messages (greeter_wire). It waits (bounded) for the channel
to be ready, makes --count calls one after another, prints one JSON line
per call and exits 0 (with --hold, once its standard input ends):

    {"ok": true, "version": "v1", "instance": "127.0.0.1:4242", "message": "...", "ms": 0.8}
    {"ok": false, "code": "UNAVAILABLE", "message": "...", "ms": 1.2}

A channel that is not ready in time is reported on stderr and the calls
are made anyway, so that they fail with the status gRPC gives them.

Run with Debian's /usr/bin/python3 and python3-grpcio:
    GRPC_XDS_BOOTSTRAP=bootstrap.json /usr/bin/python3 client.py \
        --target xds:///greeter.default.svc.cluster.local:50051 --count 10 \
        [--metadata end-user=jason] [--timeout 5] [--xds-creds] [--hold] \
        [--interval 0.05] [--calls-per-channel 10]
"""

import argparse
import json
import sys
import time

import grpc
import grpc.experimental  # insecure_channel_credentials, the xDS credentials' fallback

import greeter_wire


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", required=True, help="e.g. xds:///greeter.default.svc.cluster.local:50051")
    p.add_argument("--count", type=int, default=1, help="how many calls to make")
    p.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE",
                   help="request metadata for every call (repeatable)")
    p.add_argument("--timeout", type=float, default=5.0, help="each call's deadline, in seconds")
    p.add_argument("--ready-timeout", type=float, default=15.0,
                   help="how long to wait for the channel to be ready, in seconds")
    p.add_argument("--xds-creds", action="store_true",
                   help="use the TLS settings xDS gives (certificate providers), plaintext where it gives none")
    p.add_argument("--name", default="interop", help="the name in each request")
    p.add_argument("--interval", type=float, default=0.0, help="seconds between calls")
    p.add_argument("--calls-per-channel", type=int, default=0,
                   help="a new channel (and connection) every N calls; 0: one for all")
    p.add_argument("--hold", action="store_true",
                   help="after the calls, keep the channel (and its xDS stream) until stdin ends")
    args = p.parse_args()

    metadata = []
    for kv in args.metadata:
        key, sep, value = kv.partition("=")
        if not sep:
            sys.exit("client.py: --metadata %r: want KEY=VALUE" % kv)
        metadata.append((key.lower(), value))

    def new_channel():
        # A local subchannel pool: a new channel makes its own connection
        # (and TLS handshake, with the certificate files as they are now)
        # instead of sharing the process's.
        options = [("grpc.use_local_subchannel_pool", 1)]
        if args.xds_creds:
            creds = grpc.xds_channel_credentials(grpc.experimental.insecure_channel_credentials())
            channel = grpc.secure_channel(args.target, creds, options=options)
        else:
            channel = grpc.insecure_channel(args.target, options=options)
        try:
            grpc.channel_ready_future(channel).result(timeout=args.ready_timeout)
        except grpc.FutureTimeoutError:
            print("client.py: channel to %s not ready after %.1fs; calling anyway" %
                  (args.target, args.ready_timeout), file=sys.stderr, flush=True)
        return channel

    request = greeter_wire.hello_request(args.name)
    channel = None
    for i in range(args.count):
        if channel is None or (args.calls_per_channel and i % args.calls_per_channel == 0):
            # The new channel first: the process's xDS client (and its
            # stream) lives as long as some channel uses it.
            old, channel = channel, new_channel()
            if old is not None:
                old.close()
            say_hello = channel.unary_unary(greeter_wire.METHOD)  # no serializers: bytes in, bytes out
        elif args.interval > 0:
            time.sleep(args.interval)
        start = time.monotonic()
        try:
            reply = greeter_wire.parse_reply(say_hello(request, timeout=args.timeout, metadata=metadata))
            line = {"ok": True, "version": reply["version"], "instance": reply["instance"], "message": reply["message"]}
        except grpc.RpcError as e:
            line = {"ok": False, "code": e.code().name, "message": e.details() or ""}
        line["ms"] = round((time.monotonic() - start) * 1000, 3)
        print(json.dumps(line), flush=True)
    if args.hold:
        # The test looks at this client's xDS stream on the control plane,
        # then closes our stdin.
        sys.stdin.read()
    if channel is not None:
        channel.close()

if __name__ == "__main__":
    main()
