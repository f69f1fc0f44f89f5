"""resty.acme.util and resty.acme.openssl inside nginx: the helpers callers of the original use."""

import base64
import hashlib
import hmac
import json
import os
import re
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from harness import REPO, TestCA, free_port
from harness.nginx import lua_package_path

T_LUA = os.path.join(REPO, "t", "lua", "?.lua")


@pytest.fixture
def lua(nginx_factory):
    port = free_port()
    n = nginx_factory("""
        lua_shared_dict acme 1m;
        server {
          listen 127.0.0.1:%d;
          location = /eval { content_by_lua_block { require("acme_t").eval() } }
        }""" % port, http_ports=[port], lua_path=T_LUA + ";" + lua_package_path())

    def run(code):
        req = urllib.request.Request("http://127.0.0.1:%d/eval" % port, data=code.encode(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=60) as r:
            res = json.loads(r.read())
        assert "error" not in res, res["error"]
        return res
    run.nginx = n
    return run


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def test_util_create_pkey_defaults_and_types(lua):
    res = lua("""
      local util = require("resty.acme.util")
      return {
        default = util.create_pkey(),
        rsa2048 = util.create_pkey(2048, "RSA"),
        ec = util.create_pkey(nil, "EC", "prime256v1"),
        ec384 = util.create_pkey(nil, "EC", "secp384r1"),
        bad = select(2, util.create_pkey(1024, "RSA")),
      }""")
    default = serialization.load_pem_private_key(res["default"].encode(), None)
    assert isinstance(default, rsa.RSAPrivateKey) and default.key_size == 4096
    assert res["default"].startswith("-----BEGIN PRIVATE KEY-----")
    assert serialization.load_pem_private_key(res["rsa2048"].encode(), None).key_size == 2048
    assert serialization.load_pem_private_key(res["ec"].encode(), None).curve.name == "secp256r1"
    assert serialization.load_pem_private_key(res["ec384"].encode(),
                                              None).curve.name == "secp384r1"
    assert "1024" in res["bad"]


def test_util_create_csr_rsa_and_ec(lua):
    res = lua("""
      local util = require("resty.acme.util")
      local openssl = require("resty.acme.openssl")
      local rsa_key = openssl.pkey.new({ type = "RSA", bits = 2048 })
      local ec_key = openssl.pkey.new({ type = "EC", curve = "prime256v1" })
      local a = util.create_csr(rsa_key, "a.example.test", "b.example.test")
      local b = util.create_csr(ec_key, "c.example.test")
      return { rsa = ngx.encode_base64(a), ec = ngx.encode_base64(b),
               rsa_pub = rsa_key:to_PEM("public") }""")
    csr = x509.load_der_x509_csr(base64.b64decode(res["rsa"]))
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "a.example.test"
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["a.example.test", "b.example.test"]
    pub = serialization.load_pem_public_key(res["rsa_pub"].encode())
    assert csr.public_key().public_numbers() == pub.public_numbers()
    ec_csr = x509.load_der_x509_csr(base64.b64decode(res["ec"]))
    assert ec_csr.is_signature_valid and isinstance(ec_csr.public_key(), ec.EllipticCurvePublicKey)


def test_util_thumbprint_is_rfc7638(lua):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    res = lua("""
      local util = require("resty.acme.util")
      local openssl = require("resty.acme.openssl")
      return { t = util.thumbprint(openssl.pkey.new(%s)) }""" % json.dumps(pem))
    nums = key.public_key().public_numbers()

    def b64(i):
        return base64.urlsafe_b64encode(i.to_bytes((i.bit_length() + 7) // 8, "big")) \
            .rstrip(b"=").decode()
    canon = '{"e":"%s","kty":"RSA","n":"%s"}' % (b64(nums.e), b64(nums.n))
    want = base64.urlsafe_b64encode(hashlib.sha256(canon.encode()).digest()).rstrip(b"=").decode()
    assert res["t"] == want


def test_util_check_chain_root_issuer(lua, workdir):
    ca = TestCA(os.path.join(str(workdir), "ca"))
    cert_path, _ = ca.issue(["leaf.example.test"], "leaf")
    chain = open(cert_path).read() + open(ca.ca_pem).read()
    root = x509.load_pem_x509_certificate(open(ca.ca_pem, "rb").read())
    root_cn = root.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    res = lua("""
      local util = require("resty.acme.util")
      local chain = %s
      local e1, e2 = util.check_chain_root_issuer("", "x")
      local w1, w2 = util.check_chain_root_issuer(chain, "test.com")
      local r1 = util.check_chain_root_issuer(chain, %s)
      return { e1 = e1, e2 = e2, w1 = w1, w2 = w2, r1 = r1 }""" % (json.dumps(chain),
                                                                  json.dumps(root_cn)))
    assert res["e1"] is False and res["e2"] == "cert not found in PEM chain"
    assert res["w1"] is False
    assert res["w2"] == 'current chain root issuer common name is "%s"' % root_cn
    assert res["r1"] is True


def test_util_base64url_and_log(lua):
    res = lua("""
      local util = require("resty.acme.util")
      util.log(ngx.NOTICE, "hello ", 42)
      return { e = util.encode_base64url("\\255\\254\\253"),
               d = ngx.encode_base64(util.decode_base64url("__79")),
               bad = util.decode_base64url("***") == nil }""")
    assert res["e"] == "__79"
    assert base64.b64decode(res["d"]) == b"\xff\xfe\xfd"
    assert res["bad"] is True
    assert re.search(r"\[acme\] eval:\d+: hello 42", lua.nginx.error_log())


def test_openssl_subset(lua, workdir):
    ca = TestCA(os.path.join(str(workdir), "ca"))
    cert_path, _ = ca.issue(["x509.example.test"], "leaf")
    pem = open(cert_path).read()
    cert = x509.load_pem_x509_certificate(pem.encode())
    res = lua("""
      local openssl = require("resty.acme.openssl")
      local crt = openssl.x509.new(%s)
      local nb, na = crt:get_lifetime()
      local key = openssl.pkey.new({ type = "EC", curve = "prime256v1" })
      local again = openssl.pkey.new(key:to_PEM("private"))
      local d = openssl.digest.new("sha256")
      d:update("ab")
      local h = openssl.hmac.new("k", "sha256")
      h:update("a")
      return {
        nb = nb, na = na, na2 = crt:get_not_after(),
        same = again:to_PEM("public") == key:to_PEM("public"),
        digest = ngx.encode_base64(d:final("c")),
        hmac = ngx.encode_base64(h:final("bc")),
        bad = select(2, openssl.x509.new("garbage")),
      }""" % json.dumps(pem))
    assert res["nb"] == int(cert.not_valid_before.timestamp())
    assert res["na"] == int(cert.not_valid_after.timestamp()) == res["na2"]
    assert res["same"] is True
    assert base64.b64decode(res["digest"]) == hashlib.sha256(b"abc").digest()
    assert base64.b64decode(res["hmac"]) == hmac.new(b"k", b"abc", "sha256").digest()
    assert res["bad"]


def test_core_jws_verifies_with_the_key(lua):
    res = lua("""
      local core = require("resty.acme.core")
      local k = core.pkey_generate("EC", nil, "prime256v1")
      local jws = core.jws(k, "https://ca.test/new-order", "nonce1", "https://ca.test/acct/1",
                           '{"a":"b/c"}')
      return { jws = jws, pub = k:public_pem() }""")
    body = json.loads(res["jws"])
    header = json.loads(b64url_decode(body["protected"]))
    assert header == {"alg": "ES256", "kid": "https://ca.test/acct/1", "nonce": "nonce1",
                      "url": "https://ca.test/new-order"}
    assert b64url_decode(body["payload"]) == b'{"a":"b/c"}'
    sig = b64url_decode(body["signature"])
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    pub = serialization.load_pem_public_key(res["pub"].encode())
    pub.verify(der, (body["protected"] + "." + body["payload"]).encode(),
               ec.ECDSA(hashes.SHA256()))


def test_autossl_server_name_rules(lua):
    cases = {
        "example.com": True, "a.b-c.example": True, "localhost": True, "x1.test": True,
        "1x.test": True, "123.example.com": True, "a" * 63 + ".test": True,
        ("a" * 63 + ".") * 3 + "a" * 61: True,  # 253 bytes
        "": False, "127.0.0.1": False, "1.2.3": False, "example.com.": False,
        ".example.com": False, "a..b": False, "-a.test": False, "a-.test": False,
        "a.test-": False, "a" * 64 + ".test": False, ("a" * 63 + ".") * 3 + "a" * 62: False,
        "UPPER.test": False, "a_b.test": False, "a/b.test": False, "a\\\\b.test": False,
        "*.test": False, "a b.test": False, "[::1]": False,
    }
    res = lua("""
      local valid = require("resty.acme.autossl")._valid_sni
      local names = %s
      local out = {}
      for _, n in ipairs(names) do out[#out + 1] = valid(n) end
      return { r = out }""" % ("{" + ", ".join(json.dumps(k) for k in cases) + "}"))
    assert dict(zip(cases, res["r"])) == cases


def test_autossl_init_rejects_bad_config_naming_the_key(lua, workdir):
    """Each of init's config checks raises the original's message (COMPAT.md 2.2), none is lost
    behind another, and a good config still passes."""
    empty = os.path.join(str(workdir), "empty.pem")
    open(empty, "w").close()
    missing = os.path.join(str(workdir), "missing.pem")
    cases = [
        ({}, "tos_accepted must be set to true to continue"),
        ({"domain_whitelist_callback": 1}, "domain_whitelist_callback must be a function, got number"),
        ({"failure_cooloff_callback": "x"}, "failure_cooloff_callback must be a function, got string"),
        ({"native_serving": "yes"}, "native_serving must be true or false, got yes"),
        ({"renew_min_interval": 0}, "renew_min_interval must be a positive number of seconds, got 0"),
        ({"update_lock_ttl": "x"}, "update_lock_ttl must be a positive number of seconds, got x"),
        ({"profile": 1}, "profile must be a profile name or a function of the domain, got number"),
        ({"ip_profile": 1}, "ip_profile must be a profile name, got number"),
        ({"domain_key_types": []}, 'domain_key_types must be a non-empty list of "rsa" and/or "ecc"'),
        ({"domain_key_types": ["dsa"]}, "unknown domain key type: dsa"),
        ({"storage_adapter": "redis", "storage_config": {"namespace": "failure_lock:x"}},
         "namespace can't be prefixed with reserved word: failure_lock:"),
        ({"domain_key_paths": {"rsa": missing}}, "failed to open domain_key: " + missing + ": "),
        ({"domain_key_paths": {"rsa": empty}}, "failed to read domain_key: " + empty),
        ({"account_key_path": missing}, "can't open account_key file " + missing + ": "),
        ({"account_key_path": empty}, "can't read account_key file " + empty),
        ({"cache_size": 0}, "cache_size must be a positive number, got 0"),
        ({}, None),
    ]
    configs = []
    for i, (conf, _) in enumerate(cases):
        conf = dict(conf)
        if i > 0:
            conf["tos_accepted"] = True
        configs.append(conf)
    res = lua("""
      local autossl = require("resty.acme.autossl")
      local cjson = require("cjson")
      local out = {}
      for i, conf in ipairs(cjson.decode(%s)) do
        local ok, err = pcall(autossl.init, conf, { api_uri = "https://127.0.0.1:1/dir" })
        out[i] = ok and "ok" or tostring(err)
      end
      return { r = out }""" % json.dumps(json.dumps(configs)))
    for (conf, want), got in zip(cases, res["r"]):
        if want is None:
            assert got == "ok", (conf, got)
        else:
            assert want in got, (conf, want, got)


def test_openssl_name_altname_csr_build_a_request(lua):
    """What the original's util.create_csr (and callers such as Kong) do with
    resty.acme.openssl.name, .altname and .csr."""
    res = lua("""
      local openssl = require("resty.acme.openssl")
      local out = {}
      for _, spec in ipairs({ { "EC", nil, "prime256v1" }, { "RSA", 2048 } }) do
        local key = openssl.pkey.new({ type = spec[1], bits = spec[2], curve = spec[3] })
        local subject = assert(openssl.name.new():add("CN", "csr.example.test"))
        assert(subject:add("O", "Example Org"))
        local alt = openssl.altname.new()
        assert(alt:add("DNS", "csr.example.test"))
        assert(alt:add("DNSName", "www.csr.example.test"))
        assert(alt:add("IP", "192.0.2.7"))
        local csr = openssl.csr.new()
        assert(csr:set_subject_name(subject))
        assert(csr:set_subject_alt_name(alt))
        assert(csr:set_pubkey(key))
        assert(csr:sign(key))
        out[#out + 1] = { der = ngx.encode_base64(csr:tostring("DER")), pem = csr:to_PEM() }
      end
      local other = openssl.pkey.new({ type = "EC", curve = "prime256v1" })
      local c = openssl.csr.new()
      c:set_pubkey(openssl.pkey.new({ type = "EC", curve = "prime256v1" }))
      return {
        reqs = out,
        cn = openssl.name.new():add("CN", "x"):find("CN").blob,
        bad_alt = select(2, openssl.altname.new():add("X400", "x")),
        unsigned = select(2, openssl.csr.new():tostring()),
        mismatch = select(2, c:sign(other)),
        bad_field = select(2, (function()
          local n = openssl.name.new():add("NoSuchField", "x")
          local r = openssl.csr.new()
          r:set_subject_name(n)
          return r:sign(other)
        end)()),
      }""")
    for r in res["reqs"]:
        der = base64.b64decode(r["der"])
        req = x509.load_der_x509_csr(der)
        assert req.is_signature_valid
        assert x509.load_pem_x509_csr(r["pem"].encode()).public_bytes(
            serialization.Encoding.DER) == der
        assert req.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
            "csr.example.test"
        assert req.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == \
            "Example Org"
        san = req.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == ["csr.example.test",
                                                         "www.csr.example.test"]
        assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["192.0.2.7"]
    assert res["cn"] == "x"
    assert "unsupported type X400" in res["bad_alt"]
    assert "not signed" in res["unsigned"]
    assert "does not match" in res["mismatch"]
    assert "NoSuchField" in res["bad_field"]
