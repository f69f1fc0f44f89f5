"""nginx with the test control endpoints of t/lua/acme_t.lua (and t/lua/dns_t.lua).

``control_nginx(nginx_factory, *, api_uri, ca_pem, endpoints, extra="", servers="",
http_ports=())`` starts an nginx whose init_by_lua configures ``acme_t`` with a client config
(api_uri, account_email, shm storage, plus the Lua table fields in ``extra``) and whose control
server on a free port maps ``/<name>`` to ``require("<module>").<name>()`` for each
``"module.name"`` in ``endpoints``; ``servers`` adds server blocks (e.g. an http-01 listener
on ``http_ports``). The returned Nginx has ``ctl`` (the control port).
``post(n, path, args, timeout=120)`` POSTs JSON to a control endpoint and decodes the reply.

``http01_server(port)`` is a server block (for ``servers``) on ``port`` answering http-01
challenges through ``acme_t``'s client (``serve_http_challenge``).

``admin_server(port)`` is a server block with autossl's admin view at /admin and its metrics
at /metrics; ``admin_view(port)`` GETs the view as decoded JSON, ``admin_metrics(port)`` the
metrics text.

``eval_server(port)`` is a server block (for ``extra_http``/``servers``) whose ``/eval`` runs
the POSTed Lua chunk through ``acme_t.eval()``; ``lua_eval(port, code, timeout=60)`` POSTs a
chunk there and returns the decoded table it returned (an ``error`` in it fails the test).
"""

import json
import os
import urllib.request

from .nginx import lua_package_path
from .paths import REPO
from .proc import free_port

T_LUA = os.path.join(REPO, "t", "lua", "?.lua")


def control_nginx(nginx_factory, *, api_uri, ca_pem, endpoints, extra="", servers="",
                  http_ports=()):
    ctl = free_port()
    locations = "\n".join(
        '      location = /%s { content_by_lua_block { require("%s").%s() } }'
        % (fn, mod, fn) for mod, fn in (e.split(".") for e in endpoints))
    body = """
    lua_shared_dict acme 4m;
    lua_ssl_trusted_certificate %(ca)s;
    lua_ssl_verify_depth 5;
    init_by_lua_block {
      require("acme_t").setup({
        api_uri = %(api)s,
        account_email = "ops@example.test",
        storage_adapter = "shm",
        storage_config = { shm_name = "acme" },
        %(extra)s
      })
    }
    %(servers)s
    server {
      listen 127.0.0.1:%(ctl)d;
%(locations)s
    }
    """ % {"ca": ca_pem, "api": json.dumps(api_uri), "extra": extra, "servers": servers,
           "ctl": ctl, "locations": locations}
    n = nginx_factory(body, http_ports=list(http_ports) + [ctl],
                      lua_path=T_LUA + ";" + lua_package_path())
    n.ctl = ctl
    return n


def post(n, path, args, timeout=120):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (n.ctl, path),
                                 data=json.dumps(args).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def http01_server(port):
    return """
    server {
      listen 127.0.0.1:%d;
      location /.well-known/acme-challenge/ {
        content_by_lua_block { require("acme_t").client():serve_http_challenge() }
      }
    }""" % port


def admin_server(port):
    """A server block on 127.0.0.1:``port`` with autossl's admin view at /admin and its
    metrics at /metrics."""
    return """
    server {
      listen 127.0.0.1:%d;
      access_log off;
      location = /admin { content_by_lua_block { require("resty.acme.autossl").serve_admin() } }
      location = /metrics {
        content_by_lua_block { require("resty.acme.autossl").serve_metrics() }
      }
    }""" % port


def admin_view(port):
    """GET /admin of ``admin_server(port)`` as decoded JSON."""
    with urllib.request.urlopen("http://127.0.0.1:%d/admin" % port, timeout=30) as r:
        return json.loads(r.read())


def admin_metrics(port):
    """GET /metrics of ``admin_server(port)``: the Prometheus text."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=30) as r:
        return r.read().decode()


def eval_server(port):
    return """
    server {
      listen 127.0.0.1:%d;
      location = /eval { content_by_lua_block { require("acme_t").eval() } }
    }""" % port


def lua_eval(port, code, timeout=60):
    req = urllib.request.Request("http://127.0.0.1:%d/eval" % port, data=code.encode(),
                                 method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        res = json.loads(r.read())
    assert "error" not in res, res["error"]
    return res
