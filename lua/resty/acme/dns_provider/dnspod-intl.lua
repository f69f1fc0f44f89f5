-- dns-01 records through the DNSPod international API (https://docs.dnspod.com/api/).
--
-- secret: "<id>,<token>" (sent as login_token), or a table { token = "<id>,<token>", zone =,
-- ttl = 600, api_base =, ssl_verify =, timeout = }. The domain is the last two labels of the
-- record name unless `zone` names it (for e.g. example.co.uk). api_base (also settable as the
-- module field `api_base`) replaces https://api.dnspod.com.
--
-- Differences from the original behind the same interface: errors the API reports inside an
-- HTTP 200 (status.code other than "1") are errors here, and delete removes only TXT records of
-- exactly that name (and content, when given).
local http_api = require("resty.acme.http_api")

local ipairs = ipairs
local setmetatable = setmetatable
local tonumber = tonumber
local tostring = tostring
local type = type
local concat = table.concat
local lower = string.lower
local sub = string.sub

local _M = {
  _VERSION = "0.16.0",
  api_base = "https://api.dnspod.com",
}
local mt = { __index = _M }

local NAME = "dnspod-intl"
local USER_AGENT = "lua-resty-acme/0.0.0 (noreply@github.com)"
local strip_dot = http_api.strip_dot

local function fail(msg)
  return nil, NAME .. ": " .. msg
end

function _M.new(secret)
  local self, conf = http_api.token_client(secret, _M.api_base)
  if not self then
    return nil, conf
  end
  self.zone = type(conf.zone) == "string" and strip_dot(conf.zone) or nil
  self.ttl = tonumber(conf.ttl) or 600
  return setmetatable(self, mt)
end

-- One API call. Returns the decoded body when status.code is "1", else nil, err, code.
local function call(self, action, params)
  params.login_token = self.token
  params.format = "json"
  params.lang = "en"
  params.error_on_empty = "no"
  local res, err = http_api.request(self.transport, "POST", self.base .. "/" .. action, {
    ["Accept"] = "application/json",
    ["User-Agent"] = USER_AGENT,
  }, params, action)
  if not res then
    return nil, err
  end
  if res.status ~= 200 then
    return nil, action .. " returned HTTP " .. res.status .. ": " .. http_api.snippet(res.body)
  end
  local decoded = http_api.decode(res.body)
  local status = type(decoded) == "table" and decoded.status
  if type(status) ~= "table" then
    return nil, action .. " returned no status: " .. http_api.snippet(res.body)
  end
  local code = tostring(status.code)
  if code ~= "1" then
    return nil, action .. " failed: " .. tostring(status.message) .. " (code " .. code .. ")", code
  end
  return decoded
end

-- (sub_domain, domain): "@" at the apex.
local function split(self, fqdn)
  local name = strip_dot(fqdn)
  local zone = self.zone
  if zone and http_api.in_zone(name, zone) then
    if name == zone then
      return "@", zone
    end
    return sub(name, 1, #name - #zone - 1), zone
  end
  local labels = {}
  for label in name:gmatch("[^.]+") do
    labels[#labels + 1] = label
  end
  local n = #labels
  if n <= 2 then
    return "@", name
  end
  return concat(labels, ".", 1, n - 2), labels[n - 1] .. "." .. labels[n]
end

function _M:post_txt_record(fqdn, content)
  local sub_domain, domain = split(self, fqdn)
  local ok, err = call(self, "Record.Create", {
    domain = domain,
    sub_domain = sub_domain,
    record_type = "TXT",
    record_line = "default",
    value = content,
    ttl = self.ttl,
  })
  if not ok then
    return fail(err)
  end
  return true
end

function _M:delete_txt_record(fqdn, content)
  local sub_domain, domain = split(self, fqdn)
  local list, err, code = call(self, "Record.List", { domain = domain, sub_domain = sub_domain })
  if not list then
    if code == "10" then -- "No records"
      return true
    end
    return fail(err)
  end
  for _, r in ipairs(type(list.records) == "table" and list.records or {}) do
    if http_api.is_txt_named(r, sub_domain, lower) and (content == nil or r.value == content) then
      local ok, rerr = call(self, "Record.Remove", { domain = domain, record_id = r.id })
      if not ok then
        return fail(rerr)
      end
    end
  end
  return true
end

return _M
