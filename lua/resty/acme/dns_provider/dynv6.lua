-- dns-01 records through the dynv6 REST API (https://dynv6.github.io/api-spec/).
--
-- secret: the HTTP token (string), or a table { token =, api_base =, ssl_verify =, timeout = }.
-- api_base (also settable as the module field `api_base`) replaces https://dynv6.com/api/v2.
--
-- Differences from the original behind the same interface: the zone is the longest zone name
-- that is the record name or a parent of it (not a substring match), and delete removes only
-- TXT records of exactly that name (and content, when given) instead of any record whose name
-- occurs in the fqdn.
local http_api = require("resty.acme.http_api")
local util = require("resty.acme.util")

local ngx = ngx
local log = util.log
local ipairs = ipairs
local setmetatable = setmetatable
local tostring = tostring
local type = type
local lower = string.lower
local sub = string.sub

local _M = {
  _VERSION = "0.16.0",
  api_base = "https://dynv6.com/api/v2",
}
local mt = { __index = _M }

local NAME = "dynv6"

local function fail(msg)
  return nil, NAME .. ": " .. msg
end

function _M.new(secret)
  local self, err = http_api.token_client(secret, _M.api_base)
  if not self then
    return nil, err
  end
  return setmetatable(self, mt)
end

-- Returns the decoded body (true for an empty one), or nil, err.
local function request(self, method, path, body)
  local res, err = http_api.bearer_request(self, method, path, nil, body)
  if not res then
    return nil, err
  end
  if res.status < 200 or res.status >= 300 then
    local what = ({ [401] = "unauthorized (bad token)", [403] = "forbidden", [404] = "not found" })[res.status]
    return nil, method .. " " .. path .. " returned HTTP " .. res.status
      .. (what and (" " .. what) or "") .. ": " .. http_api.snippet(res.body)
  end
  if res.body == nil or res.body == "" then
    return true
  end
  local decoded = http_api.decode(res.body)
  if decoded == nil then
    return nil, method .. " " .. path .. " returned a body that is not JSON: " .. http_api.snippet(res.body)
  end
  return decoded
end

local strip_dot = http_api.strip_dot

local function zone_of(self, fqdn)
  local zones, err = request(self, "GET", "/zones")
  if not zones then
    return nil, err
  end
  if type(zones) ~= "table" then
    return nil, "GET /zones did not return a list"
  end
  local best, name = http_api.longest_zone(zones, fqdn)
  if not best then
    return nil, "no zone of this account contains " .. name
  end
  return best
end

-- The record name relative to the zone ("" at the apex).
local function relative(fqdn, zone)
  local name = strip_dot(fqdn)
  if name == zone.name then
    return ""
  end
  return sub(name, 1, #name - #zone.name - 1)
end

function _M:post_txt_record(fqdn, content)
  local zone, err = zone_of(self, fqdn)
  if not zone then
    return fail(err)
  end
  local ok, rerr = request(self, "POST", "/zones/" .. zone.id .. "/records",
    { type = "TXT", name = relative(fqdn, zone), data = content })
  if not ok then
    return fail(rerr)
  end
  return true
end

function _M:delete_txt_record(fqdn, content)
  local zone, err = zone_of(self, fqdn)
  if not zone then
    return fail(err)
  end
  local path = "/zones/" .. zone.id .. "/records"
  local records
  records, err = request(self, "GET", path)
  if not records then
    return fail(err)
  end
  if type(records) ~= "table" then
    return fail("GET " .. path .. " did not return a list")
  end
  local rel = relative(fqdn, zone)
  local deleted = 0
  for _, r in ipairs(records) do
    if http_api.is_txt_named(r, rel, lower) and (content == nil or r.data == content) then
      local ok, derr = request(self, "DELETE", path .. "/" .. tostring(r.id))
      if not ok then
        return fail(derr)
      end
      deleted = deleted + 1
    end
  end
  if deleted == 0 then
    log(ngx.INFO, "dynv6: no TXT record ", strip_dot(fqdn), " to delete")
  end
  return true
end

return _M
