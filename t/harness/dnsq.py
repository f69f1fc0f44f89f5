"""A tiny DNS stub client (UDP, one question) for checking test DNS servers.

Only what the tests need: A, AAAA and TXT answers.  No dependency beyond the stdlib.
"""

import random
import socket
import struct

QTYPES = {"A": 1, "AAAA": 28, "TXT": 16, "CNAME": 5, "CAA": 257}


def _encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("ascii")
            out += bytes([len(raw)]) + raw
    return out + b"\x00"


def _skip_name(buf, off):
    while True:
        n = buf[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:  # compression pointer: two bytes, ends the name
            return off + 2
        off += 1 + n


def dns_query(port, name, qtype="A", server="127.0.0.1", timeout=3.0):
    """Ask ``server:port`` over UDP; returns the answers of type ``qtype`` as strings.

    A/AAAA answers are textual addresses; TXT answers are the concatenated character
    strings of each record (decoded as UTF-8). Raises ``OSError``/``socket.timeout`` when the
    server does not answer and ``RuntimeError`` on a non-zero RCODE other than NXDOMAIN
    (NXDOMAIN gives ``[]``).
    """
    qt = QTYPES[qtype]
    qid = random.randrange(0, 65536)
    packet = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + _encode_name(name)
    packet += struct.pack(">HH", qt, 1)
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, (server, port))
        while True:
            buf, _ = s.recvfrom(65535)
            if len(buf) >= 12 and struct.unpack(">H", buf[:2])[0] == qid:
                break
    _, flags, qd, an, _, _ = struct.unpack(">HHHHHH", buf[:12])
    rcode = flags & 0xF
    if rcode == 3:
        return []
    if rcode != 0:
        raise RuntimeError("dns rcode %d for %s %s" % (rcode, qtype, name))
    off = 12
    for _ in range(qd):
        off = _skip_name(buf, off) + 4
    out = []
    for _ in range(an):
        off = _skip_name(buf, off)
        rtype, _, _, rdlen = struct.unpack(">HHIH", buf[off:off + 10])
        off += 10
        rdata = buf[off:off + rdlen]
        off += rdlen
        if rtype != qt:
            continue
        if rtype == 1:
            out.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == 28:
            out.append(socket.inet_ntop(socket.AF_INET6, rdata))
        elif rtype == 16:
            parts, i = [], 0
            while i < len(rdata):
                n = rdata[i]
                parts.append(rdata[i + 1:i + 1 + n])
                i += 1 + n
            out.append(b"".join(parts).decode("utf-8", "replace"))
        else:
            out.append(rdata.hex())
    return out
