'use strict';
// The Greeter's messages in protobuf wire format, by hand, so that the
// interop programs need neither generated code nor protoc:
// HelloRequest{name = 1} and HelloReply{message = 1, version = 2,
// instance = 3} are all strings, and a string field is a key varint
// (field << 3 | 2), a length varint and the UTF-8 bytes.

const METHOD = '/meshlet.example.greeter.v1.Greeter/SayHello';

function varint(n) {
  const out = [];
  for (;;) {
    const b = n % 128;
    n = Math.floor(n / 128);
    if (n === 0) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

function readVarint(buf, i) {
  let n = 0;
  let mul = 1;
  for (;;) {
    if (i >= buf.length) throw new Error('truncated varint');
    const b = buf[i++];
    n += (b & 0x7f) * mul;
    if (!(b & 0x80)) return [n, i];
    mul *= 128;
    if (mul > 2 ** 63) throw new Error('varint too long');
  }
}

// encode turns {field number: string} into a message of string fields.
function encode(fields) {
  const parts = [];
  for (const num of Object.keys(fields).map(Number).sort((a, b) => a - b)) {
    const value = fields[num];
    if (!value) continue; // proto3 leaves empty strings out
    const data = Buffer.from(value, 'utf8');
    parts.push(Buffer.from(varint(num * 8 + 2)), Buffer.from(varint(data.length)), data);
  }
  return Buffer.concat(parts);
}

// decode returns the string fields of a message as {field number: string},
// skipping fields of other wire types.
function decode(buf) {
  const fields = {};
  let i = 0;
  while (i < buf.length) {
    let key;
    [key, i] = readVarint(buf, i);
    const num = Math.floor(key / 8);
    switch (key & 7) {
      case 0:
        [, i] = readVarint(buf, i);
        break;
      case 1:
        i += 8;
        break;
      case 2: {
        let n;
        [n, i] = readVarint(buf, i);
        if (i + n > buf.length) throw new Error(`truncated field ${num}`);
        fields[num] = buf.subarray(i, i + n).toString('utf8');
        i += n;
        break;
      }
      case 5:
        i += 4;
        break;
      default:
        throw new Error(`wire type ${key & 7} of field ${num}`);
    }
  }
  return fields;
}

module.exports = {
  METHOD,
  helloRequest: (name) => encode({ 1: name }),
  helloReply: (message, version, instance) => encode({ 1: message, 2: version, 3: instance }),
  parseRequest: (buf) => decode(buf)[1] || '',
  parseReply: (buf) => {
    const f = decode(buf);
    return { message: f[1] || '', version: f[2] || '', instance: f[3] || '' };
  },
  // Raw serializers for grpc-js's generic API: bytes in, bytes out.
  raw: (b) => b,
};
