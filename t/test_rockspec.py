"""`luarocks make` of rockspec/ installs a tree that plain nginx can load the module from."""

import glob
import os
import subprocess

from harness import REPO, free_port, http_get

ROCKSPEC = os.path.join(REPO, "rockspec", "lua-resty-acme-rs-0.1.0-1.rockspec")


def _lua_files():
    base = os.path.join(REPO, "lua")
    return sorted(os.path.relpath(p, base)
                  for p in glob.glob(os.path.join(base, "**", "*.lua"), recursive=True))


def test_luarocks_make_into_tree_and_load(workdir, nginx_factory):
    tree = str(workdir / "tree")
    r = subprocess.run(
        ["luarocks", "--lua-version=5.1", "make", ROCKSPEC, "--tree", tree, "--deps-mode=none"],
        cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=900,
    )
    assert r.returncode == 0, r.stdout[-4000:]

    libdir = os.path.join(tree, "lib", "lua", "5.1")
    luadir = os.path.join(tree, "share", "lua", "5.1")
    core = os.path.join(libdir, "resty", "acme", "core.so")
    assert os.path.isfile(core) and not os.path.islink(core)
    for rel in _lua_files():
        assert os.path.isfile(os.path.join(luadir, rel)), rel

    r = subprocess.run(["luarocks", "--lua-version=5.1", "--tree", tree, "list", "--porcelain"],
                       stdout=subprocess.PIPE, text=True, check=True)
    assert "lua-resty-acme-rs\t0.1.0-1\tinstalled" in r.stdout

    # one Lua module (if any) must resolve into the tree too
    mods = [f[:-4].replace("/", ".") for f in _lua_files() if not f.endswith("init.lua")]
    mod = mods[0] if mods else "resty.acme.core"
    port = free_port()
    nginx_factory("""
        server {
            listen 127.0.0.1:%d;
            location / {
                content_by_lua_block {
                    local core = require("resty.acme.core")
                    ngx.say(core._VERSION)
                    ngx.say(package.searchpath("resty.acme.core", package.cpath))
                    ngx.say(package.searchpath("%s", package.path)
                            or package.searchpath("%s", package.cpath))
                }
            }
        }""" % (port, mod, mod), http_ports=[port],
        lua_path="%s/?.lua;%s/?/init.lua;/usr/share/lua/5.1/?.lua;;" % (luadir, luadir),
        lua_cpath="%s/?.so;;" % libdir)
    status, _, body = http_get("http://127.0.0.1:%d/" % port)
    assert status == 200, body
    version, path, mod_path = body.decode().split()
    assert version  # core._VERSION
    assert path == core
    assert mod_path.startswith(tree + "/"), mod_path
