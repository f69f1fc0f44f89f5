"""End-to-end tests of the `acme-rs` CLI against a real Pebble.

Run: /usr/bin/python3 -m pytest -v t/test_cli_pebble.py
The CLI is taken from $ACME_RS_BIN, else target/release/acme-rs (brought up to date with
`cargo build --release --bin acme-rs` first unless ACME_RS_SKIP_BUILD=1).
"""

import base64
import json
import os
import re
import shutil
import stat
import subprocess
import textwrap

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from harness import REPO, TestCA, free_port
from harness.pebble import EAB_KEY, EAB_KID
from pemutil import common_name as cn
from pemutil import dns_names, load_certs

# the CLI against Pebble, no nginx: `make test` runs this file on its first platform only
pytestmark = pytest.mark.platform_independent

CLI_TIMEOUT = 240


@pytest.fixture(scope="session")
def cli():
    """$ACME_RS_BIN, else target/release/acme-rs, (re)built by cargo (a no-op when current)."""
    if os.environ.get("ACME_RS_BIN"):
        return os.environ["ACME_RS_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    path = os.path.join(target, "release", "acme-rs")
    cargo = shutil.which("cargo") or os.path.expanduser("~/.cargo/bin/cargo")
    if os.environ.get("ACME_RS_SKIP_BUILD") != "1" and os.path.exists(cargo):
        subprocess.run([cargo, "build", "--release", "--bin", "acme-rs"], cwd=REPO, check=True)
    assert os.path.exists(path), "acme-rs not built: cargo build --release --bin acme-rs"
    return path


class Run:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    @property
    def error(self):
        """The last stderr line (where the CLI prints `error: <cause>`)."""
        lines = self.err.strip().splitlines()
        return lines[-1] if lines else ""

    def __repr__(self):
        return "rc=%d\n--- stdout\n%s\n--- stderr\n%s" % (self.rc, self.out, self.err)


def run(cli, *args, check=None):
    p = subprocess.run([cli, *[str(a) for a in args]], capture_output=True, text=True,
                       timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)
    r = Run(p)
    # Never any private key on the terminal.
    assert "PRIVATE KEY" not in r.out and "PRIVATE KEY" not in r.err, r
    if check is not None:
        assert r.rc == check, r
    return r


def ca_args(pebble):
    return ["--directory", pebble.directory_url, "--ca-bundle", pebble.ca_pem]


def http_args(pebble):
    return ["--http-listen", "127.0.0.1:%d" % pebble.http_port]


def b64name(key):
    return base64.b64encode(key.encode()).decode()


def read_entry(store, key):
    """(expiry, value) of a store file, checking name, format and mode."""
    path = os.path.join(str(store), b64name(key))
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    with open(path) as f:
        content = f.read()
    expiry, sep, value = content.partition("::")
    assert sep == "::" and expiry.isdigit() and value, content[:40]
    return int(expiry), value


def cert_entry(store, name, typ):
    expiry, value = read_entry(store, "domain:%s:%s" % (typ, name))
    assert expiry == 0
    entry = json.loads(value)
    assert set(entry) == {"domain", "pkey", "cert", "type", "updated"}
    assert entry["domain"] == name and entry["type"] == typ
    assert isinstance(entry["updated"], float) or isinstance(entry["updated"], int)
    return entry


def public_bytes(key):
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def verify_issued(pebble, store, names, typ, chain_index=0):
    """Checks the stored entry for names[0]: SANs, issuer, signature, key match."""
    entry = cert_entry(store, names[0], typ)
    chain = load_certs(entry["cert"])
    leaf = chain[0]
    assert dns_names(leaf) == sorted(names)
    inter = x509.load_pem_x509_certificate(pebble.intermediates()[chain_index].encode())
    assert leaf.issuer == inter.subject
    pub = inter.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        pub.verify(leaf.signature, leaf.tbs_certificate_bytes, padding.PKCS1v15(),
                   leaf.signature_hash_algorithm)
    else:
        pub.verify(leaf.signature, leaf.tbs_certificate_bytes,
                   ec.ECDSA(leaf.signature_hash_algorithm))
    key = serialization.load_pem_private_key(entry["pkey"].encode(), None)
    assert entry["pkey"].startswith("-----BEGIN PRIVATE KEY-----")
    assert public_bytes(key.public_key()) == public_bytes(leaf.public_key())
    if typ == "rsa":
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 4096
    else:
        assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    return entry, leaf


DNS_HOOK = textwrap.dedent("""\
    #!/usr/bin/python3
    # dns-01 hook for acme-rs tests: keeps the TXT values of each name in a JSON file and
    # mirrors them into pebble-challtestsrv.
    import json, os, sys, urllib.request
    MGMT = %(mgmt)r
    STATE = %(state)r
    LOG = %(log)r

    def post(path, body):
        req = urllib.request.Request(MGMT + path, data=json.dumps(body).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=5).read()

    verb, fqdn, value = sys.argv[1:4]
    state = json.load(open(STATE)) if os.path.exists(STATE) else {}
    values = state.setdefault(fqdn, [])
    if verb == "add":
        values.append(value)
    elif verb == "del":
        if value in values:
            values.remove(value)
    else:
        sys.exit("bad verb " + verb)
    post("/clear-txt", {"host": fqdn + "."})
    for v in values:
        post("/set-txt", {"host": fqdn + ".", "value": v})
    json.dump(state, open(STATE, "w"))
    with open(LOG, "a") as f:
        f.write("%%s %%s %%s\\n" %% (verb, fqdn, value))
    """)


def write_hook(workdir, challtestsrv):
    path = os.path.join(str(workdir), "dns-hook.py")
    log = os.path.join(str(workdir), "dns-hook.log")
    with open(path, "w") as f:
        f.write(DNS_HOOK % {"mgmt": challtestsrv.mgmt_url,
                            "state": os.path.join(str(workdir), "dns-hook.json"), "log": log})
    os.chmod(path, 0o700)
    return path, log


def hook_lines(log):
    with open(log) as f:
        return [line.split() for line in f.read().splitlines()]


# -- issuance -----------------------------------------------------------------------------


def test_pebble_issue_http01_rsa(cli, pebble, workdir):
    store = workdir / "store"
    names = ["www.example.com", "example.com"]
    r = run(cli, "issue", *ca_args(pebble), *http_args(pebble), "--store", store,
            "--domain", "WWW.Example.com", "--domain", "example.com", "--email", "ops@example.com",
            check=0)
    assert "stored domain:rsa:www.example.com" in r.out
    assert "SANs:        www.example.com, example.com" in r.out or \
        "SANs:        example.com, www.example.com" in r.out
    entry, leaf = verify_issued(pebble, store, names, "rsa")
    serials = re.findall(r"serial:      ([0-9a-f]+)", r.out)
    assert int(serials[0], 16) == leaf.serial_number

    # The account key lives in the store under account_key:, raw PEM, RSA 4096.
    expiry, pem = read_entry(store, "account_key:")
    assert expiry == 0
    akey = serialization.load_pem_private_key(pem.encode(), None)
    assert isinstance(akey, rsa.RSAPrivateKey) and akey.key_size == 4096
    # Nothing else in the store (no temporary files left behind).
    assert sorted(os.listdir(store)) == sorted(
        [b64name("account_key:"), b64name("domain:rsa:www.example.com")])
    assert b64name("domain:rsa:www.example.com") == "ZG9tYWluOnJzYTp3d3cuZXhhbXBsZS5jb20="

    # A second issuance reuses the account.
    accounts = pebble.accounts_count()
    run(cli, "issue", *ca_args(pebble), *http_args(pebble), "--store", store,
        "--domain", "example.com", "--key-type", "ecc", check=0)
    assert pebble.accounts_count() == accounts
    verify_issued(pebble, store, ["example.com"], "ecc")

    # show: from the store and from a PEM file.
    r = run(cli, "show", "--store", store, "--domain", "www.example.com", check=0)
    assert "key matches certificate: yes" in r.out
    assert "issuer:      CN=%s" % cn(leaf.issuer) in r.out
    na = leaf.not_valid_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert "not after:   %s" % na in r.out
    pem_file = workdir / "chain.pem"
    pem_file.write_text(entry["cert"])
    r2 = run(cli, "show", pem_file, check=0)
    assert r2.out.count("certificate ") == len(load_certs(entry["cert"]))
    assert "sha256:      %s" % leaf.fingerprint(hashes.SHA256()).hex() in r2.out


def test_pebble_issue_dns01_and_wildcard(cli, pebble, challtestsrv, workdir):
    hook, log = write_hook(workdir, challtestsrv)
    store = workdir / "store"
    run(cli, "issue", *ca_args(pebble), "--dns-hook", hook, "--store", store,
        "--domain", "dns.example.com", "--key-type", "ecc", check=0)
    verify_issued(pebble, store, ["dns.example.com"], "ecc")
    lines = hook_lines(log)
    assert [l[:2] for l in lines] == [["add", "_acme-challenge.dns.example.com"],
                                      ["del", "_acme-challenge.dns.example.com"]]
    assert lines[0][2] == lines[1][2] and len(lines[0][2]) == 43  # base64url(SHA-256)

    # Wildcard plus its base name: two TXT values on the same name.
    run(cli, "issue", *ca_args(pebble), "--dns-hook", hook, "--store", store,
        "--domain", "*.wild.example.com", "--domain", "wild.example.com", check=0)
    verify_issued(pebble, store, ["*.wild.example.com", "wild.example.com"], "rsa")
    lines = hook_lines(log)[2:]
    assert sorted(l[:2] for l in lines) == [["add", "_acme-challenge.wild.example.com"]] * 2 + \
        [["del", "_acme-challenge.wild.example.com"]] * 2
    with open(os.path.join(str(workdir), "dns-hook.json")) as f:
        assert json.load(f)["_acme-challenge.wild.example.com"] == []


def test_pebble_wildcard_needs_dns_hook(cli, pebble, workdir):
    r = run(cli, "issue", *ca_args(pebble), *http_args(pebble), "--store", workdir / "s",
            "--domain", "*.example.com", check=2)
    assert "needs --dns-hook" in r.err


def test_pebble_dns_hook_failure_is_reported(cli, pebble, workdir):
    hook = workdir / "bad-hook.sh"
    hook.write_text("#!/bin/sh\necho 'provider said no' >&2\nexit 4\n")
    hook.chmod(0o700)
    r = run(cli, "issue", *ca_args(pebble), "--dns-hook", hook, "--store", workdir / "s",
            "--domain", "x.example.com", check=1)
    assert r.error.startswith("error: ")
    assert "provider said no" in r.err


# -- EAB ----------------------------------------------------------------------------------

def test_pebble_eab(cli, eab_pebble, workdir):
    p = eab_pebble
    # Without EAB: the CA's refusal is shown.
    r = run(cli, "issue", *ca_args(p), *http_args(p), "--store", workdir / "s0",
            "--domain", "eab.example.com", check=1)
    assert r.error.startswith("error: creating the account failed")
    assert "external" in r.err.lower()
    # Wrong HMAC key (valid base64url, other bytes).
    wrong = base64.urlsafe_b64encode(os.urandom(48)).decode().rstrip("=")
    r = run(cli, "issue", *ca_args(p), *http_args(p), "--store", workdir / "s1",
            "--domain", "eab.example.com", "--eab-kid", EAB_KID, "--eab-hmac-key", wrong, check=1)
    assert r.error.startswith("error: creating the account failed")
    assert "acme problem" in r.err
    # Right key.
    store = workdir / "s2"
    run(cli, "issue", *ca_args(p), *http_args(p), "--store", store,
        "--domain", "eab.example.com", "--eab-kid", EAB_KID, "--eab-hmac-key", EAB_KEY,
        "--key-type", "ecc", check=0)
    verify_issued(p, store, ["eab.example.com"], "ecc")
    # Half the credentials is a usage error.
    r = run(cli, "issue", *ca_args(p), "--store", store, "--domain", "eab.example.com",
            "--eab-kid", EAB_KID, check=2)


# -- alternate chains ---------------------------------------------------------------------


def test_pebble_preferred_chain(cli, workdir, alt_pebble):
    p = alt_pebble
    roots = [x509.load_pem_x509_certificate(pem.encode()) for pem in p.roots()]
    assert len(roots) == 3
    for i, root in enumerate(roots):
        store = workdir / ("store%d" % i)
        run(cli, "issue", *ca_args(p), *http_args(p), "--store", store,
            "--domain", "chain.example.com", "--key-type", "ecc",
            "--preferred-chain", cn(root.subject), check=0)
        entry = cert_entry(store, "chain.example.com", "ecc")
        top = load_certs(entry["cert"])[-1]
        assert top.issuer == root.subject, (i, cn(top.issuer), cn(root.subject))
        verify_issued(p, store, ["chain.example.com"], "ecc", chain_index=i)
    # An unknown name keeps the default chain.
    store = workdir / "store-x"
    run(cli, "issue", *ca_args(p), *http_args(p), "--store", store,
        "--domain", "chain.example.com", "--key-type", "ecc",
        "--preferred-chain", "No Such Root", check=0)
    top = load_certs(cert_entry(store, "chain.example.com", "ecc")["cert"])[-1]
    assert top.issuer == roots[0].subject


# -- revocation ---------------------------------------------------------------------------


@pytest.mark.parametrize("use_cert_key", [False, True])
def test_pebble_revoke(cli, pebble, workdir, use_cert_key):
    store = workdir / "store"
    run(cli, "issue", *ca_args(pebble), *http_args(pebble), "--store", store,
        "--domain", "revoke.example.com", "--key-type", "ecc", check=0)
    leaf = load_certs(cert_entry(store, "revoke.example.com", "ecc")["cert"])[0]
    serial = "%x" % leaf.serial_number
    assert pebble.cert_status(serial)["Status"] == "Valid"
    extra = ["--use-cert-key"] if use_cert_key else []
    r = run(cli, "revoke", *ca_args(pebble), "--store", store, "--domain", "revoke.example.com",
            "--key-type", "ecc", "--reason", "4", *extra, check=0)
    assert serial in r.out
    st = pebble.cert_status(serial)
    assert st["Status"] == "Revoked"
    # Revoking again is refused by the CA: a clear error.
    r = run(cli, "revoke", *ca_args(pebble), "--store", store, "--domain", "revoke.example.com",
            "--key-type", "ecc", *extra, check=1)
    assert r.error.startswith("error: revoking the certificate failed")
    assert "alreadyRevoked" in r.err


def test_pebble_revoke_missing_entry(cli, pebble, workdir):
    store = workdir / "store"
    store.mkdir()
    r = run(cli, "revoke", *ca_args(pebble), "--store", store, "--domain", "nope.example.com",
            check=1)
    assert "no certificate stored under domain:rsa:nope.example.com" in r.err


# -- account ------------------------------------------------------------------------------


def test_pebble_account_rollover(cli, pebble, workdir):
    store = workdir / "store"
    r = run(cli, "issue", *ca_args(pebble), *http_args(pebble), "--store", store,
            "--domain", "roll.example.com", "--key-type", "ecc", check=0)
    account_url = [l for l in r.err.splitlines() if l.startswith("account ")][0].split()[1]
    _, old_pem = read_entry(store, "account_key:")
    old_file = workdir / "old-account.pem"
    old_file.write_text(old_pem)
    old_file.chmod(0o600)

    r = run(cli, "account", "rollover", *ca_args(pebble), "--store", store, "--key-type", "ecc",
            check=0)
    assert account_url in r.out
    _, new_pem = read_entry(store, "account_key:")
    assert new_pem != old_pem
    newkey = serialization.load_pem_private_key(new_pem.encode(), None)
    assert isinstance(newkey, ec.EllipticCurvePrivateKey)
    assert sorted(os.listdir(store)) == sorted(
        [b64name("account_key:"), b64name("domain:ecc:roll.example.com")])

    # The old key no longer finds the account.
    r = run(cli, "account", "deactivate", *ca_args(pebble), "--store", store,
            "--account-key", old_file, check=1)
    assert r.error.startswith("error: looking up the account failed")
    assert "accountDoesNotExist" in r.err
    # The new key is the same account and can order.
    r = run(cli, "issue", *ca_args(pebble), *http_args(pebble), "--store", store,
            "--domain", "roll.example.com", "--key-type", "ecc", check=0)
    assert "account %s (existing)" % account_url in r.err

    # Deactivation, after which the account cannot order any more.
    r = run(cli, "account", "deactivate", *ca_args(pebble), "--store", store, check=0)
    assert "account %s deactivated" % account_url in r.out
    r = run(cli, "issue", *ca_args(pebble), *http_args(pebble), "--store", store,
            "--domain", "roll.example.com", check=1)
    assert r.error.startswith("error: ")
    assert "unauthorized" in r.err or "deactivated" in r.err


def test_pebble_account_key_file(cli, pebble, workdir):
    store = workdir / "store"
    keyfile = workdir / "acct.pem"
    run(cli, "issue", *ca_args(pebble), *http_args(pebble), "--store", store,
        "--account-key", keyfile, "--domain", "file.example.com", "--key-type", "ecc", check=0)
    assert stat.S_IMODE(os.stat(keyfile).st_mode) == 0o600
    assert keyfile.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert os.listdir(store) == [b64name("domain:ecc:file.example.com")]


# -- badNonce -----------------------------------------------------------------------------


def test_pebble_nonce_reject_still_issues(cli, workdir, nonce_pebble):
    p = nonce_pebble
    store = workdir / "store"
    rejected = 0
    for i in range(3):
        name = "nonce%d.example.com" % i
        r = run(cli, "issue", *ca_args(p), *http_args(p), "--store", store,
                "--domain", name, "--key-type", "ecc", "--verbose", check=0)
        verify_issued(p, store, [name], "ecc")
        rejected += r.err.count("\n< 400 ")
    # Pebble does not log its rejections; --verbose shows them as 400 replies.
    assert rejected > 0


# -- failures -----------------------------------------------------------------------------


def test_pebble_untrusted_tls(cli, pebble, workdir):
    other = TestCA(workdir / "other-ca")
    for bundle in ([], ["--ca-bundle", other.ca_pem]):
        r = run(cli, "issue", "--directory", pebble.directory_url, *bundle, *http_args(pebble),
                "--store", workdir / "s", "--domain", "t.example.com", "--key-type", "ecc",
                check=1)
        assert r.error.startswith("error: fetching the ACME directory %s failed" %
                                pebble.directory_url), r
        assert "not trusted" in r.err, r
    assert pebble.accounts_count() == 0


def test_pebble_ca_down(cli, workdir, pebble):
    port = free_port()
    url = "https://127.0.0.1:%d/dir" % port
    r = run(cli, "issue", "--directory", url, "--ca-bundle", pebble.ca_pem,
            "--http-listen", "127.0.0.1:%d" % free_port(), "--store", workdir / "s",
            "--domain", "down.example.com", "--key-type", "ecc", check=1)
    assert r.error.startswith("error: fetching the ACME directory %s failed" % url), r
    assert "connection refused" in r.err, r


def test_pebble_bad_ca_bundle_and_usage(cli, pebble, workdir):
    bad = workdir / "bad.pem"
    bad.write_text("nothing here\n")
    r = run(cli, "issue", "--directory", pebble.directory_url, "--ca-bundle", bad,
            *http_args(pebble), "--store", workdir / "s", "--domain", "x.example.com", check=1)
    assert "no certificate found in CA bundle" in r.err
    r = run(cli, "issue", "--store", workdir / "s", "--domain", "x.example.com",
            *http_args(pebble), check=2)
    assert "--directory is required" in r.err
    r = run(cli, "frobnicate", check=2)
    r = run(cli, "issue", "--bogus", check=2)
    r = run(cli, "--help", check=0)
    assert "acme-rs issue" in r.out
    # Malformed store content is reported, not ignored.
    store = workdir / "m"
    store.mkdir()
    (store / b64name("domain:rsa:m.example.com")).write_text("garbage")
    r = run(cli, "show", "--store", store, "--domain", "m.example.com", check=1)
    assert "malformed store entry" in r.err
