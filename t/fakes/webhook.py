"""A webhook endpoint for the ``webhook`` dns provider: HTTPS, a bearer token, JSON bodies
{"fqdn", "name", "value"}; POST adds the TXT record, DELETE removes it, through
t/hooks/nsupdate-hook.sh against a BIND server. ``fail_post = True`` adds the record and then
answers 500."""

import json
import subprocess

from .httpfake import FakeServer


class Webhook(FakeServer):
    def __init__(self, ca, token, hook_argv):
        cert, key = ca.issue(["localhost"], "webhook", ips=("127.0.0.1",))
        super().__init__(tls=(cert, key))
        self.token = token
        self.hook_argv = list(hook_argv)
        self.fail_post = False

    @property
    def url(self):
        return "https://127.0.0.1:%d/acme/txt" % self.port

    def handle(self, req):
        if req.headers.get("authorization") != "Bearer " + self.token:
            return 401, {"error": "bad token"}, {}
        if req.path != "/acme/txt" or req.method not in ("POST", "DELETE"):
            return 404, {"error": "not found"}, {}
        body = json.loads(req.body or b"{}")
        action = "add" if req.method == "POST" else "remove"
        r = subprocess.run(self.hook_argv + ["ok", action, body["name"], body.get("value") or ""],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            return 502, {"error": r.stdout}, {}
        if self.fail_post and req.method == "POST":
            return 500, {"error": "backend exploded"}, {}
        return 200, {"ok": True}, {}
