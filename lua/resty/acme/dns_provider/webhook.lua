-- TXT records through an operator's HTTP endpoint: `POST <url>` creates, `DELETE <url>`
-- removes, each with the JSON body {"fqdn": "_acme-challenge.example.com.", "name":
-- "_acme-challenge.example.com", "value": "<TXT value>"} ("value" absent on a delete that does
-- not know it). Any 2xx is success. The token goes in a header (`Authorization: Bearer
-- <token>` unless `header` names another one, e.g. "X-Api-Key"); TLS is verified against
-- lua_ssl_trusted_certificate unless ssl_verify = false.
--
-- secret = {
--   url = "https://dns-hook.internal/acme",  -- required (http:// only for tests and loopback)
--   token = "<secret>",                      -- optional
--   header = "Authorization",                -- optional header for the token
--   timeout = 10000,                         -- ms per request
--   ssl_verify = true,
--   nameservers = { "192.0.2.53" },          -- optional: servers the propagation check asks
-- }
local http_api = require("resty.acme.http_api")
local util = require("resty.acme.util")

local setmetatable = setmetatable
local tostring = tostring
local type = type
local find = string.find
local lower = string.lower
local match = string.match

local _M = { _VERSION = "0.16.0" }
local mt = { __index = _M }

local NAME = "webhook"

local function fail(msg)
  return nil, NAME .. ": " .. msg
end

local function strip_dot(name)
  return (name:gsub("%.$", ""))
end

local function send(self, method, fqdn, value)
  local name = strip_dot(fqdn)
  local headers = { ["Accept"] = "application/json" }
  if self.token then
    if lower(self.header) == "authorization" then
      headers[self.header] = "Bearer " .. self.token
    else
      headers[self.header] = self.token
    end
  end
  local body = { fqdn = name .. ".", name = name, value = value }
  local res, err = http_api.request(self.transport, method, self.url, headers, body,
    method .. " " .. self.url)
  if not res then
    return fail(err)
  end
  if res.status < 200 or res.status >= 300 then
    return fail(method .. " " .. self.url .. " for " .. name .. " returned HTTP " .. res.status
      .. ": " .. http_api.snippet(res.body))
  end
  return true
end

function _M.new(secret)
  if type(secret) ~= "table" then
    return fail("secret must be a table with url")
  end
  local url = secret.url
  if type(url) ~= "string" or not match(url, "^https?://[^/]+") then
    return fail("url must be an http(s) URL, got " .. tostring(url))
  end
  if find(url, "^http://") and not match(url, "^http://127%.") and not match(url, "^http://%[::1%]")
    and not match(url, "^http://localhost[:/]") and not match(url, "^http://localhost$") then
    return fail("url must be https (plain http only to loopback)")
  end
  local token = secret.token
  if token ~= nil and (type(token) ~= "string" or token == "") then
    return fail("token must be a non-empty string")
  end
  return setmetatable({
    url = url,
    token = token,
    header = type(secret.header) == "string" and secret.header or "Authorization",
    ns = util.nameserver_list(secret.nameservers),
    transport = http_api.provider_transport(secret),
  }, mt)
end

function _M:post_txt_record(fqdn, content)
  return send(self, "POST", fqdn, content)
end

function _M:delete_txt_record(fqdn, content)
  return send(self, "DELETE", fqdn, content)
end

function _M:nameservers()
  return self.ns
end

return _M
