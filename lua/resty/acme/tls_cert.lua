-- The connection's SSL* and the one-call certificate install of the serving path.
--
-- set_certkey() gives a cached chain and key to the handshake through the core's
-- resty_acme_ssl_set_certkey (src/tls/tls_cert.rs), called through the FFI so that the
-- handshake's trace stays compiled: one OpenSSL call per key type where ngx.ssl takes three.
-- Where the core's symbols or the SSL* cannot be reached it falls back to ngx.ssl.
local ffi = require("ffi")
local ssl = require("ngx.ssl")
local base = require("resty.core.base")
local core_ffi = require("resty.acme.core_ffi")

local ngx = ngx
local C = ffi.C
local ffi_string = ffi.string
local get_request = base.get_request
local pcall = pcall
local tostring = tostring

local _M = { _VERSION = "0.16.0" }

pcall(ffi.cdef, [[
int resty_acme_ssl_set_certkey(void *ssl, void *chain, void *pkey, int clear, const char **err);
int resty_acme_leaf_matches_key(void *chain, void *pkey);
int resty_acme_leaf_share_key(void *chain, void *pkey, void **out);
int resty_acme_serve_attach(void *ssl, const char *handler, const char **err);
double resty_acme_serve_count(void);
]])

local errmsg = ffi.new("const char *[1]")

-- "http" or "stream": the prefix of lua-nginx-module's exported names
local subsystem = ngx.config and ngx.config.subsystem == "stream" and "stream" or "http"
_M.subsystem = subsystem
local cert_handler = "ngx_" .. subsystem .. "_lua_ssl_cert_handler"

-- The connection's SSL*, read the way the running module defines it, chosen once at load.
--
-- lua-resty-core is released in lockstep with its module (resty.core.base refuses any other
-- version), so its ngx.ssl.get_req_ssl_pointer (0.1.29 and later) is right by construction.
-- An older lua-resty-core has no wrapper: we reach the module's function ourselves under a
-- name of our own (an asm label redirects it to the real symbol), so a declaration of the
-- real name elsewhere can neither lose to ours nor silently replace it. lua-nginx-module
-- 0.10.29 added the `err` argument.
local function pick_ssl_pointer()
  if ssl.get_req_ssl_pointer then
    local get = ssl.get_req_ssl_pointer
    return function()
      if not get_request() then
        return nil, "no request"
      end
      return get()
    end, "ngx.ssl.get_req_ssl_pointer"
  end
  local symbol = "ngx_" .. subsystem .. "_lua_ffi_get_req_ssl_pointer"
  local version = ngx.config and ngx.config.ngx_lua_version or 0
  local with_err = subsystem == "http" and version >= 10029
  local alias = "resty_acme_host_ssl_pointer" .. (with_err and "2" or "1")
  local decl = with_err
      and "void *%s(void *r, const char **err) __asm__(\"%s\");"
      or "void *%s(void *r) __asm__(\"%s\");"
  local ok, err = pcall(ffi.cdef, decl:format(alias, symbol))
  if not ok then
    return nil, err
  end
  local found, fn = pcall(function() return C[alias] end)
  if not found then
    return nil, symbol .. " is not exported: " .. tostring(fn)
  end
  local how = symbol .. (with_err and " (r, err)" or " (r)")
  if with_err then
    return function()
      local r = get_request()
      if not r then
        return nil, "no request"
      end
      local ptr = fn(r, errmsg)
      if ptr == nil then
        return nil, ffi_string(errmsg[0])
      end
      return ptr
    end, how
  end
  return function()
    local r = get_request()
    if not r then
      return nil, "no request"
    end
    local ptr = fn(r)
    if ptr == nil then
      return nil, "no ssl connection"
    end
    return ptr
  end, how
end

local get_ssl_pointer, ssl_pointer_how = pick_ssl_pointer()
if not get_ssl_pointer then
  local why = ssl_pointer_how
  get_ssl_pointer = function()
    return nil, "the connection's SSL pointer is unavailable: " .. tostring(why)
  end
  ssl_pointer_how = "unavailable: " .. tostring(why)
end
-- which host call reads the SSL* (the tests check it is the one for the running version)
_M.ssl_pointer_impl = ssl_pointer_how

local core_lib, load_err = core_ffi.load("resty_acme_ssl_set_certkey")
if core_lib and not core_ffi.load("resty_acme_leaf_matches_key") then
  core_lib, load_err = nil, "resty_acme_leaf_matches_key is not exported"
end
_M.native = core_lib ~= nil
_M.native_error = load_err
_M.lib = core_lib

local key_out = ffi.new("void *[1]")
local share_lib = core_lib and core_ffi.load("resty_acme_leaf_share_key")

-- For a chain and key about to be cached (handles with no finalizer of their own): the key as
-- one that shares the leaf's key object where that applies (an EC leaf read by the core's
-- built-in decoder: one copy of the curve per name instead of three). Returns the key to keep
-- (`pkey` itself, or a new handle when `pkey` was freed), or nil when the key does not belong
-- to the leaf; true as second value when that was checked here.
function _M.share_leaf_key(cert, pkey)
  if not share_lib then
    return pkey, false
  end
  local rc = core_lib.resty_acme_leaf_share_key(cert, pkey, key_out)
  if rc == 1 then
    return key_out[0], true
  elseif rc < 0 then
    return nil, true
  end
  return pkey, false
end

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
  return get_ssl_pointer()
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

-- Puts the core's certificate callback (src/tls/serve.rs) in front of lua-nginx-module's
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
