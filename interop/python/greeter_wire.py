"""The Greeter's messages in protobuf wire format, by hand.

The interop programs use gRPC's generic API with raw bytes, so that they
need neither generated stubs nor protoc: HelloRequest{name = 1} and
HelloReply{message = 1, version = 2, instance = 3} are all strings, and a
string field is a key varint (field << 3 | 2) followed by a length varint
and the UTF-8 bytes.
"""

METHOD = "/meshlet.example.greeter.v1.Greeter/SayHello"
SERVICE = "meshlet.example.greeter.v1.Greeter"


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(buf, i):
    n = shift = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def encode(fields):
    """Encodes {field number: str} as a message of string fields."""
    out = bytearray()
    for num in sorted(fields):
        value = fields[num]
        if not value:
            continue  # proto3 leaves empty strings out
        data = value.encode("utf-8")
        out += _varint(num << 3 | 2) + _varint(len(data)) + data
    return bytes(out)


def decode(buf):
    """Decodes the string fields of a message as {field number: str},
    skipping fields of other wire types."""
    fields = {}
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, i = _read_varint(buf, i)
        elif wire_type == 1:
            i += 8
        elif wire_type == 2:
            n, i = _read_varint(buf, i)
            if i + n > len(buf):
                raise ValueError("truncated field %d" % num)
            fields[num] = bytes(buf[i:i + n]).decode("utf-8")
            i += n
        elif wire_type == 5:
            i += 4
        else:
            raise ValueError("wire type %d of field %d" % (wire_type, num))
    return fields


def hello_request(name):
    return encode({1: name})


def hello_reply(message, version, instance):
    return encode({1: message, 2: version, 3: instance})


def parse_request(buf):
    """Returns the name of a HelloRequest."""
    return decode(buf).get(1, "")


def parse_reply(buf):
    """Returns a HelloReply as a dict."""
    f = decode(buf)
    return {"message": f.get(1, ""), "version": f.get(2, ""), "instance": f.get(3, "")}
