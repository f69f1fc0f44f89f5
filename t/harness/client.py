"""Small HTTP(S)/TLS client helpers for tests (stdlib + cryptography)."""

import http.client
import socket
import ssl
import urllib.parse

from cryptography import x509


def _ctx(cafile, alpn=None, kind=None):
    if cafile:
        ctx = ssl.create_default_context(cafile=cafile)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if kind:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256" if kind == "ecc"
                        else "ECDHE-RSA-AES128-GCM-SHA256")
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def http_get(url, *, cafile=None, server_hostname=None, timeout=10, headers=None, method="GET",
             body=None):
    """One request; returns (status, headers dict with lower-case names, body bytes).

    For https, ``cafile`` enables verification (else none); ``server_hostname`` sets SNI (and the
    verified name) independently of the address in ``url``; the Host header follows
    ``server_hostname`` when given.
    """
    u = urllib.parse.urlsplit(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    host = u.hostname
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    hdrs = dict(headers or {})
    if server_hostname and "Host" not in hdrs:
        hdrs["Host"] = server_hostname
    if u.scheme == "https":
        ctx = _ctx(cafile)
        sni = server_hostname or host

        class _Conn(http.client.HTTPSConnection):
            def connect(self):
                sock = socket.create_connection((host, port), timeout)
                self.sock = ctx.wrap_socket(sock, server_hostname=sni)

        conn = _Conn(host, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


def tls_handshake(port, server_name, *, host="127.0.0.1", kind=None, alpn=None, send=None,
                  timeout=10):
    """Handshake (no verification) with SNI ``server_name`` (None: no SNI) on host:port; returns
    (leaf x509.Certificate, selected ALPN protocol or None, the bytes read until EOF after
    sending ``send``; b"" without ``send``). ``kind`` "rsa" or "ecc" restricts the client to
    TLS 1.2 cipher suites of that key type; ``alpn`` is the list of protocols offered."""
    ctx = _ctx(None, alpn, kind)
    with socket.create_connection((host, port), timeout) as sock:
        with ctx.wrap_socket(sock, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
            data = b""
            if send:
                tls.sendall(send)
                while True:
                    chunk = tls.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            return x509.load_der_x509_certificate(der), tls.selected_alpn_protocol(), data


def tls_peer_cert(port, server_name, host="127.0.0.1", alpn=None, timeout=10):
    """Handshake with SNI ``server_name`` (no verification); return the leaf as x509.Certificate."""
    return tls_handshake(port, server_name, host=host, alpn=alpn, timeout=timeout)[0]
