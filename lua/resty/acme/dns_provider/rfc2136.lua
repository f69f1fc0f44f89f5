-- dns-01 records through DNS UPDATE (RFC 2136) signed with TSIG (RFC 8945): works with any
-- server that accepts signed updates (BIND, Knot, PowerDNS). Messages are built, signed and
-- verified by resty.acme.core (hickory-proto); this module sends them over cosockets.
--
-- secret = {
--   server = "192.0.2.53:53",        -- the primary server to update (IP[:port]; [v6]:port)
--   zone = "example.com.",           -- optional: found with an SOA query to server when absent
--   tsig_key_name = "acme-key.",     -- required
--   tsig_algorithm = "hmac-sha256",  -- or "hmac-sha512"
--   tsig_secret = "<base64>",        -- required; as in BIND's key clause
--   ttl = 60,                        -- TTL of the TXT records
--   timeout = 2000,                  -- ms per try; retries = 2 (UDP retransmissions)
-- }
local core = require("resty.acme.core")
local dns_client = require("resty.acme.dns_client")

local ngx = ngx
local ngx_time = ngx.time
local setmetatable = setmetatable
local tonumber = tonumber
local tostring = tostring
local type = type

local _M = { _VERSION = "0.16.0" }
local mt = { __index = _M }

local NAME = "rfc2136"

local function fail(msg)
  return nil, NAME .. ": " .. msg
end

function _M.new(secret)
  if type(secret) ~= "table" then
    return fail("secret must be a table { server =, zone =, tsig_key_name =, tsig_algorithm =, "
      .. "tsig_secret = }, got " .. type(secret))
  end
  local server = secret.server
  local host, perr = dns_client.parse_server(server)
  if not host then
    return fail(perr)
  end
  if type(secret.tsig_key_name) ~= "string" or secret.tsig_key_name == "" then
    return fail("tsig_key_name is required")
  end
  if type(secret.tsig_secret) ~= "string" or secret.tsig_secret == "" then
    return fail("tsig_secret is required")
  end
  local key, kerr = core.tsig_key(secret.tsig_key_name, secret.tsig_algorithm or "hmac-sha256",
    secret.tsig_secret)
  if not key then
    return fail(kerr)
  end
  local ttl = tonumber(secret.ttl or 60)
  if not ttl or ttl < 0 or ttl > 2147483647 or ttl % 1 ~= 0 then
    return fail("ttl must be a non-negative integer, got " .. tostring(secret.ttl))
  end
  if secret.zone ~= nil and (type(secret.zone) ~= "string" or secret.zone == "") then
    return fail("zone must be a domain name")
  end
  return setmetatable({
    server = server,
    zone = secret.zone,
    key = key,
    ttl = ttl,
    opts = { timeout = tonumber(secret.timeout) or 2000, retries = tonumber(secret.retries) or 2 },
  }, mt)
end

local function zone_for(self, fqdn)
  if self.zone then
    return self.zone
  end
  local zone, err = dns_client.find_zone(self.server, fqdn, self.opts)
  if not zone then
    return fail("cannot find the zone of " .. fqdn .. ": " .. err)
  end
  return zone
end

local function update(self, fqdn, op, what)
  local zone, zerr = zone_for(self, fqdn)
  if not zone then
    return nil, zerr
  end
  local req, err = core.dns_update({ zone = zone, ops = { op }, key = self.key, now = ngx_time() })
  if not req then
    return fail(what .. " " .. fqdn .. ": " .. err)
  end
  local data
  data, err = dns_client.exchange(self.server, req, self.opts)
  if not data then
    return fail(what .. " " .. fqdn .. " at " .. self.server .. " failed: " .. err)
  end
  local ok
  ok, err = req:finish(data, ngx_time())
  if not ok then
    return fail("server " .. self.server .. " did not " .. what .. " " .. fqdn .. " in zone "
      .. zone .. ": " .. err)
  end
  return true
end

-- post_txt_record(fqdn, content): true or nil, err. Adds one TXT record (RFC 2136 §2.5.1).
function _M:post_txt_record(fqdn, content)
  return update(self, fqdn, { op = "add", name = fqdn, value = content, ttl = self.ttl }, "add")
end

-- delete_txt_record(fqdn, content?): true or nil, err. Deletes the TXT record with this content
-- (§2.5.4), or every TXT record of fqdn when content is nil (§2.5.2); other types stay.
function _M:delete_txt_record(fqdn, content)
  return update(self, fqdn, { op = "delete", name = fqdn, value = content }, "delete")
end

-- The servers that must show the record before the CA is told: the one updated.
function _M:nameservers()
  return { self.server }
end

return _M
