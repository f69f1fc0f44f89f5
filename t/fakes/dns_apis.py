"""A fake of the three DNS provider HTTP APIs the dns_provider modules call, over HTTPS with a
harness TestCA certificate, for the provider tests.

One server, three API roots (pass them as ``api_base``):

- ``<url>/cloudflare/client/v4``  Cloudflare API v4: ``GET /zones`` (paginated),
  ``GET|POST /zones/<id>/dns_records`` (GET paginated, filters ``type`` and ``name``),
  ``DELETE /zones/<id>/dns_records/<id>``. ``Authorization: Bearer <token>``; answers use the
  v4 envelope ``{success, errors: [{code, message}], messages, result, result_info}``; a bad
  token gets 403 code 10000 "Authentication error", an unknown zone 404 code 7003, a duplicate
  record 400 code 81058 "An identical record already exists.", an unknown record 404 81044.
- ``<url>/dynv6/api/v2``  dynv6 REST API: ``GET /zones``, ``GET|POST /zones/<id>/records``,
  ``DELETE /zones/<id>/records/<id>`` (204). A bad token gets 401, an unknown zone 404.
- ``<url>/dnspod``  DNSPod international: ``POST /Record.Create|Record.List|Record.Remove`` with
  a JSON body carrying ``login_token``; always HTTP 200 with ``{status: {code, message,
  created_at}, ...}``: code "1" is success, "-1" "Login failed.", "6" for an unknown domain,
  "8" for an unknown record id, "10" "No records" (unless ``error_on_empty`` is "no").

Every request is logged in ``requests`` as ``{api, method, path, query, headers, body}``
(headers lower-cased, body parsed as JSON when it is). ``on_change(fqdn, values)`` is called
after any TXT change with every TXT value now at ``fqdn`` (to mirror them into a test DNS).
"""

import datetime
import itertools
import json
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import secrets


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


class FakeDnsApis:
    def __init__(self, ca, tokens, *, cloudflare_zones=(), dynv6_zones=(), dnspod_domains=(),
                 cloudflare_per_page_max=50, on_change=None):
        """``ca``: a harness TestCA (its server cert covers 127.0.0.1). ``tokens``:
        {"cloudflare": t, "dynv6": t, "dnspod": "<id>,<token>"}. Zones: lists of names."""
        self.ca = ca
        self.tokens = dict(tokens)
        secrets.register(*self.tokens.values())
        self.on_change = on_change
        self.per_page_max = cloudflare_per_page_max
        self.lock = threading.Lock()
        self.requests = []
        self._ids = itertools.count(1000)
        # cloudflare: id -> {"id", "name", "records": [record]}
        self.cf_zones = {}
        for name in cloudflare_zones:
            zid = "%032x" % next(self._ids)
            self.cf_zones[zid] = {"id": zid, "name": name, "records": []}
        # dynv6: id (int) -> {"id", "name", "records": [record]}
        self.dv_zones = {}
        for name in dynv6_zones:
            zid = next(self._ids)
            self.dv_zones[zid] = {"id": zid, "name": name, "records": []}
        # dnspod: domain -> [record]
        self.dp_domains = {name: [] for name in dnspod_domains}
        self.server = None
        self.thread = None

    # --- lifecycle -------------------------------------------------------------------------

    def start(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("latin-1")
                parsed = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(parsed.query))
                entry = {"method": self.command, "path": parsed.path, "query": query,
                         "headers": {k.lower(): v for k, v in self.headers.items()},
                         "body": body}
                status, ctype, out = fake._route(entry)
                data = out if isinstance(out, bytes) else (
                    json.dumps(out).encode() if ctype == "application/json" else out.encode())
                self.send_response(status)
                if status != 204:
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                else:
                    data = b""
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.ca.cert_pem, self.ca.key_pem)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = "https://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def api_base(self, api):
        return {"cloudflare": self.url + "/cloudflare/client/v4",
                "dynv6": self.url + "/dynv6/api/v2",
                "dnspod": self.url + "/dnspod"}[api]

    def calls(self, api):
        """Logged requests of one API: (method, path relative to its root)."""
        with self.lock:
            return [(r["method"], r["path"]) for r in self.requests if r["api"] == api]

    # --- state helpers for tests ----------------------------------------------------------

    def cf_zone_id(self, name):
        return next(z["id"] for z in self.cf_zones.values() if z["name"] == name)

    def dv_zone_id(self, name):
        return next(z["id"] for z in self.dv_zones.values() if z["name"] == name)

    def add_cloudflare_record(self, zone, rtype, name, content):
        z = self.cf_zones[self.cf_zone_id(zone)]
        rec = self._cf_record(z, rtype, name, content, 1)
        z["records"].append(rec)
        return rec

    def add_dynv6_record(self, zone, rtype, name, data):
        z = self.dv_zones[self.dv_zone_id(zone)]
        rec = {"type": rtype, "name": name, "data": data, "priority": None, "flags": None,
               "tag": None, "weight": None, "port": None, "id": next(self._ids),
               "zoneID": z["id"]}
        z["records"].append(rec)
        return rec

    def add_dnspod_record(self, domain, rtype, sub, value):
        rec = {"id": str(next(self._ids)), "name": sub, "line": "Default", "type": rtype,
               "ttl": "600", "value": value, "mx": "0", "enabled": "1", "status": "enabled",
               "monitor_status": "", "remark": "", "updated_on": _now()}
        self.dp_domains[domain].append(rec)
        return rec

    def records(self, api):
        """Every record of an API as (type, fqdn, value)."""
        out = []
        with self.lock:
            if api == "cloudflare":
                for z in self.cf_zones.values():
                    out += [(r["type"], r["name"], r["content"]) for r in z["records"]]
            elif api == "dynv6":
                for z in self.dv_zones.values():
                    out += [(r["type"], (r["name"] + "." + z["name"]) if r["name"] else z["name"],
                             r["data"]) for r in z["records"]]
            else:
                for d, recs in self.dp_domains.items():
                    out += [(r["type"], d if r["name"] == "@" else r["name"] + "." + d,
                             r["value"]) for r in recs]
        return sorted(out)

    def _txt_changed(self, api, fqdn):
        if self.on_change:
            values = [v for t, n, v in self.records(api) if t == "TXT" and n == fqdn]
            self.on_change(fqdn, values)

    # --- routing --------------------------------------------------------------------------

    def _route(self, e):
        path = e["path"]
        for api, root in (("cloudflare", "/cloudflare/client/v4"), ("dynv6", "/dynv6/api/v2"),
                          ("dnspod", "/dnspod")):
            if path == root or path.startswith(root + "/"):
                e["api"] = api
                e["path"] = path[len(root):] or "/"
                with self.lock:
                    self.requests.append(e)
                changed = []
                with self.lock:
                    result = getattr(self, "_" + api)(e, changed)
                for fqdn in changed:
                    self._txt_changed(api, fqdn)
                return result
        return 404, "text/plain", "no such api"

    # --- Cloudflare v4 --------------------------------------------------------------------

    @staticmethod
    def _cf_env(result=None, errors=(), info=None):
        out = {"success": not errors, "errors": list(errors), "messages": [], "result": result}
        if info is not None:
            out["result_info"] = info
        return out

    def _cf_error(self, status, code, message):
        return status, "application/json", self._cf_env(None, [{"code": code, "message": message}])

    def _cf_page(self, items, q):
        try:
            page = max(1, int(q.get("page", 1)))
            per_page = min(self.per_page_max, max(5, int(q.get("per_page", 20))))
        except ValueError:
            return None
        total_pages = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page:page * per_page]
        return self._cf_env(chunk, info={"page": page, "per_page": per_page, "count": len(chunk),
                                         "total_count": len(items), "total_pages": total_pages})

    def _cf_record(self, z, rtype, name, content, ttl):
        return {"id": "%032x" % next(self._ids), "zone_id": z["id"], "zone_name": z["name"],
                "name": name, "type": rtype, "content": content, "proxiable": False,
                "proxied": False, "ttl": ttl, "locked": False, "created_on": _now(),
                "modified_on": _now()}

    def _cloudflare(self, e, changed):
        if e["headers"].get("authorization") != "Bearer " + self.tokens["cloudflare"]:
            return self._cf_error(403, 10000, "Authentication error")
        parts = [p for p in e["path"].split("/") if p]
        m, q = e["method"], e["query"]
        if parts == ["zones"] and m == "GET":
            zones = [{"id": z["id"], "name": z["name"], "status": "active", "paused": False,
                      "type": "full"} for z in self.cf_zones.values()]
            if "name" in q:
                zones = [z for z in zones if z["name"] == q["name"]]
            return 200, "application/json", self._cf_page(zones, q)
        if len(parts) >= 3 and parts[0] == "zones" and parts[2] == "dns_records":
            z = self.cf_zones.get(parts[1])
            if z is None:
                return self._cf_error(404, 7003, "Could not route to /zones/%s/dns_records, "
                                      "perhaps your object identifier is invalid?" % parts[1])
            if len(parts) == 3 and m == "GET":
                recs = [r for r in z["records"]
                        if ("type" not in q or r["type"] == q["type"])
                        and ("name" not in q or r["name"] == q["name"])]
                return 200, "application/json", self._cf_page(recs, q)
            if len(parts) == 3 and m == "POST":
                b = e["body"] if isinstance(e["body"], dict) else {}
                if e["headers"].get("content-type") != "application/json":
                    return self._cf_error(400, 6003, "Invalid request headers")
                for field in ("type", "name", "content"):
                    if not isinstance(b.get(field), str) or not b[field]:
                        return self._cf_error(400, 9005 if field == "content" else 9000,
                                              "DNS record %s is invalid" % field)
                name = b["name"]
                if not (name == z["name"] or name.endswith("." + z["name"])):
                    return self._cf_error(400, 9007, "Content for TXT record is invalid: "
                                          "record name is not in the zone")
                for r in z["records"]:
                    if (r["type"], r["name"], r["content"]) == (b["type"], name, b["content"]):
                        return self._cf_error(400, 81058, "An identical record already exists.")
                rec = self._cf_record(z, b["type"], name, b["content"], b.get("ttl", 1))
                z["records"].append(rec)
                changed.append(name)
                return 200, "application/json", self._cf_env(rec)
            if len(parts) == 4 and m == "DELETE":
                for r in z["records"]:
                    if r["id"] == parts[3]:
                        z["records"].remove(r)
                        changed.append(r["name"])
                        return 200, "application/json", self._cf_env({"id": r["id"]})
                return self._cf_error(404, 81044, "Record does not exist.")
        return self._cf_error(404, 7000, "No route for that URI")

    # --- dynv6 ----------------------------------------------------------------------------

    def _dynv6(self, e, changed):
        if e["headers"].get("authorization") != "Bearer " + self.tokens["dynv6"]:
            return 401, "text/plain", "Unauthorized"
        parts = [p for p in e["path"].split("/") if p]
        m = e["method"]
        if parts == ["zones"] and m == "GET":
            return 200, "application/json", [
                {"name": z["name"], "ipv4address": "", "ipv6prefix": "", "id": z["id"],
                 "createdAt": "2024-01-01T00:00:00+01:00", "updatedAt": "2024-01-01T00:00:00+01:00"}
                for z in self.dv_zones.values()]
        if len(parts) >= 3 and parts[0] == "zones" and parts[2] == "records":
            try:
                z = self.dv_zones.get(int(parts[1]))
            except ValueError:
                z = None
            if z is None:
                return 404, "text/plain", "Zone not found"
            if len(parts) == 3 and m == "GET":
                return 200, "application/json", list(z["records"])
            if len(parts) == 3 and m == "POST":
                b = e["body"] if isinstance(e["body"], dict) else {}
                if not isinstance(b.get("name"), str) or not isinstance(b.get("data"), str) \
                        or b.get("type") not in ("A", "AAAA", "CNAME", "MX", "SPF", "SRV", "TXT", "CAA"):
                    return 400, "text/plain", "Bad Request"
                rec = {"type": b["type"], "name": b["name"], "data": b["data"], "priority": None,
                       "flags": None, "tag": None, "weight": None, "port": None,
                       "id": next(self._ids), "zoneID": z["id"]}
                z["records"].append(rec)
                changed.append((b["name"] + "." + z["name"]) if b["name"] else z["name"])
                return 200, "application/json", rec
            if len(parts) == 4 and m == "DELETE":
                for r in z["records"]:
                    if str(r["id"]) == parts[3]:
                        z["records"].remove(r)
                        changed.append((r["name"] + "." + z["name"]) if r["name"] else z["name"])
                        return 204, "", b""
                return 404, "text/plain", "Record not found"
        return 404, "text/plain", "Not Found"

    # --- DNSPod international -------------------------------------------------------------

    @staticmethod
    def _dp(code, message, **extra):
        out = {"status": {"code": code, "message": message, "created_at": _now()}}
        out.update(extra)
        return 200, "application/json", out

    def _dnspod(self, e, changed):
        if e["method"] != "POST":
            return 405, "text/plain", "Method Not Allowed"
        b = e["body"] if isinstance(e["body"], dict) else {}
        if b.get("login_token") != self.tokens["dnspod"]:
            return self._dp("-1", "Login failed.")
        action = e["path"].strip("/")
        domain = b.get("domain")
        if domain not in self.dp_domains:
            return self._dp("6", "Domain id is invalid.")
        recs = self.dp_domains[domain]
        if action == "Record.Create":
            for field in ("sub_domain", "record_type", "record_line", "value"):
                if not b.get(field):
                    return self._dp("6", "Lack of parameters: %s" % field)
            rec = self.add_dnspod_record(domain, b["record_type"], b["sub_domain"], b["value"])
            rec["ttl"] = str(b.get("ttl", 600))
            changed.append(domain if b["sub_domain"] == "@" else b["sub_domain"] + "." + domain)
            return self._dp("1", "Action completed successful",
                            record={"id": rec["id"], "name": rec["name"], "status": "enable"})
        if action == "Record.List":
            found = [r for r in recs if "sub_domain" not in b or r["name"] == b["sub_domain"]]
            if not found and b.get("error_on_empty") != "no":
                return self._dp("10", "No records")
            return self._dp("1", "Action completed successful",
                            domain={"id": "9", "name": domain, "punycode": domain,
                                    "grade": "DP_Free", "owner": "owner@example.test"},
                            info={"sub_domains": str(len(found)), "record_total": str(len(found))},
                            records=found)
        if action == "Record.Remove":
            for r in recs:
                if r["id"] == str(b.get("record_id")):
                    recs.remove(r)
                    changed.append(domain if r["name"] == "@" else r["name"] + "." + domain)
                    return self._dp("1", "Action completed successful")
            return self._dp("8", "Record id is invalid.")
        return self._dp("-9", "Unknown API")
