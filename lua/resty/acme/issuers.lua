-- More than one CA: the autossl key `issuers`, a list tried in order for each name.
--
--   issuers = {
--     { api_uri = "https://acme-v02.api.letsencrypt.org/directory" },
--     { api_uri = "https://acme.zerossl.com/v2/DV90", eab_handler = ..., preferred_chain = ...,
--       profile = ... },
--   }
--
-- Each entry may set api_uri, eab_kid + eab_hmac_key or eab_handler, preferred_chain and
-- profile; everything else comes from the client config given to autossl.init. Without
-- `issuers` the one CA of the client config (api_uri / staging) is the only issuer, as before.
--
-- A name is ordered from the first issuer whose backoff (resty.acme.backoff, kept per issuer)
-- allows it. An issuer is passed over for a name once it failed `issuer_failover_after`
-- (default 3) times in a row, rate-limited it or refused it for good; it is asked first again
-- as soon as its backoff for the name has run out. A renewal asks the issuer of the stored
-- certificate first (the entry's `issuer` field, its directory URL: docs/FORMAT.md), then the
-- others in order, the same way: the CA that issued a certificate renews it while it can.
local client = require("resty.acme.client")
local cjson = require("cjson.safe")
local backoff = require("resty.acme.backoff")
local budget = require("resty.acme.budget")

local ipairs = ipairs
local pairs = pairs
local tonumber = tonumber
local tostring = tostring
local type = type
local error = error

local _M = { _VERSION = "0.16.0" }

local list = {}  -- { uri =, client =, ready = } per issuer; list[1].client is autossl's own
local failover_after = 3

local PER_ISSUER = { "api_uri", "eab_kid", "eab_hmac_key", "eab_handler", "preferred_chain",
  "profile" }

-- prepare(autossl_conf, acme_conf): applies the first issuer's settings to the client config
-- autossl builds its own client from; checks the list.
function _M.prepare(conf, acme_conf)
  local issuers = conf.issuers
  failover_after = tonumber(conf.issuer_failover_after) or 3
  list = {}
  if issuers == nil then
    return
  end
  if type(issuers) ~= "table" or #issuers == 0 then
    error("issuers must be a non-empty list of tables")
  end
  for i, iss in ipairs(issuers) do
    if type(iss) ~= "table" or type(iss.api_uri) ~= "string" then
      error("issuers[" .. i .. "] must be a table with an api_uri")
    end
  end
  for _, k in ipairs(PER_ISSUER) do
    if issuers[1][k] ~= nil then
      acme_conf[k] = issuers[1][k]
    end
  end
end

-- init(conf, acme_conf, first_client): the clients of the further issuers.
function _M.init(conf, acme_conf, first)
  list = { { uri = acme_conf.api_uri, client = first } }
  local issuers = conf.issuers
  if not issuers then
    return
  end
  for i = 2, #issuers do
    local c = {}
    for k, v in pairs(acme_conf) do
      c[k] = v
    end
    for _, k in ipairs(PER_ISSUER) do
      c[k] = issuers[i][k]
    end
    local cl, err = client.new(c)
    if not cl then
      error("failed to initialize ACME client of issuers[" .. i .. "]: " .. tostring(err))
    end
    list[i] = { uri = issuers[i].api_uri, client = cl }
    budget.add_ca(issuers[i].api_uri)
  end
end

function _M.count()
  return #list
end

function _M.client(i)
  local iss = list[i or 1]
  return iss and iss.client
end

function _M.uri(i)
  local iss = list[i or 1]
  return iss and iss.uri
end

-- The issuer's directory URL to record in a stored entry: only with more than one issuer
-- (a single CA's entries stay byte for byte what lua-resty-acme writes).
function _M.record_uri(i)
  if #list < 2 then
    return nil
  end
  return _M.uri(i)
end

-- issued_by(storage, domain, typ): the index of the issuer that ordered the stored
-- certificate, or nil (one issuer, no entry, an entry from before, a CA no longer listed).
function _M.issued_by(storage, domain, typ)
  if #list < 2 then
    return nil
  end
  local raw = storage:get("domain:" .. typ .. ":" .. domain)
  local entry = type(raw) == "string" and cjson.decode(raw)
  local uri = type(entry) == "table" and entry.issuer
  if type(uri) ~= "string" then
    return nil
  end
  for i, iss in ipairs(list) do
    if iss.uri == uri then
      return i
    end
  end
  return nil
end

-- ensure(i, first_ensure, load_pem): the issuer's client is ready (account key, directory,
-- account); the first issuer is autossl's own (first_ensure()). true | nil, err, the failed
-- request's error table (its problem type classifies the backoff).
function _M.ensure(i, first_ensure, load_pem)
  if not i or i == 1 then
    return first_ensure()
  end
  local iss = list[i]
  if iss.ready then
    return true
  end
  local c = iss.client
  if not c.account_pkey then
    local pem, err = load_pem()
    if not pem then
      return nil, "error during acme init: " .. tostring(err)
    end
    local ok, serr = c:set_account_key(pem)
    if not ok then
      return nil, "error during acme init: failed to set account key: " .. tostring(serr)
    end
  end
  local err, act = c:init()
  if err then
    return nil, "error during acme init: " .. err, act
  end
  local _, aerr, aact = c:new_account()
  if aerr then
    return nil, "error during acme login: " .. aerr, aact
  end
  iss.ready = true
  return true
end

local function given_up(state)
  if not state then
    return false
  end
  return state.stopped or state.cause == "rate_limited" or state.cause == "permanent"
    or (tonumber(state.attempts) or 0) >= failover_after
end

-- pick(storage, domain, typ, now, first?): the issuer to order from now, or nil and the time
-- before which none is (math.huge: every issuer refused the name for good). `first`: the
-- issuer asked before the others (a renewal's issuer, issued_by()).
function _M.pick(storage, domain, typ, now, first)
  local n = #list
  if n == 0 then
    n = 1
  end
  local order = { first or 1 }
  for i = 1, n do
    if i ~= order[1] then
      order[#order + 1] = i
    end
  end
  local earliest
  for pos, i in ipairs(order) do
    local until_t, state = backoff.blocked(storage, domain, typ, now, i)
    if not until_t then
      return i
    end
    if not earliest or until_t < earliest then
      earliest = until_t
    end
    if pos < n and not given_up(state) then
      -- still within this issuer's retries: wait for it
      return nil, until_t
    end
  end
  return nil, earliest
end

return _M
