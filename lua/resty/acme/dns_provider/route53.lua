-- dns-01 records through Amazon Route 53 (REST API 2013-04-01), requests signed with AWS
-- Signature Version 4 in the native core (core.aws_sign).
--
-- secret = {
--   access_key_id = "AKIA...", secret_access_key = "...", session_token = nil,
--   hosted_zone_id = nil,       -- default: the longest hosted zone that contains the name
--   ttl = 60,
--   api_base = "https://route53.amazonaws.com", region = "us-east-1", -- (tests: moto)
--   ssl_verify = true, timeout = 10000,
--   change_timeout = 120,       -- seconds to wait for a change to be INSYNC
--   nameservers = nil,          -- servers for the propagation check (default: the zone's)
-- }
-- A TXT record set holds every value of its name, so a change reads the set first and writes
-- it back with the value added (UPSERT) or removed (UPSERT of the rest, or DELETE of the set
-- when it was the last): the apex and the wildcard of one order share a name.
local core = require("resty.acme.core")
local http_api = require("resty.acme.http_api")
local util = require("resty.acme.util")

local ngx = ngx
local ngx_sleep = ngx.sleep
local ngx_now = ngx.now
local ngx_update_time = ngx.update_time
local ipairs = ipairs
local pairs = pairs
local math_floor = math.floor
local math_min = math.min
local os_date = os.date
local setmetatable = setmetatable
local tonumber = tonumber
local tostring = tostring
local type = type
local concat = table.concat
local gmatch = string.gmatch
local gsub = string.gsub
local lower = string.lower
local match = string.match
local sub = string.sub

local _M = {
  _VERSION = "0.16.0",
  api_base = "https://route53.amazonaws.com",
}
local mt = { __index = _M }

local NAME = "route53"
local API = "/2013-04-01"
local XMLNS = "https://route53.amazonaws.com/doc/2013-04-01/"

local function fail(msg)
  return nil, NAME .. ": " .. msg
end

local function xml_unescape(s)
  return (gsub(s, "&(%a+);", { quot = '"', amp = "&", lt = "<", gt = ">", apos = "'" }))
end

local function xml_escape(s)
  return (gsub(s, "[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;" }))
end

local function tag(xml, name)
  local v = match(xml, "<" .. name .. ">(.-)</" .. name .. ">")
  return v and xml_unescape(v)
end

local function each(xml, name)
  return gmatch(xml, "<" .. name .. ">(.-)</" .. name .. ">")
end

local function fqdn_dot(name)
  name = lower(name)
  if sub(name, -1) ~= "." then
    name = name .. "."
  end
  return name
end

local function request(self, method, path, query, body)
  ngx_update_time()
  local amz_date = os_date("!%Y%m%dT%H%M%SZ", math_floor(ngx_now()))
  local headers = {}
  if body then
    headers["content-type"] = "application/xml"
  end
  local signed, q = core.aws_sign({
    method = method, host = self.host, path = path, query = query or {}, headers = headers,
    payload = body or "", region = self.region, service = "route53", amz_date = amz_date,
    access_key_id = self.access_key_id, secret_access_key = self.secret_access_key,
    session_token = self.session_token,
  })
  if not signed then
    return fail("cannot sign " .. method .. " " .. path .. ": " .. tostring(q))
  end
  local send = {}
  for k, v in pairs(headers) do
    send[k] = v
  end
  for k, v in pairs(signed) do
    send[k] = v
  end
  local url = self.base .. path .. (q ~= "" and ("?" .. q) or "")
  local res, err = http_api.request(self.transport, method, url, send, body, method .. " " .. path)
  if not res then
    return fail(err)
  end
  if res.status < 200 or res.status >= 300 then
    local code = tag(res.body or "", "Code")
    local msg = tag(res.body or "", "Message")
    return fail(method .. " " .. path .. " returned HTTP " .. res.status
      .. (code and (" " .. code) or "") .. ": " .. (msg or http_api.snippet(res.body)))
  end
  return res.body or ""
end

-- The hosted zone for fqdn: the configured one, else the longest zone name containing it.
local function zone_for(self, fqdn)
  if self.zone_id then
    return self.zone_id
  end
  local name = sub(fqdn_dot(fqdn), 1, -2)
  local best, best_len
  local marker
  repeat
    local body, err = request(self, "GET", API .. "/hostedzone", marker and { marker = marker } or nil)
    if not body then
      return nil, err
    end
    for z in each(body, "HostedZone") do
      local id = tag(z, "Id")
      local zn = tag(z, "Name")
      if id and zn then
        zn = lower(gsub(zn, "%.$", ""))
        if (name == zn or sub(name, -(#zn + 1)) == "." .. zn) and (not best_len or #zn > best_len) then
          best, best_len = match(id, "([^/]+)$"), #zn
        end
      end
    end
    marker = tag(body, "IsTruncated") == "true" and tag(body, "NextMarker") or nil
  until not marker
  if not best then
    return fail("no hosted zone of this account contains " .. name)
  end
  return best
end

-- The TXT values (as the API writes them, quoted) and TTL of the record set at fqdn.
local function current(self, zone, fqdn)
  local name = fqdn_dot(fqdn)
  local body, err = request(self, "GET", API .. "/hostedzone/" .. zone .. "/rrset",
    { name = name, type = "TXT", maxitems = "1" })
  if not body then
    return nil, err
  end
  for set in each(body, "ResourceRecordSet") do
    if lower(tag(set, "Name") or "") == name and tag(set, "Type") == "TXT" then
      local values = {}
      for rr in each(set, "ResourceRecord") do
        values[#values + 1] = tag(rr, "Value")
      end
      return values, tonumber(tag(set, "TTL"))
    end
  end
  return {}
end

local function quoted(content)
  return '"' .. gsub(content, '(["\\])', "\\%1") .. '"'
end

local function change(self, zone, action, fqdn, values, ttl)
  local rrs = {}
  for _, v in ipairs(values) do
    rrs[#rrs + 1] = "<ResourceRecord><Value>" .. xml_escape(v) .. "</Value></ResourceRecord>"
  end
  local body = '<?xml version="1.0" encoding="UTF-8"?>'
    .. '<ChangeResourceRecordSetsRequest xmlns="' .. XMLNS .. '"><ChangeBatch><Changes><Change>'
    .. "<Action>" .. action .. "</Action><ResourceRecordSet><Name>" .. xml_escape(fqdn_dot(fqdn))
    .. "</Name><Type>TXT</Type><TTL>" .. tostring(ttl) .. "</TTL><ResourceRecords>"
    .. concat(rrs) .. "</ResourceRecords></ResourceRecordSet></Change></Changes></ChangeBatch>"
    .. "</ChangeResourceRecordSetsRequest>"
  local res, err = request(self, "POST", API .. "/hostedzone/" .. zone .. "/rrset", nil, body)
  if not res then
    return nil, err
  end
  -- wait until the change is INSYNC (on every Route 53 server), bounded
  local id = tag(res, "Id")
  local status = tag(res, "Status")
  local deadline = ngx_now() + self.change_timeout
  local wait = 1
  while status ~= "INSYNC" do
    if not id then
      return fail("ChangeResourceRecordSets returned no change id")
    end
    ngx_update_time()
    if ngx_now() >= deadline then
      return fail("change " .. id .. " is still " .. tostring(status) .. " after "
        .. self.change_timeout .. "s")
    end
    ngx_sleep(wait)
    wait = math_min(wait * 2, 5)
    local cbody, gerr = request(self, "GET", API .. "/change/" .. match(id, "([^/]+)$"))
    if not cbody then
      return nil, gerr
    end
    status = tag(cbody, "Status")
  end
  return true
end

function _M.new(secret)
  if type(secret) ~= "table" then
    return fail("secret must be a table with access_key_id and secret_access_key")
  end
  if type(secret.access_key_id) ~= "string" or secret.access_key_id == ""
    or type(secret.secret_access_key) ~= "string" or secret.secret_access_key == "" then
    return fail("access_key_id and secret_access_key are needed")
  end
  local base = gsub(secret.api_base or _M.api_base, "/+$", "")
  local scheme, authority = match(base, "^(https?)://([^/]+)")
  if not scheme then
    return fail("api_base must be an http(s) URL")
  end
  local host = authority
  if (scheme == "https" and sub(host, -4) == ":443") or (scheme == "http" and sub(host, -3) == ":80") then
    host = match(host, "^(.*):%d+$")
  end
  return setmetatable({
    access_key_id = secret.access_key_id,
    secret_access_key = secret.secret_access_key,
    session_token = secret.session_token,
    zone_id = secret.hosted_zone_id,
    ttl = tonumber(secret.ttl) or 60,
    region = secret.region or "us-east-1",
    change_timeout = tonumber(secret.change_timeout) or 120,
    base = base,
    host = host,
    ns = util.nameserver_list(secret.nameservers),
    transport = http_api.provider_transport(secret),
  }, mt)
end

-- The hosted zone of fqdn and its current TXT values there: zone, values, ttl | nil, err
local function zone_values(self, fqdn)
  local zone, err = zone_for(self, fqdn)
  if not zone then
    return nil, err
  end
  local values, ttl = current(self, zone, fqdn)
  if not values then
    return nil, ttl
  end
  return zone, values, ttl
end

function _M:post_txt_record(fqdn, content)
  local zone, values, ttl = zone_values(self, fqdn)
  if not zone then
    return nil, values
  end
  local want = quoted(content)
  for _, v in ipairs(values) do
    if v == want then
      return true
    end
  end
  values[#values + 1] = want
  return change(self, zone, "UPSERT", fqdn, values, ttl or self.ttl)
end

function _M:delete_txt_record(fqdn, content)
  local zone, values, ttl = zone_values(self, fqdn)
  if not zone then
    return nil, values
  end
  if #values == 0 then
    return true
  end
  local keep = {}
  if content then
    local drop = quoted(content)
    for _, v in ipairs(values) do
      if v ~= drop then
        keep[#keep + 1] = v
      end
    end
    if #keep == #values then
      return true
    end
  end
  if #keep == 0 then
    return change(self, zone, "DELETE", fqdn, values, ttl or self.ttl)
  end
  return change(self, zone, "UPSERT", fqdn, keep, ttl or self.ttl)
end

function _M:nameservers()
  return self.ns
end

return _M
