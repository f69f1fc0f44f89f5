-- tls-alpn-01 (RFC 8737): a self-signed certificate carrying the key authorization digest,
-- served to connections that offer the `acme-tls/1` protocol.
--
-- Two ways to deploy it:
-- * http subsystem, no stream module: call serve_challenge() from ssl_client_hello_by_lua* on
--   the TLS listener. Connections that do not offer acme-tls/1 pass through untouched; a
--   validation connection is moved to a challenge-only TLS context that negotiates acme-tls/1
--   (see src/tls/tls_alpn.rs), in TLS 1.2 and 1.3.
-- * as the original: from ssl_certificate_by_lua* of a server that only receives validation
--   connections (e.g. routed there by ALPN); it then only installs the certificate.
local core = require("resty.acme.core")
local ssl = require("ngx.ssl")
local ffi = require("ffi")
local tls_cert = require("resty.acme.tls_cert")

local ngx = ngx
local ngx_exit = ngx.exit
local ngx_log = ngx.log
local get_phase = ngx.get_phase
local setmetatable = setmetatable
local tonumber = tonumber
local lower = string.lower
local ipairs = ipairs

local _M = { _VERSION = "0.16.0" }
local mt = { __index = _M }

local TTL = 3600

function _M.new(storage)
  return setmetatable({ storage = storage }, mt)
end

-- Entries are keyed by name (the validation connection carries the name, not the token).
function _M:register_challenge(_, key_authorization, names)
  for _, name in ipairs(names or {}) do
    local err = self.storage:set(lower(name) .. "#tls-alpn-01", key_authorization, TTL)
    if err then
      return err
    end
  end
  return nil
end

function _M:cleanup_challenge(_, names)
  local first_err
  for _, name in ipairs(names or {}) do
    local err = self.storage:delete(lower(name) .. "#tls-alpn-01")
    first_err = first_err or err
  end
  return first_err
end

local function ssl_pointer()
  local ptr, err = tls_cert.ssl_pointer()
  if not ptr then
    return nil, err
  end
  return tonumber(ffi.cast("uintptr_t", ptr))
end

-- Returns true when the connection was answered as a validation, false when it is not one.
function _M:serve_challenge()
  local phase = get_phase()
  local name
  if phase == "ssl_client_hello" then
    local hello = require("ngx.ssl.clienthello")
    local ext = hello.get_client_hello_ext(16) -- application_layer_protocol_negotiation
    if not ext or not core.tls_alpn_offered(ext) then
      return false
    end
    name = hello.get_client_hello_server_name()
  elseif phase == "ssl_cert" then
    name = ssl.server_name()
  else
    ngx_log(ngx.ERR, "[acme] tls-alpn-01 challenge can't be served in the ", phase, " phase")
    return ngx_exit(500)
  end
  if not name then
    ngx_log(ngx.WARN, "[acme] tls-alpn-01 validation without SNI")
    return ngx_exit(ngx.ERROR)
  end
  name = lower(name)
  local key_authorization, err = self.storage:get(name .. "#tls-alpn-01")
  if err then
    ngx_log(ngx.ERR, "[acme] error reading tls-alpn-01 challenge for ", name, ": ", err)
    return ngx_exit(ngx.ERROR)
  end
  if not key_authorization then
    ngx_log(ngx.WARN, "[acme] no tls-alpn-01 challenge for ", name)
    return ngx_exit(ngx.ERROR)
  end
  local ok
  if phase == "ssl_client_hello" then
    -- the core builds the certificate and installs it on the connection
    local ptr, perr = ssl_pointer()
    if ptr then
      ok, perr = core.tls_alpn_serve(ptr, name, key_authorization)
    end
    err = perr
  else
    local cert, key = core.tls_alpn01_cert(name, key_authorization)
    if not cert then
      ngx_log(ngx.ERR, "[acme] tls-alpn-01 certificate for ", name, ": ", key)
      return ngx_exit(ngx.ERROR)
    end
    ssl.clear_certs()
    local der = ssl.cert_pem_to_der(cert)
    local kder = ssl.priv_key_pem_to_der(key)
    ok, err = ssl.set_der_cert(der)
    if ok then
      ok, err = ssl.set_der_priv_key(kder)
    end
  end
  if not ok then
    ngx_log(ngx.ERR, "[acme] failed to serve tls-alpn-01 challenge for ", name, ": ", err)
    return ngx_exit(ngx.ERROR)
  end
  ngx_log(ngx.INFO, "[acme] serving tls-alpn-01 challenge for ", name)
  return true
end

return _M
