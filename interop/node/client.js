'use strict';
// A Node gRPC Greeter client for meshlet's interop tests.
//
// It calls /meshlet.example.greeter.v1.Greeter/SayHello on a target, an
// xds:///host:port target that @grpc/grpc-js-xds resolves from the
// bootstrap file that GRPC_XDS_BOOTSTRAP names, with grpc-js's generic
// makeUnaryRequest and hand-encoded messages (greeter_wire.js). It waits
// (bounded) for the channel to be ready, makes --count calls one after
// another, prints one JSON line per call and exits 0 (with --hold, once
// its standard input ends):
//
//   {"ok":true,"version":"v1","instance":"127.0.0.1:4242","ms":0.8}
//   {"ok":false,"code":"UNAVAILABLE","message":"...","ms":1.2}
//
// A channel that is not ready in time is reported on stderr and the calls
// are made anyway, so that they fail with the status gRPC gives them.
//
//   GRPC_XDS_BOOTSTRAP=bootstrap.json node client.js \
//     --target xds:///greeter.default.svc.cluster.local:50051 --count 10 \
//     [--metadata end-user=jason] [--timeout 5] [--xds-creds] [--hold]

const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const xds = require('@grpc/grpc-js-xds');
const wire = require('./greeter_wire');

const { values: args } = parseArgs({
  options: {
    target: { type: 'string' },
    count: { type: 'string', default: '1' },
    metadata: { type: 'string', multiple: true, default: [] },
    timeout: { type: 'string', default: '5' },
    'ready-timeout': { type: 'string', default: '15' },
    'xds-creds': { type: 'boolean', default: false },
    name: { type: 'string', default: 'interop' },
    hold: { type: 'boolean', default: false },
  },
});
if (!args.target) {
  console.error('client.js: --target is required');
  process.exit(2);
}

xds.register();

const metadata = new grpc.Metadata();
for (const kv of args.metadata) {
  const i = kv.indexOf('=');
  if (i < 0) {
    console.error(`client.js: --metadata ${kv}: want KEY=VALUE`);
    process.exit(2);
  }
  metadata.add(kv.slice(0, i).toLowerCase(), kv.slice(i + 1));
}

const insecure = grpc.credentials.createInsecure();
const creds = args['xds-creds'] ? new xds.XdsChannelCredentials(insecure) : insecure;
const client = new grpc.Client(args.target, creds);
const codeName = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k]));

function call(request) {
  const start = process.hrtime.bigint();
  const deadline = new Date(Date.now() + Number(args.timeout) * 1000);
  return new Promise((resolve) => {
    client.makeUnaryRequest(wire.METHOD, wire.raw, wire.raw, request, metadata, { deadline }, (err, reply) => {
      const ms = Math.round(Number(process.hrtime.bigint() - start) / 1000) / 1000;
      if (err) {
        resolve({ ok: false, code: codeName[err.code] || String(err.code), message: err.details || '', ms });
        return;
      }
      const r = wire.parseReply(reply);
      resolve({ ok: true, version: r.version, instance: r.instance, ms });
    });
  });
}

async function main() {
  const readySecs = Number(args['ready-timeout']);
  await new Promise((resolve) => {
    client.waitForReady(new Date(Date.now() + readySecs * 1000), (err) => {
      if (err) {
        console.error(`client.js: channel to ${args.target} not ready after ${readySecs}s; calling anyway (${err.message})`);
      }
      resolve();
    });
  });
  const request = wire.helloRequest(args.name);
  for (let i = 0; i < Number(args.count); i++) {
    process.stdout.write(JSON.stringify(await call(request)) + '\n');
  }
  if (args.hold) {
    // The test looks at this client's xDS stream on the control plane,
    // then closes our stdin.
    await new Promise((resolve) => {
      process.stdin.on('end', resolve);
      process.stdin.resume();
    });
  }
  client.close();
  // grpc-js-xds keeps its xDS stream open; the calls are done.
  process.exit(0);
}

main().catch((err) => {
  console.error(`client.js: ${err.stack || err}`);
  process.exit(1);
});
