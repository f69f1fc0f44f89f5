"""A raw TLS 1.2 ClientHello with any SNI bytes, for names a TLS library refuses to send.

``peer_cert(port, sni_bytes)`` returns the DER leaf the server sent (TLS 1.2 sends the
Certificate message in the clear), or raises ``HandshakeRefused`` when the server answers with
an alert or closes the connection.
"""

import os
import socket
import struct

CIPHERS = [0xC02B, 0xC02F, 0xC02C, 0xC030]  # ECDHE-{ECDSA,RSA}-AES{128,256}-GCM
GROUPS = [0x001D, 0x0017, 0x0018]
SIGALGS = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]


class HandshakeRefused(Exception):
    pass


def _ext(typ, body):
    return struct.pack("!HH", typ, len(body)) + body


def client_hello(sni):
    exts = b""
    if sni is not None:
        entry = b"\x00" + struct.pack("!H", len(sni)) + sni
        exts += _ext(0x0000, struct.pack("!H", len(entry)) + entry)
    groups = b"".join(struct.pack("!H", g) for g in GROUPS)
    exts += _ext(0x000A, struct.pack("!H", len(groups)) + groups)
    exts += _ext(0x000B, b"\x01\x00")
    algs = b"".join(struct.pack("!H", a) for a in SIGALGS)
    exts += _ext(0x000D, struct.pack("!H", len(algs)) + algs)
    suites = b"".join(struct.pack("!H", c) for c in CIPHERS)
    body = (b"\x03\x03" + os.urandom(32) + b"\x00" + struct.pack("!H", len(suites)) + suites
            + b"\x01\x00" + struct.pack("!H", len(exts)) + exts)
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def _read_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise HandshakeRefused("connection closed")
        out += chunk
    return out


def peer_cert(port, sni, host="127.0.0.1", timeout=10):
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(client_hello(sni))
        buf = b""
        while True:
            header = _read_exact(s, 5)
            ctype, _, length = struct.unpack("!BHH", header)
            payload = _read_exact(s, length)
            if ctype == 21:
                raise HandshakeRefused("alert %d" % payload[1])
            if ctype != 22:
                raise HandshakeRefused("unexpected record type %d" % ctype)
            buf += payload
            while len(buf) >= 4:
                mtype = buf[0]
                mlen = struct.unpack("!I", b"\x00" + buf[1:4])[0]
                if len(buf) < 4 + mlen:
                    break
                msg, buf = buf[4:4 + mlen], buf[4 + mlen:]
                if mtype == 11:  # Certificate: u24 list length, then u24 length + DER each
                    first = struct.unpack("!I", b"\x00" + msg[3:6])[0]
                    return msg[6:6 + first]
