-- Declared names (config `declared_names`): issued right after start and kept renewed with no
-- handshake ever arriving, as nginx's native ACME module does. A list of names, or the string
-- "domain_whitelist" for the exact (non-wildcard) entries of domain_whitelist. Each missing
-- certificate goes through autossl.update_cert, which takes the update lock and looks at the
-- store again under it: a name is never ordered twice, however many workers and nodes start
-- together. Renewal is the renewal pass's, under the same rule as every stored certificate.
local keys = require("resty.acme.autossl.keys")

local ngx = ngx
local ipairs = ipairs
local type = type
local error = error
local tostring = tostring
local find = string.find
local lower = string.lower
local sub = string.sub

local _M = { _VERSION = "0.1.0" }

local names = {}

-- init(config): from autossl.init; raises on a malformed declared_names.
function _M.init(config)
  names = {}
  local d = config.declared_names
  if d == nil or d == false then
    return
  end
  local list
  if d == "domain_whitelist" then
    list = config.domain_whitelist
    if type(list) ~= "table" then
      error("declared_names = \"domain_whitelist\" needs a domain_whitelist list")
    end
  elseif type(d) == "table" then
    list = d
  else
    error("declared_names must be a list of names or \"domain_whitelist\", got " .. tostring(d))
  end
  local seen = {}
  for _, n in ipairs(list) do
    if type(n) ~= "string" then
      error("declared_names: every entry must be a string, got " .. type(n))
    end
    n = lower(n)
    local wildcard = sub(n, 1, 1) == "*"
    -- "domain_whitelist" takes the exact entries only; a declared wildcard needs dns-01
    if not seen[n] and not (wildcard and d == "domain_whitelist") then
      if wildcard and not find(n, "^%*%.") then
        error("declared_names: a wildcard must start with \"*.\": " .. n)
      end
      seen[n] = true
      names[#names + 1] = n
    end
  end
end

function _M.names()
  return names
end

-- issue(autossl): orders what is missing from the store; returns how many certificates are
-- still missing afterwards (failed, cooling off, or ordered by someone else right now).
function _M.issue(autossl)
  local storage = autossl.storage
  local log = autossl._log
  local missing = 0
  for _, name in ipairs(names) do
    for _, typ in ipairs(autossl.config.domain_key_types) do
      local key = keys.domain(typ, name)
      local raw, err = storage:get(key)
      if raw == nil and not err then
        local uerr = autossl.update_cert({ domain = name, type = typ, renew = false,
                                           ctx = { renewal = false, declared = true } })
        if uerr then
          log(ngx.ERR, "declared name ", name, " (", typ, "): ", uerr)
        end
        if uerr or storage:get(key) == nil then
          missing = missing + 1
        end
      end
    end
  end
  return missing
end

return _M
