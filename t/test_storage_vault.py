"""resty.acme.storage.vault against the fake Vault (t/fakes/vault.py), which checks every
request against Vault's KV v1/v2 and kubernetes-auth APIs and keeps the state."""

import json
import os
import time

import pytest

from harness import StorageNginx, TestCA
from fakes.vault import FakeVault

TOKEN = "hvs.vault-secret-token"
NOTE = "managed by lua-resty-acme"


@pytest.fixture
def vault():
    v = FakeVault(token=TOKEN, mounts={"acme": 2, "secret": 2, "kv": 1}).start()
    yield v
    v.stop()
    assert v.violations == []


def nginx(workdir, vault, name="storage-nginx", **conf):
    base = {"port": vault.port, "token": TOKEN}
    base.update(conf)
    return StorageNginx(workdir, {"s": {"adapter": "vault", "conf": base}}, name=name).start()


def body(req):
    return json.loads(req.body)


def test_vault_kv2_requests_and_layout(vault, workdir, core_so):
    n = nginx(workdir, vault, namespace="team-a")
    vault.namespace = "team-a"
    s = n.store("s")
    # the first use asks the mount's KV version, in the namespace
    assert s.get("warm-up") == (None, None)
    check = vault.requests[0]
    assert (check.method, check.path) == ("GET", "/v1/sys/internal/ui/mounts/acme")
    assert check.headers["x-vault-namespace"] == "team-a"
    vault.requests.clear()

    assert s.set("domain:rsa:*.example.test", "cert json") is None
    meta, data = vault.requests
    assert (meta.method, meta.raw_path) == ("POST",
                                            "/v1/acme/metadata/domain:rsa:%2A.example.test")
    # a set without TTL clears a TTL an earlier write left in the metadata
    assert body(meta) == {"delete_version_after": "0s"}
    assert (data.method, data.raw_path) == ("POST", "/v1/acme/data/domain:rsa:%2A.example.test")
    assert body(data) == {"data": {"value": "cert json", "note": NOTE}}
    for r in (meta, data):
        assert r.headers["x-vault-token"] == TOKEN
        assert r.headers["x-vault-namespace"] == "team-a"
    assert vault.secret("acme", "domain:rsa:*.example.test") == {"value": "cert json",
                                                                  "note": NOTE}

    vault.requests.clear()
    assert s.set("tok#http-01", "keyauth", 3600) is None
    meta, data = vault.requests
    assert body(meta) == {"delete_version_after": "3600000ms"}
    assert meta.path == "/v1/acme/metadata/tok#http-01"
    # Vault counts whole seconds at best: a shorter TTL becomes 1 s
    assert s.set("short", "x", 0.3) is None
    assert body(vault.requests[-2]) == {"delete_version_after": "1000ms"}

    assert s.set("a/b", "slash") is None
    assert vault.requests[-1].path == "/v1/acme/data/a-b"

    # numbers are JSON numbers (as the original stored them), read back as decimal text
    assert s.set("failed_attempts:x", 3) is None
    assert body(vault.requests[-1])["data"] == {"value": 3, "note": NOTE}
    assert s.get("failed_attempts:x") == ("3", None)

    # add: read, metadata, then a create-only write (cas 0)
    vault.requests.clear()
    assert s.add("update_lock:x", "1", 300) is None
    get, meta, data = vault.requests
    assert (get.method, get.path) == ("GET", "/v1/acme/data/update_lock:x")
    assert body(meta) == {"delete_version_after": "300000ms"}
    assert body(data) == {"data": {"value": "1", "note": NOTE}, "options": {"cas": 0}}
    vault.requests.clear()
    assert s.add("update_lock:x", "2", 300) == "exists"
    assert [r.method for r in vault.requests] == ["GET"]

    assert s.delete("update_lock:x") is None
    r = vault.requests[-1]
    assert (r.method, r.path) == ("DELETE", "/v1/acme/metadata/update_lock:x")

    assert s.list("domain:") == (["domain:rsa:*.example.test"], None)
    r = vault.requests[-1]
    assert (r.method, r.path) == ("LIST", "/v1/acme/metadata/")
    n.stop()


def test_vault_kv_path_mount_and_path(vault, workdir, core_so):
    n = nginx(workdir, vault, kv_path="secret/acme/prod")
    s = n.store("s")
    assert s.set("k", "v") is None
    assert [r.path for r in vault.requests[-2:]] == ["/v1/secret/metadata/acme/prod/k",
                                                     "/v1/secret/data/acme/prod/k"]
    assert s.list("") == (["k"], None)
    assert vault.requests[-1].path == "/v1/secret/metadata/acme/prod/"
    n.stop()


def test_vault_reads_the_originals_store(vault, workdir, core_so):
    e = vault.v2["acme"]
    now = time.time()
    for key, data in (("domain:ecc:old.example.test", {"value": "{\"cert\":\"x\"}",
                                                         "note": NOTE}),
                      ("failed_attempts:old.example.test", {"value": 2, "note": NOTE})):
        e[key] = {"versions": [{"data": data, "created": now, "deletion": None,
                                "deleted": lambda: False}], "dva": 0, "current": 1}
    n = nginx(workdir, vault)
    s = n.store("s")
    assert s.get("domain:ecc:old.example.test") == ('{"cert":"x"}', None)
    assert s.get("failed_attempts:old.example.test") == ("2", None)
    assert s.list("domain:") == (["domain:ecc:old.example.test"], None)
    n.stop()


def test_vault_add_over_expired_versions_uses_their_version(vault, workdir, core_so):
    n = nginx(workdir, vault)
    s = n.store("s")
    assert s.add("lock", "a", 1) is None
    assert s.set("lock2", "x", 1) is None
    time.sleep(1.1)
    vault.requests.clear()
    assert s.add("lock", "b", 30) is None
    get, meta, data = vault.requests
    assert get.method == "GET"
    assert body(data)["options"] == {"cas": 1}
    assert s.get("lock") == ("b", None)
    # a version written without TTL does not expire, even after a TTL write
    assert s.set("lock2", "forever") is None
    time.sleep(1.1)
    assert s.get("lock2") == ("forever", None)
    n.stop()


def test_vault_binary_values_are_kept_and_marked(vault, workdir, core_so):
    n = nginx(workdir, vault)
    s = n.store("s")
    assert s.set("bin", b"\xff\xfe\x00abc") is None
    assert body(vault.requests[-1])["data"] == {"value": "//4AYWJj", "encoding": "base64",
                                                "note": NOTE}
    assert s.get_bytes("bin") == (b"\xff\xfe\x00abc", None)
    assert s.set("utf8", "ünï ✓") is None
    assert body(vault.requests[-1])["data"] == {"value": "ünï ✓", "note": NOTE}
    n.stop()


def test_vault_kv1(vault, workdir, core_so):
    n = nginx(workdir, vault, kv_path="/kv/acme", kv_version=1)
    s = n.store("s")
    vault.requests.clear()
    assert s.set("k", "v") is None
    r = vault.requests[-1]
    assert (r.method, r.path, body(r)) == ("POST", "/v1/kv/acme/k", {"value": "v", "note": NOTE})
    t = time.time()
    assert s.set("t", "v", 60) is None
    exp = body(vault.requests[-1])["expires_at"]
    assert abs(exp - (t + 60) * 1000) < 2000
    assert s.list("") == (["k", "t"], None)
    assert vault.requests[-1].method == "LIST" and vault.requests[-1].path == "/v1/kv/acme/"
    assert s.delete("k") is None
    assert vault.requests[-1].method == "DELETE"
    n.stop()


JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YWNtZSJ9.c2ln"


def test_vault_kubernetes_auth(workdir, core_so):
    v = FakeVault(token=None, kubernetes={"path": "k8s", "role": "acme", "jwt": JWT}).start()
    jwt_path = os.path.join(str(workdir), "sa-token")
    with open(jwt_path, "w") as f:
        f.write(JWT + "\n")
    bad_jwt = os.path.join(str(workdir), "bad-token")
    with open(bad_jwt, "w") as f:
        f.write("not.the.jwt")
    k8s = {"port": v.port, "auth_method": "KuberNetes", "auth_path": "k8s", "auth_role": "acme",
           "jwt_path": jwt_path}
    n = StorageNginx(workdir, {
        "k8s": {"adapter": "vault", "conf": k8s},
        "badjwt": {"adapter": "vault", "conf": dict(k8s, jwt_path=bad_jwt)},
        "nofile": {"adapter": "vault", "conf": dict(k8s, jwt_path=jwt_path + ".missing")},
        "norole": {"adapter": "vault", "conf": {"port": v.port, "auth_method": "kubernetes",
                                                "jwt_path": jwt_path}},
        "unknown": {"adapter": "vault", "conf": {"port": v.port, "auth_method": "ldap"}},
    }).start()
    # new() ran in init_by_lua without any request
    assert v.logins == 0
    s = n.store("k8s")
    assert s.set("k", "v") is None
    assert v.logins == 1
    login = v.requests_to("POST", "/v1/auth/k8s/login")[0]
    assert body(login) == {"role": "acme", "jwt": JWT}
    assert "x-vault-token" not in login.headers
    assert s.get("k") == ("v", None)
    assert v.logins == 1
    # Vault forgets the token: one new login, then it works again
    v.revoke_tokens()
    assert s.get("k") == ("v", None)
    assert v.logins == 2
    err = n.store("badjwt").get("k")[1]
    assert err.startswith("vault: could not authenticate with kubernetes auth (status 403"), err
    assert n.store("nofile").new_error().startswith(
        "vault: can't read the kubernetes service account token")
    assert n.store("norole").new_error() == "vault: kubernetes auth needs conf.auth_role"
    assert n.store("unknown").new_error() == "vault: unknown authentication method ldap"
    log = n.nginx.error_log()
    assert JWT not in log and "not.the.jwt" not in log
    n.stop()
    v.stop()
    assert v.violations == []


def test_vault_errors_name_the_cause_not_the_token(vault, workdir, core_so):
    n = StorageNginx(workdir, {
        "bad": {"adapter": "vault", "conf": {"port": vault.port, "token": "hvs.wrong-token"}},
        "dead": {"adapter": "vault", "conf": {"port": 1, "token": TOKEN}},
        "nomount": {"adapter": "vault", "conf": {"port": vault.port, "token": TOKEN,
                                                 "kv_path": "/nomount"}},
    }).start()
    err = n.store("bad").set("k", "v")
    assert err == 'vault: mount check returned status 403: errors from vault: ' \
                  '["1 error occurred:\\n\\t* permission denied\\n\\n"]', err
    err = n.store("dead").get("k")[1]
    assert err.startswith("vault: GET failed: failed to connect to 127.0.0.1:1"), err
    err = n.store("nomount").get("k")[1]
    # an unknown mount is an error, not a missing key (OpenBao's answer, t/fakes/vault.py)
    assert err.startswith("vault: mount check returned status 403: "), err
    assert err.endswith("(no mount nomount, or the token may not use it)"), err
    log = n.nginx.error_log()
    assert "hvs.wrong-token" not in log and TOKEN not in log
    n.stop()
    vault.violations.clear()  # the unknown mount was a deliberate mistake


def test_vault_tls(workdir, core_so):
    ca = TestCA(os.path.join(str(workdir), "vault-ca"))
    other = TestCA(os.path.join(str(workdir), "other-ca"), name="unrelated CA")
    cert, key = ca.issue(["vault.example.test"], "vault")
    v = FakeVault(token=TOKEN, tls=(cert, key)).start()
    base = {"host": "127.0.0.1", "port": v.port, "https": True, "token": TOKEN}
    n = StorageNginx(workdir, {
        "named": {"adapter": "vault", "conf": dict(base, tls_server_name="vault.example.test")},
        "noverify": {"adapter": "vault", "conf": dict(base, tls_verify=False)},
    }, trusted_ca=ca.ca_pem).start()
    s = n.store("named")
    assert s.set("k", "over tls") is None
    r = v.requests[-1]
    assert r.sni == "vault.example.test"
    assert r.headers["host"] == "vault.example.test"
    assert s.get("k") == ("over tls", None)
    assert n.store("noverify").get("k") == ("over tls", None)
    n.stop()
    # default tls_verify against a CA nginx does not trust: refused, nothing sent
    before = len(v.requests)
    n2 = StorageNginx(workdir, {"s": {"adapter": "vault", "conf": dict(
        base, tls_server_name="vault.example.test")}}, trusted_ca=other.ca_pem,
        name="untrusting").start()
    err = n2.store("s").get("k")[1]
    # the original's wording, which its callers match
    assert err.startswith("unable to SSL handshake with vault server: "), err
    assert err.endswith("(127.0.0.1:%d)" % v.port), err
    assert len(v.requests) == before
    n2.stop()
    v.stop()
    assert v.violations == []
