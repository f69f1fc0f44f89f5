-- The connection's SSL* and the one-call certificate install of the serving path.
--
-- set_certkey() gives a cached chain and key to the handshake through the core's
-- resty_acme_ssl_set_certkey (src/crypto/tls_cert.rs), called through the FFI so that the
-- handshake's trace stays compiled: one OpenSSL call per key type where ngx.ssl takes three.
-- Where the core's symbols or the SSL* cannot be reached it falls back to ngx.ssl.
local ffi = require("ffi")
local ssl = require("ngx.ssl")
local base = require("resty.core.base")
require("resty.acme.core")

local ngx = ngx
local C = ffi.C
local ffi_string = ffi.string
local get_request = base.get_request
local package = package
local pcall = pcall
local tostring = tostring

local _M = { _VERSION = "0.16.0" }

-- lua-resty-core 0.1.25 has no wrapper for it; the http-lua module exports it. Another module
-- may have declared it already, which is fine.
pcall(ffi.cdef, [[
void *ngx_http_lua_ffi_get_req_ssl_pointer(void *r);
]])
pcall(ffi.cdef, [[
int resty_acme_ssl_set_certkey(void *ssl, void *chain, void *pkey, int clear, const char **err);
int resty_acme_leaf_matches_key(void *chain, void *pkey);
int resty_acme_serve_attach(void *ssl, const char *handler, const char **err);
double resty_acme_serve_count(void);
]])

local errmsg = ffi.new("const char *[1]")

-- The core library as an FFI namespace: the same file `require` loaded (dlopen returns the
-- loaded handle), found the way `require` found it.
local function load_core()
  local searchpath = package.searchpath
  if not searchpath then
    return nil, "package.searchpath is missing"
  end
  local path, err = searchpath("resty.acme.core", package.cpath)
  if not path then
    return nil, err
  end
  local ok, lib = pcall(ffi.load, path)
  if not ok then
    return nil, lib
  end
  local found = pcall(function()
    return lib.resty_acme_ssl_set_certkey, lib.resty_acme_leaf_matches_key
  end)
  if not found then
    return nil, "resty_acme_ssl_set_certkey is not exported by " .. path
  end
  return lib
end

local core_lib, load_err = load_core()
_M.native = core_lib ~= nil
_M.native_error = load_err
_M.lib = core_lib

-- "http" or "stream": the prefix of lua-nginx-module's exported names
local subsystem = ngx.config and ngx.config.subsystem == "stream" and "stream" or "http"
_M.subsystem = subsystem
local cert_handler = "ngx_" .. subsystem .. "_lua_ssl_cert_handler"

-- Whether pkey belongs to the leaf of cert (handles as ngx.ssl.parse_pem_* return them):
-- true, false, or nil when it cannot be told here (the install then finds out).
function _M.leaf_matches_key(cert, pkey)
  if not core_lib then
    return nil
  end
  local rc = core_lib.resty_acme_leaf_matches_key(cert, pkey)
  if rc < 0 then
    return nil
  end
  return rc == 1
end

-- The SSL* of the current connection (cdata), or nil, err.
function _M.ssl_pointer()
  local r = get_request()
  if not r then
    return nil, "no request"
  end
  local ptr = C.ngx_http_lua_ffi_get_req_ssl_pointer(r)
  if ptr == nil then
    return nil, "no ssl connection"
  end
  return ptr
end

-- Installs cert (from ngx.ssl.parse_pem_cert) and pkey (parse_pem_priv_key) on the current
-- handshake; `clear` first drops the certificates it had (the fallback). true | nil, err
function _M.set_certkey(cert, pkey, clear)
  if core_lib then
    local ptr = _M.ssl_pointer()
    if ptr then
      if core_lib.resty_acme_ssl_set_certkey(ptr, cert, pkey, clear and 1 or 0, errmsg) == 0 then
        return true
      end
      return nil, ffi_string(errmsg[0])
    end
  end
  local ok, err
  if clear then
    ok, err = ssl.clear_certs()
    if not ok then
      return nil, "clear_certs: " .. tostring(err)
    end
  end
  ok, err = ssl.set_cert(cert)
  if not ok then
    return nil, "set_cert: " .. tostring(err)
  end
  ok, err = ssl.set_priv_key(pkey)
  if not ok then
    return nil, "set_priv_key: " .. tostring(err)
  end
  return true
end

-- Puts the core's certificate callback (src/crypto/serve.rs) in front of lua-nginx-module's
-- on the current connection's SSL_CTX: later handshakes of a name cached for every key type are
-- served without entering Lua. true (now or before) | nil, err
function _M.attach_native()
  if not core_lib then
    return nil, load_err
  end
  local ptr, err = _M.ssl_pointer()
  if not ptr then
    return nil, err
  end
  if core_lib.resty_acme_serve_attach(ptr, cert_handler, errmsg) < 0 then
    return nil, ffi_string(errmsg[0])
  end
  return true
end

-- Handshakes the core's callback served in this worker.
function _M.native_served()
  if not core_lib then
    return 0
  end
  return core_lib.resty_acme_serve_count()
end

return _M
