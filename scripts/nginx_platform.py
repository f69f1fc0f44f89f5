"""Which nginx the tests, the demo and the bench run: Debian's packages or an OpenResty prefix.

One variable chooses: ``OPENRESTY=<prefix>`` in the environment (``make test OPENRESTY=...``)
selects an OpenResty installation (``<prefix>/nginx/sbin/nginx``, static lua and stream-lua
modules, ``<prefix>/lualib`` ahead of Debian's Lua paths); unset or empty selects Debian 12's
nginx with its dynamic modules (``load_module`` lines) and ``/usr/share/lua/5.1``.

Used by t/harness (nginx.py), scripts/render-conf, scripts/demo.py and bench/lib.py, so every
one of them renders the same lines for the same platform.
"""

import glob
import os

DEBIAN_NGINX = "/usr/sbin/nginx"
DEBIAN_LUA = "/usr/share/lua/5.1"
_MODULE_DIRS = ("/usr/lib/nginx/modules", "/usr/share/nginx/modules")


def openresty_prefix():
    """The OpenResty prefix chosen by ``OPENRESTY``, or None for Debian's nginx."""
    p = os.environ.get("OPENRESTY", "").strip()
    if not p:
        return None
    p = os.path.abspath(p)
    if not os.path.isfile(os.path.join(p, "nginx", "sbin", "nginx")):
        raise SystemExit("OPENRESTY=%s: no nginx/sbin/nginx there (build one with "
                         "scripts/build-openresty.sh)" % p)
    return p


def name():
    """"openresty" or "debian"."""
    return "openresty" if openresty_prefix() else "debian"


def nginx_bin():
    p = openresty_prefix()
    return os.path.join(p, "nginx", "sbin", "nginx") if p else DEBIAN_NGINX


def has_stream_lua():
    """Only OpenResty builds stream-lua-nginx-module here (Debian 12 packages none)."""
    return openresty_prefix() is not None


def find_module(mod):
    """Absolute path of a dynamic nginx module shipped by Debian (e.g. "ngx_http_lua_module")."""
    for d in _MODULE_DIRS:
        found = sorted(glob.glob(os.path.join(d, mod + ".so")))
        if found:
            return found[0]
    raise FileNotFoundError("nginx module %s.so not found in %s (apt-get install "
                            "libnginx-mod-http-lua)" % (mod, ", ".join(_MODULE_DIRS)))


def module_lines(stream=False):
    """``load_module`` lines the main context needs (none: OpenResty's modules are static)."""
    if openresty_prefix():
        return []
    mods = ["ndk_http_module", "ngx_http_lua_module"]
    if stream:
        mods.append("ngx_stream_module")
    return ["load_module %s;" % find_module(m) for m in mods]


def main_lines(stream=False):
    """module_lines plus ``user root;`` when running as root (workers read the test files)."""
    lines = module_lines(stream)
    if os.geteuid() == 0:
        lines.append("user root;")
    return lines


def lua_path(first):
    """package.path with the directories ``first`` (each holding resty/acme/...) first."""
    parts = []
    for d in first:
        parts += ["%s/?.lua" % d, "%s/?/init.lua" % d]
    p = openresty_prefix()
    if p:
        parts += ["%s/lualib/?.lua" % p, "%s/lualib/?/init.lua" % p]
    parts.append("%s/?.lua" % DEBIAN_LUA)
    return ";".join(parts) + ";;"


def lua_cpath(first):
    """package.cpath with the directories ``first`` (each holding resty/acme/core.so) first."""
    parts = ["%s/?.so" % d for d in first]
    p = openresty_prefix()
    if p:
        parts.append("%s/lualib/?.so" % p)
    return ";".join(parts) + ";;"


def describe():
    """One line naming the platform, for logs and bench results."""
    p = openresty_prefix()
    return "OpenResty at %s" % p if p else "Debian nginx (%s)" % DEBIAN_NGINX
