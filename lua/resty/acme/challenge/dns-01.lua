-- dns-01 (RFC 8555 §8.4): a TXT record `_acme-challenge.<name>` holding base64url(SHA-256(key
-- authorization)), published through a DNS provider module (resty.acme.dns_provider.<name>),
-- checked on the zone's authoritative servers before the CA is told, and removed afterwards.
--
-- The provider account for a name is picked from dns_provider_accounts[*].domains: an exact
-- entry first (as the original: "*.example.com" must be listed for the wildcard), then the
-- longest entry that is a parent domain: "example.com" also covers "www.example.com",
-- "a.b.example.com" and "*.example.com". Among equal entries the later account wins.
local core = require("resty.acme.core")
local util = require("resty.acme.util")
local dns_client = require("resty.acme.dns_client")

local ngx = ngx
local ngx_now = ngx.now
local ngx_sleep = ngx.sleep
local ngx_update_time = ngx.update_time
local log = util.log
local ipairs = ipairs
local pcall = pcall
local require = require
local setmetatable = setmetatable
local tonumber = tonumber
local tostring = tostring
local type = type
local concat = table.concat
local math_floor = math.floor
local math_max = math.max
local math_min = math.min
local sort = table.sort
local lower = string.lower
local sub = string.sub

local _M = {
  _VERSION = "0.16.0",
  -- Defaults of the propagation check; an account's own fields take precedence.
  propagation_timeout = 120, -- seconds
  propagation_interval = 2,  -- seconds between rounds of queries
}
local mt = { __index = _M }

local TTL = 3600

-- per-worker state from update_dns_provider_info
local exact = {}     -- lower-cased domains entry -> account
local suffixes = {}  -- { suffix = ".example.com", account = a }, longest first
local providers = {} -- provider name -> module
local unreachable = {} -- resolver -> time until which it is not asked (it did not answer)

local function now()
  ngx_update_time()
  return ngx_now()
end

local function base_name(name)
  if sub(name, 1, 2) == "*." then
    return sub(name, 3)
  end
  return name
end

local function record_name(name)
  return "_acme-challenge." .. base_name(name)
end

local function pick_account(name)
  local lname = lower(name)
  local account = exact[lname]
  if account then
    return account
  end
  local base = base_name(lname)
  local wildcard = base ~= lname
  for _, s in ipairs(suffixes) do
    -- "example.com" covers "*.example.com" and every name below "example.com"
    if wildcard and base == sub(s.suffix, 2) then
      return s.account
    end
    local slen = #s.suffix
    if #base > slen and sub(base, -slen) == s.suffix then
      return s.account
    end
  end
  return nil
end

local function provider_handler(name)
  local account = pick_account(name)
  if not account then
    return nil, "no dns provider key configured for domain " .. name
  end
  local mod = providers[account.provider]
  if not mod then
    return nil, "provider " .. tostring(account.provider) .. " is not loaded for domain " .. name
  end
  local ok, handler, err = pcall(mod.new, account.secret)
  if not ok or not handler then
    return nil, "dns provider init error: " .. tostring(ok and err or handler), account
  end
  return handler, nil, account
end

-- "dns provider <p> (account <a>) <what>: <err>", without repeating the provider's own prefix.
local function provider_error(account, what, err)
  err = tostring(err or "no reason given")
  local p = tostring(account.provider)
  if sub(err, 1, #p + 2) == p .. ": " then
    err = sub(err, #p + 3)
  end
  return "dns provider " .. p .. " (account " .. tostring(account.name) .. ") " .. what .. ": " .. err
end

local function positive(v, default)
  v = tonumber(v)
  if v and v > 0 then
    return v
  end
  return default
end

local function contains(list, value)
  for _, v in ipairs(list) do
    if v == value then
      return true
    end
  end
  return false
end

-- Queries every server until each answers the TXT value, or the deadline passes.
local function wait_propagation(fqdn, content, servers, account)
  local timeout = positive(account.propagation_timeout, positive(_M.propagation_timeout, 120))
  local interval = positive(account.propagation_interval, positive(_M.propagation_interval, 2))
  local deadline = now() + timeout
  local pending = servers
  local lasterr = "none"
  while true do
    local still = {}
    for _, server in ipairs(pending) do
      local left_ms = math_max(100, math_floor((deadline - now()) * 1000))
      local values, err = dns_client.txt(server, fqdn, { timeout = math_min(2000, left_ms), retries = 1 })
      if values and contains(values, content) then
        log(ngx.DEBUG, "TXT record ", fqdn, " is visible on ", server)
      else
        still[#still + 1] = server
        if values then
          lasterr = server .. " does not answer the value yet (" .. #values .. " other TXT values)"
        else
          lasterr = err
        end
      end
    end
    pending = still
    if #pending == 0 then
      return true
    end
    local left = deadline - now()
    if left <= 0 then
      return nil, "timeout (" .. timeout .. "s) exceeded waiting for TXT record " .. fqdn .. " on "
        .. concat(pending, ", ") .. ", latest error was: " .. tostring(lasterr)
    end
    ngx_sleep(math_min(interval, left))
  end
end

-- The servers to check: the account's nameservers, the provider's, or the zone's
-- authoritative servers found through a resolver (the account's propagation_resolver, the
-- module's, or the system's); nil when none can be found (then nothing is checked).
local function servers_for(account, handler, fqdn)
  if account.propagation_check == false or _M.propagation_check == false then
    return nil
  end
  local list = account.nameservers
  if type(list) == "string" then
    list = { list }
  end
  if type(list) == "table" and #list > 0 then
    return list
  end
  if handler.nameservers then
    list = handler:nameservers()
    if type(list) == "table" and #list > 0 then
      return list
    end
  end
  if not fqdn then
    return nil
  end
  local resolver = account.propagation_resolver or _M.propagation_resolver
    or dns_client.system_resolver()
  if not resolver then
    return nil
  end
  local quiet_until = unreachable[resolver]
  if quiet_until and quiet_until > now() then
    return nil
  end
  local found, err, no_reply = dns_client.authoritative_servers(fqdn, resolver,
    { port = account.propagation_port or _M.propagation_port, timeout = 1000, retries = 1 })
  if not found then
    if no_reply then
      -- not asked again for a minute: an offline host would wait at every name
      unreachable[resolver] = now() + 60
    end
    log(ngx.INFO, "cannot find the authoritative servers of ", fqdn, ": ", err)
    return nil
  end
  log(ngx.INFO, "authoritative servers of ", fqdn, ": ", concat(found, ", "))
  return found
end

-- update_dns_provider_info(accounts): true or nil, err. Called by client.new when dns-01 is
-- enabled; loads every provider module once.
function _M.update_dns_provider_info(accounts)
  if accounts == nil then
    accounts = {}
  end
  if type(accounts) ~= "table" then
    return nil, "dns_provider_accounts must be a list, got " .. type(accounts)
  end
  local new_exact, new_suffixes, order = {}, {}, 0
  for i, account in ipairs(accounts) do
    if type(account) ~= "table" or not account.name then
      return nil, "#" .. i .. " element in dns_provider_accounts doesn't have a name"
    end
    if not account.secret then
      return nil, "dns provider account " .. tostring(account.name) .. " doesn't have a secret"
    end
    if not account.provider then
      return nil, "dns provider account " .. tostring(account.name) .. " doesn't have a provider"
    end
    local ns = account.nameservers
    if ns ~= nil then
      if type(ns) == "string" then
        ns = { ns }
      end
      if type(ns) ~= "table" then
        return nil, "dns provider account " .. tostring(account.name) .. ": nameservers must be a list"
      end
      for _, server in ipairs(ns) do
        local host, perr = dns_client.parse_server(server)
        if not host then
          return nil, "dns provider account " .. tostring(account.name) .. ": " .. perr
        end
      end
    end
    local p = account.provider
    if not providers[p] then
      local ok, mod = pcall(require, "resty.acme.dns_provider." .. tostring(p))
      if not ok or type(mod) ~= "table" or type(mod.new) ~= "function" then
        return nil, "dns provider " .. tostring(p) .. " failed to load: "
          .. (ok and "not a provider module" or tostring(mod))
      end
      providers[p] = mod
    end
    if type(account.domains) == "table" then
      for _, d in ipairs(account.domains) do
        if type(d) == "string" and d ~= "" then
          local ld = lower(d)
          new_exact[ld] = account
          if sub(ld, 1, 1) ~= "*" then
            order = order + 1
            new_suffixes[#new_suffixes + 1] = { suffix = "." .. ld, account = account, order = order }
          end
        end
      end
    end
  end
  -- longest suffix first; for the same length the later entry first (later accounts win)
  sort(new_suffixes, function(a, b)
    if #a.suffix ~= #b.suffix then
      return #a.suffix > #b.suffix
    end
    return a.order > b.order
  end)
  exact, suffixes = new_exact, new_suffixes
  return true
end

-- Shared with challenge/dns-persist-01: the account serving a name, the servers to check,
-- the propagation wait and the list membership test.
_M.provider_handler = provider_handler
_M.provider_error = provider_error
_M.servers_for = servers_for
_M.wait_propagation = wait_propagation
_M.contains = contains

function _M.new(storage)
  return setmetatable({ storage = storage }, mt)
end

-- register_challenge(token, key_authorization, names): nil or err. For each name: store the
-- key authorization, create the TXT record through the name's provider, then wait until the
-- zone's servers answer it.
function _M:register_challenge(_, key_authorization, names)
  for _, name in ipairs(names or {}) do
    local err = self.storage:set(name .. "#dns-01", key_authorization, TTL)
    if err then
      return "failed to store dns-01 challenge for " .. name .. ": " .. tostring(err)
    end
    local handler, herr, account = provider_handler(name)
    if not handler then
      return account and provider_error(account, "cannot be used", herr) or herr
    end
    local fqdn = record_name(name)
    local content = core.dns01_value(key_authorization)
    local ok, perr = handler:post_txt_record(fqdn, content)
    if not ok then
      return provider_error(account, "failed to create TXT record " .. fqdn, perr)
    end
    log(ngx.INFO, "created TXT record ", fqdn, " through ", account.provider)
    local servers = servers_for(account, handler, fqdn)
    if servers then
      local vok, verr = wait_propagation(fqdn, content, servers, account)
      if not vok then
        return provider_error(account, "published TXT record " .. fqdn .. " but it did not show", verr)
      end
      log(ngx.INFO, "TXT record ", fqdn, " is visible on ", concat(servers, ", "))
    else
      log(ngx.INFO, "no nameservers known for dns provider account ", account.name,
        ": not checking that ", fqdn, " is visible before validation")
    end
  end
  return nil
end

-- cleanup_challenge(token, names): nil or err. Removes the stored key authorization and the
-- TXT record it produced (or, when it is no longer known, every TXT record of the name).
function _M:cleanup_challenge(_, names)
  local first_err
  for _, name in ipairs(names or {}) do
    local key = name .. "#dns-01"
    local key_authorization = self.storage:get(key)
    local derr = self.storage:delete(key)
    if derr then
      first_err = first_err or ("failed to delete dns-01 challenge for " .. name .. ": " .. tostring(derr))
    end
    local handler, herr, account = provider_handler(name)
    if not handler then
      first_err = first_err or (account and provider_error(account, "cannot be used", herr) or herr)
    else
      local fqdn = record_name(name)
      local content = type(key_authorization) == "string" and core.dns01_value(key_authorization) or nil
      local ok, err = handler:delete_txt_record(fqdn, content)
      if not ok then
        first_err = first_err or provider_error(account, "failed to delete TXT record " .. fqdn, err)
      else
        log(ngx.INFO, "deleted TXT record ", fqdn, " through ", account.provider)
      end
    end
  end
  return first_err
end

return _M
