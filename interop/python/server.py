"""A plain (non-xDS) Python gRPC Greeter server for meshlet's interop tests.

It serves /meshlet.example.greeter.v1.Greeter/SayHello on 127.0.0.1 with
gRPC's generic API and hand-encoded messages (greeter_wire), answering with
its version and instance (its address). --fail makes every call end with
UNAVAILABLE, and --delay makes every call wait first, so that tests can
see retries and route timeouts. It logs each call on stderr ("call N:
..."). Once serving it prints one JSON line, {"port": N}; it stops when
its standard input ends (the test that started it is gone) or on SIGTERM.

Run with Debian's /usr/bin/python3 and python3-grpcio:
    /usr/bin/python3 server.py --version v1 [--port 0] [--fail] [--delay 2.5]
"""

import argparse
import json
import signal
import sys
import threading
import time
from concurrent import futures

import grpc

import greeter_wire


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    p.add_argument("--version", required=True, help="the version label it answers with")
    p.add_argument("--fail", action="store_true", help="answer every call UNAVAILABLE")
    p.add_argument("--delay", type=float, default=0.0, help="seconds to wait before answering")
    args = p.parse_args()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    port = server.add_insecure_port("127.0.0.1:%d" % args.port)
    if port == 0:
        sys.exit("server.py: cannot listen on 127.0.0.1:%d" % args.port)
    instance = "127.0.0.1:%d" % port
    calls = [0]
    lock = threading.Lock()

    def say_hello(request, context):
        name = greeter_wire.parse_request(request)
        with lock:
            calls[0] += 1
            n = calls[0]
        # One line a call, which tests count.
        print("call %d: SayHello(%r)%s" % (n, name, " fails" if args.fail else ""), file=sys.stderr, flush=True)
        if args.delay > 0:
            # Ends early when the caller gives up, so a timed-out call does
            # not hold a worker.
            deadline = time.monotonic() + args.delay
            while context.is_active() and time.monotonic() < deadline:
                time.sleep(0.01)
            if not context.is_active():
                return b""
        if args.fail:
            context.abort(grpc.StatusCode.UNAVAILABLE, "%s fails on purpose" % instance)
        return greeter_wire.hello_reply("hello " + name, args.version, instance)

    handler = grpc.method_handlers_generic_handler(
        greeter_wire.SERVICE, {"SayHello": grpc.unary_unary_rpc_method_handler(say_hello)})
    server.add_generic_rpc_handlers((handler,))
    server.start()
    print(json.dumps({"port": port}), flush=True)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())

    def watch_stdin():
        sys.stdin.read()
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    done.wait()
    server.stop(grace=1).wait(2)


if __name__ == "__main__":
    main()
