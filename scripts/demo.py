#!/usr/bin/python3
"""Demo: Pebble + pebble-challtestsrv + nginx with resty.acme.autossl, all on 127.0.0.1.

Run through scripts/demo.sh (or `make demo`), which installs packages and builds first.
Steps: start the mock DNS and Pebble, render nginx-conf/autossl.conf, start nginx, make TLS
handshakes with SNI demo.example.test until the served certificate is no longer the fallback,
then print its subject and issuer. Exit 0 on success, 1 on failure. ``--keep`` leaves everything running until Ctrl-C.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "t"))

from harness.nginx import lua_package_cpath, lua_package_path  # noqa: E402
from harness import (  # noqa: E402
    CORE_SO, ChallTestSrv, Nginx, Pebble, TestCA, free_port, http_get, platform, tls_peer_cert,
)

DOMAIN = "demo.example.test"


def step(msg):
    print("==> " + msg, flush=True)


def wait_for_issued(https_port, fallback_cn, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            cert = tls_peer_cert(https_port, DOMAIN)
            last = cert
            if cert.subject.rfc4514_string() != "CN=" + fallback_cn:
                return cert
        except OSError as e:
            last = e
        time.sleep(1)
    raise TimeoutError("still serving %r after %ds" % (
        last.subject.rfc4514_string() if hasattr(last, "subject") else last, timeout))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_workdir = os.path.join(REPO, "build", "demo")
    ap.add_argument("--workdir", default=default_workdir,
                    help="where logs and configs go (default build/demo, emptied first)")
    ap.add_argument("--timeout", type=int, default=90)
    ap.add_argument("--keep", action="store_true", help="keep servers running until Ctrl-C")
    args = ap.parse_args()

    if not os.path.exists(CORE_SO):
        print("demo: %s missing, run `make lua-build`" % CORE_SO, file=sys.stderr)
        return 1
    workdir = os.path.abspath(args.workdir)
    if workdir == default_workdir and os.path.isdir(workdir):
        shutil.rmtree(workdir)  # logs of an earlier run would confuse the log checks
    os.makedirs(workdir, exist_ok=True)
    step("work directory %s" % workdir)
    step("platform: %s (OPENRESTY=<prefix> chooses OpenResty)" % platform.describe())

    procs = []
    try:
        cts = ChallTestSrv(workdir).start()
        procs.append(cts)
        step("pebble-challtestsrv DNS on %s (every name -> 127.0.0.1)" % cts.dns_server)
        pebble = Pebble(workdir, challtestsrv=cts).start()
        procs.append(pebble)
        step("Pebble directory %s (http-01 on port %d)" % (pebble.directory_url, pebble.http_port))

        ca = TestCA(os.path.join(workdir, "fallback"))
        fb_cn = "fallback.invalid"
        fb_cert, fb_key = ca.issue([fb_cn], "fallback")
        https_port = free_port()
        nginx = Nginx(os.path.join(workdir, "nginx"), "",
                      http_ports=[https_port, pebble.http_port])
        # the same example config the README documents and the tests run
        values = {
            "PREFIX": nginx.workdir,
            "LUA_PATH": lua_package_path(),
            "LUA_CPATH": lua_package_cpath(),
            "ACME_DIRECTORY": pebble.directory_url,
            "ACME_CA_CERT": pebble.ca_pem,
            "RESOLVER": cts.dns_server,
            "HTTP_PORT": "127.0.0.1:%d" % pebble.http_port,
            "HTTPS_PORT": "127.0.0.1:%d" % https_port,
            "FALLBACK_CERT": fb_cert,
            "FALLBACK_KEY": fb_key,
            "DOMAINS": '{ "%s" }' % DOMAIN,
            "EMAIL": "demo@example.test",
        }
        subprocess.run([os.path.join(HERE, "render-conf"),
                        os.path.join(REPO, "nginx-conf", "autossl.conf"), nginx.conf_path]
                       + ["%s=%s" % kv for kv in values.items()], check=True)
        nginx.start()
        procs.append(nginx)
        step("nginx with autossl: https://%s:%d/ (127.0.0.1), log %s"
             % (DOMAIN, https_port, nginx.error_log_path))

        step("handshaking with SNI %s until autossl serves an issued certificate" % DOMAIN)
        try:
            cert = wait_for_issued(https_port, fb_cn, args.timeout)
        except TimeoutError as e:
            print("demo: FAILED: %s\n--- nginx error.log ---\n%s\n--- pebble ---\n%s"
                  % (e, nginx.log_tail(40), pebble.log_tail(20)), file=sys.stderr)
            return 1
        status, _, page = http_get("https://127.0.0.1:%d/" % https_port, server_hostname=DOMAIN)
        print()
        print("served certificate for %s" % DOMAIN)
        print("  subject: %s" % cert.subject.rfc4514_string())
        print("  issuer:  %s" % cert.issuer.rfc4514_string())
        print("  expires: %s" % cert.not_valid_after.isoformat())
        print("  page:    HTTP %d %s" % (status, page.decode().strip()))
        if args.keep:
            step("servers keep running; Ctrl-C to stop")
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        return 0
    finally:
        for p in reversed(procs):
            p.stop()


if __name__ == "__main__":
    sys.exit(main())
