"""A minimal, independent RFC 8555 client in Python, for probing Pebble from tests.

It is NOT the project's client: it exists to cross-check Pebble behaviour (endpoints, logs,
revocation status) and to get a Pebble-issued certificate without going through nginx.
Challenges are not answered here: run Pebble with ``env={"PEBBLE_VA_ALWAYS_VALID": "1"}``, or
serve the challenge yourself and call ``answer(challenge_url)``.
"""

import base64
import json
import ssl
import time
import urllib.error
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID


def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class AcmeError(Exception):
    def __init__(self, status, problem):
        super().__init__("%s %s" % (status, problem))
        self.status = status
        self.problem = problem


class MiniAcme:
    """``MiniAcme(directory_url, cafile)``; ``register(eab=None)``; ``issue(names)`` -> PEM chain.

    ``eab`` = (kid, base64url_hmac_key). ``last_order`` keeps the final order object.
    """

    def __init__(self, directory_url, cafile):
        self.ctx = ssl.create_default_context(cafile=cafile)
        self.dir = self._get_json(directory_url)
        self.key = ec.generate_private_key(ec.SECP256R1())
        nums = self.key.public_key().public_numbers()
        self.jwk = {"crv": "P-256", "kty": "EC", "x": b64u(nums.x.to_bytes(32, "big")),
                    "y": b64u(nums.y.to_bytes(32, "big"))}
        self.kid = None
        self.nonce = None
        self.last_order = None

    def _open(self, req):
        try:
            r = urllib.request.urlopen(req, context=self.ctx, timeout=15)
            return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def _get_json(self, url):
        status, _, body = self._open(urllib.request.Request(url))
        return json.loads(body)

    def _new_nonce(self):
        _, h, _ = self._open(urllib.request.Request(self.dir["newNonce"], method="HEAD"))
        return h["Replay-Nonce"]

    def _sign(self, data):
        der = self.key.sign(data, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def post(self, url, payload, retries=3):
        """Signed POST (payload None = POST-as-GET); returns (status, headers, body bytes)."""
        for _ in range(retries):
            nonce = self.nonce or self._new_nonce()
            prot = {"alg": "ES256", "nonce": nonce, "url": url}
            if self.kid:
                prot["kid"] = self.kid
            else:
                prot["jwk"] = self.jwk
            p64 = b64u(json.dumps(prot))
            pl64 = "" if payload is None else b64u(json.dumps(payload))
            body = {"protected": p64, "payload": pl64,
                    "signature": b64u(self._sign(("%s.%s" % (p64, pl64)).encode()))}
            req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/jose+json"})
            status, headers, data = self._open(req)
            self.nonce = headers.get("Replay-Nonce")
            if status == 400 and b"badNonce" in data:
                continue
            return status, headers, data
        return status, headers, data

    def _post_json(self, url, payload, ok=(200, 201)):
        status, headers, data = self.post(url, payload)
        if status not in ok:
            raise AcmeError(status, data.decode(errors="replace"))
        return headers, (json.loads(data) if data else None)

    def register(self, eab=None):
        payload = {"termsOfServiceAgreed": True, "contact": []}
        if eab:
            kid, mac_key = eab
            prot = b64u(json.dumps({"alg": "HS256", "kid": kid, "url": self.dir["newAccount"]}))
            pl = b64u(json.dumps(self.jwk))
            h = hmac.HMAC(b64u_decode(mac_key), hashes.SHA256())
            h.update(("%s.%s" % (prot, pl)).encode())
            payload["externalAccountBinding"] = {"protected": prot, "payload": pl,
                                                 "signature": b64u(h.finalize())}
        headers, _ = self._post_json(self.dir["newAccount"], payload)
        self.kid = headers["Location"]
        return self.kid

    def _poll(self, url, until, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            _, obj = self._post_json(url, None)
            if obj["status"] in until:
                return obj
            if time.monotonic() > deadline:
                raise TimeoutError("%s stuck in %s" % (url, obj["status"]))
            time.sleep(0.2)

    def answer(self, challenge_url):
        self._post_json(challenge_url, {})

    def issue(self, names, challenge_type="http-01", on_challenge=None):
        """Order ``names``, answer each pending authz's challenge, finalize; return PEM chain.

        ``on_challenge(name, challenge, key_authorization)`` is called before answering (to set
        up an http-01 file or a DNS TXT); with PEBBLE_VA_ALWAYS_VALID it may be omitted.
        """
        headers, order = self._post_json(
            self.dir["newOrder"], {"identifiers": [{"type": "dns", "value": n} for n in names]})
        order_url = headers["Location"]
        for az_url in order["authorizations"]:
            _, az = self._post_json(az_url, None)
            if az["status"] == "valid":
                continue
            ch = next(c for c in az["challenges"] if c["type"] == challenge_type)
            if on_challenge:
                on_challenge(az["identifier"]["value"], ch, self.key_authorization(ch["token"]))
            self.answer(ch["url"])
            self._poll(az_url, ("valid", "invalid"))
        order = self._poll(order_url, ("ready", "invalid"))
        if order["status"] != "ready":
            raise AcmeError(0, order)
        pkey = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                              critical=False)
               .sign(pkey, hashes.SHA256()))
        self._post_json(order["finalize"],
                        {"csr": b64u(csr.public_bytes(serialization.Encoding.DER))})
        order = self._poll(order_url, ("valid", "invalid"))
        self.last_order = order
        status, _, pem = self.post(order["certificate"], None)
        if status != 200:
            raise AcmeError(status, pem)
        return pem.decode()

    def key_authorization(self, token):
        canon = json.dumps(self.jwk, sort_keys=True, separators=(",", ":"))
        digest = hashes.Hash(hashes.SHA256())
        digest.update(canon.encode())
        return "%s.%s" % (token, b64u(digest.finalize()))
