-- dns-persist-01 (draft-ietf-acme-dns-persist-01): a standing TXT record
-- `_validation-persist.<name>` = `<issuer-domain-name>; accounturi=<account URL>
-- [; policy=wildcard][; persistUntil=<unix time>]` that the CA checks at every validation.
-- Nothing is published per order: the record is put in place once, by the operator or (when a
-- dns_provider_accounts entry covers the name) through that provider, and never removed.
--
-- Before the CA is told, the record is looked up on the zone's servers when they are known
-- (dns_persist.nameservers, else the provider account's); a missing or mismatched record then
-- fails at once with the record name and the value expected, without asking the CA.
--
-- Configuration (client conf / autossl config, all optional):
--   dns_persist = {
--     issuer = "letsencrypt.org", -- issuer domain name to use; default: the CA's first
--     persist_until = 1900000000, -- persistUntil in the record
--     nameservers = { "192.0.2.53" }, -- where to check the record before validation
--     domains = { "example.com", "*.example.com" }, -- names set up for it: logged at start
--   }
local core = require("resty.acme.core")
local util = require("resty.acme.util")
local dns_client = require("resty.acme.dns_client")
local dns01 = require("resty.acme.challenge.dns-01")

local ngx = ngx
local ngx_now = ngx.now
local ngx_update_time = ngx.update_time
local log = util.log
local ipairs = ipairs
local setmetatable = setmetatable
local tostring = tostring
local type = type
local concat = table.concat
local lower = string.lower
local sub = string.sub
local contains = dns01.contains

local _M = { _VERSION = "0.16.0" }
local mt = { __index = _M }

local function now()
  ngx_update_time()
  return ngx_now()
end

local function as_list(v)
  if type(v) == "string" then
    return { v }
  end
  if type(v) == "table" then
    return v
  end
  return nil
end

-- The issuer domain name to put into the record: the configured one when the CA lists it,
-- else the CA's first.
local function pick_issuer(conf, issuers)
  if type(issuers) ~= "table" or #issuers == 0 then
    return nil, "the CA lists no issuer-domain-names"
  end
  local want = conf.issuer
  if want then
    want = lower(want)
    if not contains(issuers, want) then
      return nil, "issuer " .. want .. " is not among the CA's issuer-domain-names ("
        .. concat(issuers, ", ") .. ")"
    end
    return want
  end
  return issuers[1]
end

-- record(conf, name, issuer, account_url): { name =, value = } | nil, err
local function record(conf, name, issuer, account_url)
  local value, err = core.dns_persist_value({
    issuer = issuer,
    account_uri = account_url,
    wildcard = sub(name, 1, 2) == "*.",
    persist_until = conf.persist_until,
  })
  if not value then
    return nil, err
  end
  return { name = core.dns_persist_name(name), value = value, issuer = issuer }
end

-- Asks each server for the record; true when every one answers a matching value.
local function check_servers(servers, rec, spec, issuers)
  for _, server in ipairs(servers) do
    local txts, err = dns_client.txt(server, rec.name, { timeout = 2000, retries = 1 })
    if not txts then
      return nil, "cannot look up " .. rec.name .. " at " .. server .. ": " .. tostring(err)
    end
    local ok, why = core.dns_persist_check(txts, issuers, spec, now())
    if not ok then
      return nil, server .. ": " .. why
    end
  end
  return true
end

-- The record text an operator needs: `<name> TXT "<value>"`.
function _M.describe(rec)
  return rec.name .. ' TXT "' .. rec.value .. '"'
end

-- record_for(conf, name, issuer, account_url): { name =, value = } | nil, err (for the
-- client's dns_persist_record and the start log line).
function _M.record_for(conf, name, issuer, account_url)
  return record(conf or {}, name, issuer, account_url)
end

-- eligible(conf, name, issuer, account_url): whether dns-persist-01 can answer for `name`:
-- true when the record authorizes the account where it is checked, when a provider will
-- publish it, or when nothing can be checked (the CA decides); else false and the reason.
function _M.eligible(conf, name, issuer, account_url)
  conf = conf or {}
  local rec, rerr = record(conf, name, issuer, account_url)
  if not rec then
    return false, rerr
  end
  local handler, _, account = dns01.provider_handler(name)
  if handler then
    return true
  end
  local servers = as_list(conf.nameservers)
  if not servers or #servers == 0 then
    if not account then
      return true
    end
    servers = dns01.servers_for(account, {}, rec.name)
    if not servers then
      return true
    end
  end
  local spec = { issuer = issuer, account_uri = account_url, wildcard = sub(name, 1, 2) == "*." }
  local ok, why = check_servers(servers, rec, spec, { issuer })
  if ok then
    return true
  end
  return false, why .. "; expected " .. _M.describe(rec)
end

-- Provider accounts are shared with dns-01.
function _M.update_dns_provider_info(accounts)
  return dns01.update_dns_provider_info(accounts)
end

function _M.new(storage, conf)
  return setmetatable({ storage = storage, conf = type(conf) == "table" and conf or {} }, mt)
end

-- register_challenge(token, key_authorization, names, task): nil or err. `task` carries the
-- challenge's issuer_domain_names, account_uri and the client's account_url.
function _M:register_challenge(_, _, names, task)
  task = task or {}
  local conf = self.conf
  local issuers = task.issuer_domain_names
  local issuer, ierr = pick_issuer(conf, issuers)
  if not issuer then
    return "dns-persist-01: " .. ierr
  end
  local account_url = task.account_uri or task.account_url
  if not account_url then
    return "dns-persist-01: the account URL is not known"
  end
  for _, name in ipairs(names or {}) do
    local rec, rerr = record(conf, name, issuer, account_url)
    if not rec then
      return "dns-persist-01 record for " .. name .. ": " .. rerr
    end
    local spec = { issuer = issuer, account_uri = account_url, wildcard = sub(name, 1, 2) == "*." }
    local handler, herr, account = dns01.provider_handler(name)
    if not handler and account then
      return dns01.provider_error(account, "cannot be used", herr)
    end
    local servers = as_list(conf.nameservers)
    if (not servers or #servers == 0) and handler then
      servers = dns01.servers_for(account, handler, rec.name)
    end
    local published_key = "dns-persist:" .. name
    local ok, why
    if servers and #servers > 0 then
      ok, why = check_servers(servers, rec, spec, issuers)
    else
      -- nowhere to look: published once by the provider (remembered), else left to the CA
      ok = not handler or self.storage:get(published_key) == rec.value
      why = "not published yet"
    end
    if not ok and handler then
      log(ngx.INFO, "dns-persist-01 record for ", name, " is not in place (", why,
        "), publishing ", _M.describe(rec), " through ", account.provider)
      local pok, perr = handler:post_txt_record(rec.name, rec.value)
      if not pok then
        return dns01.provider_error(account, "failed to create TXT record " .. rec.name, perr)
      end
      self.storage:set(published_key, rec.value)
      if servers and #servers > 0 then
        local vok, verr = dns01.wait_propagation(rec.name, rec.value, servers, account)
        if not vok then
          return dns01.provider_error(account, "published TXT record " .. rec.name
            .. " but it did not show", verr)
        end
      end
      ok = true
    elseif not ok and not handler and servers and #servers > 0 then
      return "dns-persist-01 record for " .. name .. " is not in place (" .. tostring(why)
        .. "): publish " .. _M.describe(rec)
    end
    if ok then
      log(ngx.INFO, "dns-persist-01 for ", name, ": ", _M.describe(rec))
    end
  end
  return nil
end

-- The record stays: it is what later validations use (unlike dns-01).
function _M.cleanup_challenge()
  return nil
end

return _M
