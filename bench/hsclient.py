"""TLS clients for the benchmarks: full handshakes only (no session resumption).

``handshake(port, name)`` -> (leaf DER, seconds for connect + handshake).
``run_load(port, names, total, procs)``: ``procs`` processes share ``total`` connections,
cycling through ``names``; each connection does a full handshake, one HTTP/1.1 request, reads
the reply to EOF (the server closes: keepalive_timeout 0). Returns (done, failed, seconds).
``latency_probe(...)``: a process that records (timestamp, handshake seconds) until told to stop.
"""

import multiprocessing
import socket
import ssl
import time


def client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # a fresh context never offers a session: every handshake is a full one
    ctx.options |= ssl.OP_NO_TICKET
    return ctx


def handshake(port, name, timeout=10, ctx=None, request=False):
    """One full handshake with SNI ``name``; returns (leaf DER, seconds to handshake end)."""
    ctx = ctx or client_context()
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with ctx.wrap_socket(s, server_hostname=name) as t:
            dt = time.monotonic() - t0
            der = t.getpeercert(binary_form=True)
            if request:
                t.sendall(b"GET / HTTP/1.1\r\nHost: " + name.encode() + b"\r\n\r\n")
                while t.recv(4096):
                    pass
    return der, dt


def _load_worker(port, names, start, count, step, out):
    ctx = client_context()
    done = failed = 0
    n = len(names)
    i = start
    for _ in range(count):
        try:
            handshake(port, names[i % n], ctx=ctx, request=True)
            done += 1
        except (OSError, ssl.SSLError):
            failed += 1
        i += step
    out.put((done, failed))


def run_load(port, names, total, procs=4, offset=0):
    """``total`` connections over ``procs`` processes; process k takes names offset+k,
    offset+k+procs, ... so that together they visit consecutive names."""
    q = multiprocessing.Queue()
    per = [total // procs + (1 if k < total % procs else 0) for k in range(procs)]
    ps = [multiprocessing.Process(target=_load_worker,
                                  args=(port, names, offset + k, per[k], procs, q))
          for k in range(procs)]
    t0 = time.monotonic()
    for p in ps:
        p.start()
    res = [q.get() for _ in ps]
    for p in ps:
        p.join()
    return sum(r[0] for r in res), sum(r[1] for r in res), time.monotonic() - t0


def _probe(port, names, stop, out, pause):
    ctx = client_context()
    samples = []
    i = 0
    while not stop.is_set():
        t = time.monotonic()
        try:
            _, dt = handshake(port, names[i % len(names)], ctx=ctx)
            samples.append((t, dt))
        except (OSError, ssl.SSLError):
            samples.append((t, None))
        i += 1
        if pause:
            time.sleep(pause)
    out.put(samples)


class LatencyProbe:
    """``procs`` processes doing back-to-back handshakes on ``names``, each followed by
    ``pause`` seconds; ``stop()`` returns [(monotonic start, seconds or None on failure)]."""

    def __init__(self, port, names, procs=2, pause=0.0):
        self.stop_ev = multiprocessing.Event()
        self.q = multiprocessing.Queue()
        self.ps = [multiprocessing.Process(target=_probe,
                                           args=(port, names, self.stop_ev, self.q, pause))
                   for _ in range(procs)]
        for p in self.ps:
            p.start()

    def stop(self):
        self.stop_ev.set()
        samples = []
        for _ in self.ps:
            samples += self.q.get()
        for p in self.ps:
            p.join()
        return sorted(samples)
