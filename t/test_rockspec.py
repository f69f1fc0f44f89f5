"""`luarocks make` of rockspec/ installs a tree that plain nginx can load the module from."""

import glob
import os
import subprocess

import pytest

from harness import REPO, free_port, http_get, platform

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
        lua_path=platform.lua_path([luadir]), lua_cpath=platform.lua_cpath([libdir]))
    status, _, body = http_get("http://127.0.0.1:%d/" % port)
    assert status == 200, body
    version, path, mod_path = body.decode().split()
    assert version  # core._VERSION
    assert path == core
    assert mod_path.startswith(tree + "/"), mod_path


def test_openresty_install_needs_no_package_path(workdir, nginx_factory):
    """`make openresty-install OPENRESTY=<prefix>` puts everything in <prefix>/site/lualib:
    require works with no lua_package_path/cpath line, and uninstall takes it all away."""
    prefix = platform.openresty_prefix()
    if not prefix:
        pytest.skip("OpenResty only (OPENRESTY=<prefix>)")
    site = os.path.join(prefix, "site", "lualib")

    def make(target):
        r = subprocess.run(["make", "-s", "-C", REPO, target, "OPENRESTY=" + prefix],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-4000:]

    make("openresty-install")
    try:
        core = os.path.join(site, "resty", "acme", "core.so")
        assert os.path.isfile(core)
        for rel in _lua_files():
            assert os.path.isfile(os.path.join(site, rel)), rel
        port = free_port()
        nginx_factory("""
            lua_shared_dict acme 1m;
            init_by_lua_block { require("resty.acme.autossl").init({ tos_accepted = true }) }
            server {
                listen 127.0.0.1:%d;
                location / {
                    content_by_lua_block {
                        require("resty.acme.autossl")
                        ngx.say(package.searchpath("resty.acme.core", package.cpath))
                        ngx.say(package.searchpath("resty.acme.autossl", package.path))
                    }
                }
            }""" % port, http_ports=[port], lua_path="", lua_cpath="")
        status, _, body = http_get("http://127.0.0.1:%d/" % port)
        assert status == 200, body
        so, lua = body.decode().split()
        assert so == core
        assert lua == os.path.join(site, "resty", "acme", "autossl.lua")
    finally:
        make("openresty-uninstall")
    assert not os.path.exists(os.path.join(site, "resty", "acme"))
