-- http-01 (RFC 8555 §8.3): the key authorization is kept in storage under `<token>#http-01`
-- and served at /.well-known/acme-challenge/<token>.
local ngx = ngx
local ngx_log = ngx.log
local ngx_print = ngx.print
local ngx_exit = ngx.exit
local ngx_var = ngx.var
local ngx_subsystem = ngx.config.subsystem
local setmetatable = setmetatable
local match = string.match

local _M = { _VERSION = "0.16.0" }
local mt = { __index = _M }

local TTL = 3600

function _M.new(storage)
  return setmetatable({ storage = storage }, mt)
end

function _M:register_challenge(token, key_authorization)
  return self.storage:set(token .. "#http-01", key_authorization, TTL)
end

function _M:cleanup_challenge(token)
  return self.storage:delete(token .. "#http-01")
end

-- Tokens are base64url (§8.1); anything else is never looked up in storage.
local function token_of(uri)
  local path = match(uri, "^[^?#]*")
  local token = match(path, "/%.well%-known/acme%-challenge/([^/]+)$")
  if token and #token <= 256 and match(token, "^[%w_%-]+$") then
    return token
  end
  return nil
end

function _M:serve_challenge()
  if ngx_subsystem ~= "http" then
    ngx_log(ngx.ERR, "[acme] http-01 challenge can't be served in the ", ngx_subsystem, " subsystem")
    return ngx_exit(500)
  end
  local token = token_of(ngx_var.request_uri or "")
  if not token then
    ngx_log(ngx.INFO, "[acme] not an http-01 challenge request: ", ngx_var.uri)
    return ngx_exit(404)
  end
  local value, err = self.storage:get(token .. "#http-01")
  if err then
    ngx_log(ngx.ERR, "[acme] error reading http-01 challenge for token ", token, ": ", err)
    return ngx_exit(500)
  end
  if not value then
    ngx_log(ngx.WARN, "[acme] http-01 token not found: ", token)
    return ngx_exit(404)
  end
  ngx.header["Content-Type"] = "text/plain"
  -- Exactly the key authorization (§8.3); the original appended a newline that CAs ignore.
  ngx_print(value)
  return ngx_exit(ngx.HTTP_OK)
end

return _M
