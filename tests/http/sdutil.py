"""Helpers for the HTTP tests: a pure-Python PNG reader (no PIL here) and a
safetensors reader for the golden tensors (no numpy here)."""

import json
import struct
import zlib


def png_chunks(data):
    """Yields (type, payload) for each chunk of a PNG file."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos = 8
    while pos + 12 <= len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8].decode("ascii")
        yield kind, data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == "IEND":
            break


def png_text(data):
    """The tEXt chunks of a PNG as a dict."""
    out = {}
    for kind, payload in png_chunks(data):
        if kind == "tEXt":
            key, _, value = payload.partition(b"\0")
            out[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == "iTXt":
            key, _, rest = payload.partition(b"\0")
            if rest[:1] == b"\0":
                rest = rest[2:]
                _, _, rest = rest.partition(b"\0")
                _, _, rest = rest.partition(b"\0")
                out[key.decode("latin-1")] = rest.decode("utf-8")
    return out


def png_decode(data):
    """(width, height, channels, bytes) of an 8-bit RGB or RGBA PNG."""
    idat = b""
    for kind, payload in png_chunks(data):
        if kind == "IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(
                ">IIBBBBB", payload)
            assert depth == 8 and ctype in (2, 6) and interlace == 0
        elif kind == "IDAT":
            idat += payload
    ch = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * ch
    out = bytearray(h * stride)
    prev = bytearray(stride)
    pos = 0
    for y in range(h):
        ftype = raw[pos]
        line = bytearray(raw[pos + 1:pos + 1 + stride])
        pos += 1 + stride
        for x in range(stride):
            a = line[x - ch] if x >= ch else 0
            b = prev[x]
            c = prev[x - ch] if x >= ch else 0
            if ftype == 1:
                line[x] = (line[x] + a) & 255
            elif ftype == 2:
                line[x] = (line[x] + b) & 255
            elif ftype == 3:
                line[x] = (line[x] + ((a + b) >> 1)) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pr) & 255
        out[y * stride:(y + 1) * stride] = line
        prev = line
    return w, h, ch, bytes(out)


def safetensors_read(path, key):
    """(dtype, shape, raw bytes) of one tensor."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        meta = header[key]
        start, end = meta["data_offsets"]
        f.seek(8 + n + start)
        return meta["dtype"], meta["shape"], f.read(end - start)
