-- Shows the dns-persist-01 records an operator must publish: a log line per name of
-- dns_persist.domains once the account is known, and the same list for the admin view.
local util = require("resty.acme.util")
local keys = require("resty.acme.autossl.keys")
local cjson = require("cjson.safe")

local ngx = ngx
local log = util.log
local ipairs = ipairs
local type = type
local setmetatable = setmetatable

local _M = { _VERSION = "0.16.0" }

local KEY = keys.DNS_PERSIST_RECORDS

-- announce(client, conf): logs and stores the record of every name of
-- conf.dns_persist.domains. Returns the list ({ {domain =, name =, value =}, ... }).
function _M.announce(client, conf)
  local dp = type(conf) == "table" and conf.dns_persist
  local domains = type(dp) == "table" and dp.domains
  if type(domains) ~= "table" or #domains == 0 then
    return {}
  end
  local out = {}
  for _, domain in ipairs(domains) do
    local rec, err = client:dns_persist_record(domain)
    if rec then
      log(ngx.NOTICE, "dns-persist-01 for ", domain, ": publish once ", rec.name, ' TXT "',
        rec.value, '"')
      out[#out + 1] = { domain = domain, name = rec.name, value = rec.value }
    else
      log(ngx.WARN, "dns-persist-01 record for ", domain, " cannot be computed: ", err)
    end
  end
  if client.storage then
    client.storage:set(KEY, cjson.encode(out))
  end
  return out
end

-- records(storage): the list announce stored last (a JSON array for the admin view).
function _M.records(storage)
  local text = storage and storage:get(KEY)
  local list = type(text) == "string" and cjson.decode(text) or nil
  if type(list) ~= "table" then
    list = {}
  end
  return setmetatable(list, cjson.array_mt)
end

return _M
