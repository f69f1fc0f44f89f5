-- When a failed name is ordered again, shared by every worker and node through the storage.
--
-- Per name and key type, the key `backoff:<type>:<name>` (docs/FORMAT.md) holds the cause of
-- the last failure, the consecutive failures, the times of recent failed validations and the
-- time of the next try. The schedule itself is the core's (core.backoff_classify /
-- core.backoff_next, src/acme/backoff.rs):
--
-- * transient (transport, timeout, 5xx, serverInternal): failure_cooloff doubling per failure
--   up to failure_cooloff_cap, plus up to failure_cooloff_jitter of it;
-- * validation (unauthorized, incorrectResponse, dns, caa, connection, tls): the same, and at
--   most failed_validation_limit failures per failed_validation_window seconds;
-- * rate_limited: exactly the CA's Retry-After;
-- * permanent (rejectedIdentifier, malformed): no try until the configuration changes or
--   clear() is called (the admin view lists the name as stopped).
--
-- failure_cooloff_callback(domain, attempts), when set, decides the delay instead (never
-- before a Retry-After). A success deletes the state.
local core = require("resty.acme.core")
local util = require("resty.acme.util")
local keys = require("resty.acme.autossl.keys")
local cjson = require("cjson.safe")

local ngx = ngx
local ngx_now = ngx.now
local ngx_md5 = ngx.md5
local ngx_worker_pid = ngx.worker.pid
local log = util.log
local ipairs = ipairs
local pcall = pcall
local tonumber = tonumber
local tostring = tostring
local type = type
local math_max = math.max
local math_floor = math.floor
local sub = string.sub
local concat = table.concat

local _M = { _VERSION = "0.16.0" }

_M.PREFIX = keys.BACKOFF

local policy = {
  base = 300,
  cap = 86400,
  jitter = 0.1,
  validation_max = 3,
  validation_window = 3600,
}
local callback        -- failure_cooloff_callback
local fingerprint = "" -- of the configuration a permanent stop was decided under
local seq = 0

-- issuer: the index in the `issuers` list (resty.acme.issuers); the first has no suffix
local function key_for(domain, typ, issuer)
  local key = _M.PREFIX .. (typ or "rsa") .. ":" .. domain
  if issuer and issuer > 1 then
    key = key .. "@" .. issuer
  end
  return key
end

local function decode(raw)
  if type(raw) ~= "string" then
    return nil
  end
  local state = cjson.decode(raw)
  if type(state) ~= "table" then
    return nil
  end
  return state
end

-- The failure as the core classifies it: fail is the error table of the client's last
-- operation (category, problem_type, status, retry_after), when there was one.
local function cause_of(err, fail)
  fail = type(fail) == "table" and fail or {}
  return core.backoff_classify(fail.category, fail.problem_type, tonumber(fail.status),
    tostring(err or ""))
end

local function seed()
  seq = seq + 1
  return (ngx_worker_pid() * 7919 + seq * 104729 + math_floor(ngx_now() * 1000)) % 4294967296
end

-- init(conf, acme_conf): the knobs from the autossl config; the configuration fingerprint
-- (CA, chain, profile) that lifts permanent stops when it changes.
function _M.init(conf, acme_conf)
  local base = tonumber(conf.failure_cooloff)
  policy.base = base or 0
  policy.cap = tonumber(conf.failure_cooloff_cap) or 86400
  policy.jitter = tonumber(conf.failure_cooloff_jitter) or 0.1
  policy.validation_max = tonumber(conf.failed_validation_limit) or 3
  policy.validation_window = tonumber(conf.failed_validation_window) or 3600
  callback = conf.failure_cooloff_callback
  acme_conf = acme_conf or {}
  local parts = {
    tostring(acme_conf.api_uri), tostring(acme_conf.preferred_chain),
    type(conf.profile) == "string" and conf.profile or "",
  }
  if type(conf.issuers) == "table" then
    for _, iss in ipairs(conf.issuers) do
      parts[#parts + 1] = type(iss) == "table" and tostring(iss.api_uri) or ""
    end
  end
  fingerprint = ngx_md5(concat(parts, "|"))
end

function _M.policy()
  return policy
end

-- get(storage, domain, typ, issuer?): the stored state table, or nil.
function _M.get(storage, domain, typ, issuer)
  return decode((storage:get(key_for(domain, typ, issuer))))
end

-- blocked(storage, domain, typ, now, issuer?): the time before which `domain` is not ordered (math.huge
-- for a permanent stop) and the state, or nil when it may be ordered now.
function _M.blocked(storage, domain, typ, now, issuer)
  now = now or ngx_now()
  -- the original's cooloff lock (a store written by lua-resty-acme)
  local lock = (not issuer or issuer == 1) and tonumber((storage:get(keys.FAILURE_LOCK .. domain)))
  if lock and lock > now then
    return lock
  end
  local state = _M.get(storage, domain, typ, issuer)
  if not state then
    return nil
  end
  if state.stopped then
    if state.fingerprint ~= fingerprint then
      return nil, state -- the configuration changed since
    end
    return math.huge, state
  end
  local nxt = tonumber(state.next)
  if nxt and nxt > now then
    return nxt, state
  end
  return nil, state
end

-- record(storage, domain, typ, err, fail, issuer?): notes a failed order (err and the client's
-- error table) at that issuer, or a success (err nil). Returns the state written (nil after a
-- success).
function _M.record(storage, domain, typ, err, fail, issuer)
  local key = key_for(domain, typ, issuer)
  if not err then
    storage:delete(key)
    return nil
  end
  local now = ngx_now()
  local old = _M.get(storage, domain, typ, issuer) or {}
  local cause = cause_of(err, fail)
  local attempts = (tonumber(old.attempts) or 0) + 1
  local vfails = {}
  for _, t in ipairs(type(old.validation_failures) == "table" and old.validation_failures or {}) do
    t = tonumber(t)
    if t and t > now - policy.validation_window then
      vfails[#vfails + 1] = t
    end
  end
  if cause == "validation" then
    vfails[#vfails + 1] = now
  end
  local retry_after = type(fail) == "table" and tonumber(fail.retry_after) or nil
  local nxt, nerr = core.backoff_next({
    cause = cause, attempts = attempts, validation_failures = vfails, retry_after = retry_after,
    now = now, seed = seed(), base = policy.base, cap = policy.cap, jitter = policy.jitter,
    validation_max = policy.validation_max, validation_window = policy.validation_window,
  })
  if nerr then
    log(ngx.ERR, "backoff for ", domain, ": ", nerr)
    nxt = now + policy.base
  end
  if callback then
    local ok, v = pcall(callback, domain, attempts)
    v = ok and tonumber(v)
    if v then
      nxt = now + v
      if retry_after and cause == "rate_limited" then
        nxt = math_max(nxt, retry_after)
      end
    elseif not ok then
      log(ngx.ERR, "failure_cooloff_callback failed for ", domain, ": ", v)
    end
  end
  local state = {
    cause = cause,
    attempts = attempts,
    failed_at = now,
    next = nxt,
    stopped = nxt == nil or nil,
    fingerprint = nxt == nil and fingerprint or nil,
    validation_failures = vfails,
    retry_after = retry_after,
    error = sub(tostring(err), 1, 512),
  }
  if #vfails == 0 then
    state.validation_failures = nil
  end
  -- what no longer matters expires: one window after the next try, a stop never
  local ttl
  if nxt then
    ttl = math_floor(math_max(nxt - now, 0) + policy.validation_window + 60)
  end
  local serr = storage:set(key, cjson.encode(state), ttl)
  if serr then
    log(ngx.ERR, "cannot store the backoff of ", domain, ": ", serr)
  end
  if nxt then
    log(ngx.WARN, "order of ", typ, " certificate for ", domain,
      issuer and issuer > 1 and (" from issuer " .. issuer) or "", " failed (", cause, ", ",
      attempts, " in a row), next try in ", math_floor((nxt - now) * 1000) / 1000, "s")
  else
    log(ngx.ERR, "order of ", typ, " certificate for ", domain, " failed (", cause,
      "): not ordered again until the configuration changes or the backoff is cleared")
  end
  return state
end

-- clear(storage, domain, typ?): forget the failures of a name (both key types when typ is nil).
function _M.clear(storage, domain, typ)
  if typ then
    return storage:delete(key_for(domain, typ))
  end
  storage:delete(key_for(domain, "rsa"))
  return storage:delete(key_for(domain, "ecc"))
end

-- until_any(storage, domain): the latest next try of either key type (nil when none, or
-- when stopped: list() tells).
function _M.until_any(storage, domain)
  local latest
  for _, typ in ipairs({ "rsa", "ecc" }) do
    local t = _M.blocked(storage, domain, typ)
    if t and t ~= math.huge and (not latest or t > latest) then
      latest = t
    end
  end
  return latest
end

-- list(storage): every stored backoff state, { name =, type =, ...state } (admin view).
function _M.list(storage)
  local out = {}
  local listed = storage:list(_M.PREFIX) or {}
  for _, key in ipairs(listed) do
    local typ, name = key:match("^backoff:([^:]+):(.+)$")
    local state = typ and decode((storage:get(key)))
    if state then
      local base, issuer = name:match("^(.+)@(%d+)$")
      state.name = base or name
      state.issuer = tonumber(issuer) or 1
      state.type = typ
      if state.stopped and state.fingerprint ~= fingerprint then
        state.stopped = nil -- lifted by a configuration change
      end
      state.fingerprint = nil
      out[#out + 1] = state
    end
  end
  return out
end

return _M
