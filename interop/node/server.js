'use strict';
// A plain (non-xDS) Node gRPC Greeter server for meshlet's interop tests.
//
// It serves /meshlet.example.greeter.v1.Greeter/SayHello on 127.0.0.1 with
// grpc-js's generic service definitions and hand-encoded messages
// (greeter_wire.js), answering with its version and instance (its
// address). --fail makes every call end with UNAVAILABLE, and --delay
// (seconds) makes every call wait first, so that tests can see retries
// and route timeouts. It logs each call on stderr ("call N: ..."). Once
// serving it prints one JSON line, {"port": N}; it stops when its
// standard input ends (the test that started it is gone) or on SIGTERM.
//
//   node server.js --version v1 [--port 0] [--fail] [--delay 2.5]

const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const wire = require('./greeter_wire');

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    version: { type: 'string' },
    fail: { type: 'boolean', default: false },
    delay: { type: 'string', default: '0' },
  },
});
if (!args.version) {
  console.error('server.js: --version is required');
  process.exit(2);
}
const delayMs = Number(args.delay) * 1000;

const server = new grpc.Server();
let instance = '';
let calls = 0;
server.addService(
  {
    SayHello: {
      path: wire.METHOD,
      requestStream: false,
      responseStream: false,
      requestSerialize: wire.raw,
      requestDeserialize: wire.raw,
      responseSerialize: wire.raw,
      responseDeserialize: wire.raw,
    },
  },
  {
    SayHello: (call, callback) => {
      const name = wire.parseRequest(call.request);
      // One line a call, which tests count.
      console.error(`call ${++calls}: SayHello(${JSON.stringify(name)})${args.fail ? ' fails' : ''}`);
      let timer;
      const answer = () => {
        call.removeListener('cancelled', cancelled);
        if (args.fail) {
          callback({ code: grpc.status.UNAVAILABLE, details: `${instance} fails on purpose` });
          return;
        }
        callback(null, wire.helloReply(`hello ${name}`, args.version, instance));
      };
      // A caller that gives up ends the wait, so that it holds no timer.
      const cancelled = () => clearTimeout(timer);
      call.on('cancelled', cancelled);
      if (delayMs > 0) timer = setTimeout(answer, delayMs);
      else answer();
    },
  },
);

server.bindAsync(`127.0.0.1:${Number(args.port)}`, grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    console.error(`server.js: cannot listen on 127.0.0.1:${args.port}: ${err.message}`);
    process.exit(1);
  }
  instance = `127.0.0.1:${port}`;
  process.stdout.write(JSON.stringify({ port }) + '\n');
});

const stop = () => server.tryShutdown(() => process.exit(0));
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
