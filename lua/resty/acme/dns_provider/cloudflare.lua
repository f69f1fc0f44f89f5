-- dns-01 records through the Cloudflare API v4 (https://developers.cloudflare.com/api/).
--
-- secret: the API token (string), or a table { token =, api_base =, ttl =, ssl_verify =,
-- timeout = }. The token needs Zone:Read and DNS:Edit. api_base (also settable as the module
-- field `api_base`) replaces https://api.cloudflare.com/client/v4, e.g. for a test server.
--
-- Differences from the original behind the same interface: the zone is the longest zone name
-- that is the record name or a parent of it (not the first one occurring as a substring), every
-- page of zones and records is read, only an "identical record already exists" 400 counts as
-- success, and delete removes only TXT records of exactly that name (and content, when given).
local http_api = require("resty.acme.http_api")
local util = require("resty.acme.util")

local ngx = ngx
local log = util.log
local ipairs = ipairs
local setmetatable = setmetatable
local tonumber = tonumber
local tostring = tostring
local type = type
local concat = table.concat
local sub = string.sub

local _M = {
  _VERSION = "0.16.0",
  api_base = "https://api.cloudflare.com/client/v4",
}
local mt = { __index = _M }

local NAME = "cloudflare"
local PER_PAGE = 50
local MAX_PAGES = 100
-- "An identical record already exists." (the record is there: fine for dns-01)
local IDENTICAL_RECORD = 81058

local function fail(msg)
  return nil, NAME .. ": " .. msg
end

function _M.new(secret)
  local self, conf = http_api.token_client(secret, _M.api_base)
  if not self then
    return nil, conf
  end
  self.ttl = tonumber(conf.ttl)
  return setmetatable(self, mt)
end

-- The API's own explanation: errors[*].message (code), else the body.
local function api_errors(decoded, body)
  if type(decoded) == "table" and type(decoded.errors) == "table" and #decoded.errors > 0 then
    local parts = {}
    for _, e in ipairs(decoded.errors) do
      if type(e) == "table" then
        parts[#parts + 1] = tostring(e.message) .. " (code " .. tostring(e.code) .. ")"
      end
    end
    return concat(parts, "; ")
  end
  return http_api.snippet(body)
end

-- Returns decoded body, or nil, err, status, decoded.
local function request(self, method, path, query, body)
  local res, err = http_api.bearer_request(self, method, path, query, body)
  if not res then
    return nil, err
  end
  local decoded = http_api.decode(res.body)
  if res.status >= 200 and res.status < 300 and type(decoded) == "table" and decoded.success ~= false then
    return decoded
  end
  return nil, method .. " " .. path .. " returned HTTP " .. res.status .. ": " .. api_errors(decoded, res.body),
    res.status, decoded
end

-- Every item of a paginated list (result_info.total_pages).
local function list_all(self, path, query)
  local items = {}
  query = query or {}
  query.per_page = PER_PAGE
  for page = 1, MAX_PAGES do
    query.page = page
    local decoded, err = request(self, "GET", path, query)
    if not decoded then
      return nil, err
    end
    if type(decoded.result) ~= "table" then
      return nil, "GET " .. path .. ": response has no result list"
    end
    for _, item in ipairs(decoded.result) do
      items[#items + 1] = item
    end
    local info = type(decoded.result_info) == "table" and decoded.result_info or {}
    local total = tonumber(info.total_pages) or 1
    if page >= total or #decoded.result == 0 then
      break
    end
  end
  return items
end

local strip_dot = http_api.strip_dot

local function zone_of(self, fqdn)
  local zones, err = list_all(self, "/zones")
  if not zones then
    return nil, err
  end
  local best, name = http_api.longest_zone(zones, fqdn)
  if not best then
    return nil, "no zone of this account contains " .. name .. " (" .. #zones .. " zones listed)"
  end
  return best
end

-- Cloudflare may return TXT content wrapped in quotes.
local function unquote(s)
  if type(s) == "string" and #s >= 2 and sub(s, 1, 1) == '"' and sub(s, -1) == '"' then
    return sub(s, 2, -2)
  end
  return s
end

function _M:post_txt_record(fqdn, content)
  local zone, err = zone_of(self, fqdn)
  if not zone then
    return fail(err)
  end
  local body = { type = "TXT", name = strip_dot(fqdn), content = content }
  if self.ttl then
    body.ttl = self.ttl
  end
  local decoded, rerr, status, detail = request(self, "POST", "/zones/" .. zone.id .. "/dns_records", nil, body)
  if decoded then
    return true
  end
  if status == 400 and type(detail) == "table" and type(detail.errors) == "table" then
    for _, e in ipairs(detail.errors) do
      if type(e) == "table" and tonumber(e.code) == IDENTICAL_RECORD then
        log(ngx.INFO, "cloudflare: TXT record ", fqdn, " with this content already exists")
        return true
      end
    end
  end
  return fail(rerr)
end

function _M:delete_txt_record(fqdn, content)
  local zone, err = zone_of(self, fqdn)
  if not zone then
    return fail(err)
  end
  local name = strip_dot(fqdn)
  local path = "/zones/" .. zone.id .. "/dns_records"
  local records
  records, err = list_all(self, path, { type = "TXT", name = name })
  if not records then
    return fail(err)
  end
  local deleted = 0
  for _, r in ipairs(records) do
    if http_api.is_txt_named(r, name, strip_dot) and (content == nil or unquote(r.content) == content) then
      local ok, derr = request(self, "DELETE", path .. "/" .. tostring(r.id))
      if not ok then
        return fail(derr)
      end
      deleted = deleted + 1
    end
  end
  if deleted == 0 then
    log(ngx.INFO, "cloudflare: no TXT record ", name, " to delete")
  end
  return true
end

return _M
