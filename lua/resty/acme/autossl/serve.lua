-- The handshake's read path: this worker's caches, then the store, and the native callback
-- that serves cached names without Lua. Only reads the store; what it logs is rate-limited.
local certcache = require("resty.acme.certcache")
local stored = require("resty.acme.autossl.entry")
local keys = require("resty.acme.autossl.keys")
local state = require("resty.acme.autossl.state")
local tls_cert = require("resty.acme.tls_cert")
local util = require("resty.acme.util")

local ngx = ngx
local ngx_now = ngx.now
local ngx_null = ngx.null
local ngx_md5_bin = ngx.md5_bin
local attach_native = tls_cert.attach_native
local log = util.log
local tostring = tostring
local type = type

local _M = { _VERSION = "0.16.0" }

local caches = state.caches       -- the tables themselves are never replaced
local negatives = state.negatives
local native_ok = true -- false once the native callback could not be attached
local quiet = {}       -- log reason -> { next = t, suppressed = n }

-- log_quiet(level, reason, detail): one line per reason per 10 s: a flood of bad handshakes
-- must not flood the log.
local function log_quiet(level, reason, detail)
  local t = ngx_now()
  local q = quiet[reason]
  if q and t < q.next then
    q.suppressed = q.suppressed + 1
    return
  end
  local suppressed = q and q.suppressed or 0
  quiet[reason] = { next = t + 10, suppressed = 0 }
  if suppressed > 0 then
    log(level, reason, " ", detail, " (", suppressed, " similar suppressed)")
  else
    log(level, reason, " ", detail)
  end
end
_M.log_quiet = log_quiet

-- What get_cert_from_cache hands out: the table lua-resty-acme caches, with a chain and a key
-- of the caller's own (the cache's may be gone by the time the caller uses them).
local function public_entry(cache, domain, value)
  if value == nil or value == ngx_null then
    return value
  end
  local cert, pkey = cache:get_owned(domain)
  if not cert then
    return nil
  end
  return { cert = cert, pkey = pkey }
end

-- get_cert_from_cache(domain, typ): value, stale as COMPAT.md 2.1 has them (nil for a key type
-- that is not configured); never raises.
function _M.get_cert_from_cache(domain, typ)
  local cache = caches[typ or "rsa"]
  if not cache then
    return nil
  end
  local value, stale = cache:get(domain)
  if value == nil and negatives[typ or "rsa"]:get(domain) ~= nil then
    value = ngx_null
  end
  return public_entry(cache, domain, value), public_entry(cache, domain, stale)
end

-- lookup(domain, typ): the entry to serve, or nil; never raises (store errors are logged).
-- The cache, then the store; a failing store serves the stale entry rather than nothing. When
-- the TTL ran out and the store still holds the value the entry was parsed from (same MD5), the
-- entry is kept for another TTL: a few µs instead of parsing the chain and key again. What it
-- returns is the cache's view of the entry: use it before anything that may yield.
function _M.lookup(domain, typ)
  local cache = caches[typ]
  local value, stale = cache:get(domain)
  if value ~= nil then
    return value ~= ngx_null and value or nil
  end
  local negative = negatives[typ]
  if negative:get(domain) ~= nil then
    return nil
  end
  local had_stale = stale ~= nil and stale ~= ngx_null
  local conf = state.config
  -- may yield: what the cache handed out above is not used after it
  local raw, err = state.storage:get(keys.domain(typ, domain))
  local entry, perr, digest
  if raw and not err then
    digest = type(raw) == "string" and ngx_md5_bin(raw)
    if digest and had_stale and cache:refresh(domain, digest, conf.cache_ttl) then
      return (cache:get(domain))
    end
    entry, perr = stored.parse(raw)
    if entry then
      entry, perr = stored.certkey(entry.cert, entry.pkey, digest)
    end
    err = perr
  end
  if err then
    if had_stale and cache:refresh(domain, nil, conf.negative_cache_ttl * 5) then
      log_quiet(ngx.WARN, "serving cached certificate after a store error:", domain .. ": " .. tostring(err))
      return (cache:get(domain))
    end
    log_quiet(ngx.ERR, "cannot read certificate:", domain .. ": " .. tostring(err))
    negative:set(domain, ngx_null, conf.negative_cache_ttl)
    return nil
  end
  if not entry then
    negative:set(domain, ngx_null, conf.negative_cache_ttl)
    return nil
  end
  cache:set(domain, entry, conf.cache_ttl)
  return (cache:get(domain))
end

-- forget(domain, typ): drops the name from this worker's caches of typ (the others within the
-- cache TTLs); nothing for a key type that is not configured.
function _M.forget(domain, typ)
  if caches[typ] then
    caches[typ]:delete(domain)
    negatives[typ]:delete(domain)
  end
end

-- cache_state(domain, typ): what this worker's caches hold for a name: "cached",
-- "not_in_store" or "no".
function _M.cache_state(domain, typ)
  local cache = caches[typ]
  if not cache then
    return "no"
  end
  local value = cache:get(domain)
  if value ~= nil and value ~= ngx_null then
    return "cached"
  end
  if negatives[typ]:get(domain) ~= nil then
    return "not_in_store"
  end
  return "no"
end

-- native(sni, domain): from the next connection on, this server block's cached names skip the
-- Lua phase; a failure turns native serving off in this worker (logged once), never raises.
function _M.native(sni, domain)
  if not native_ok then
    return
  end
  local ok, nerr = attach_native()
  if not ok then
    native_ok = false
    log(ngx.WARN, "native serving is off, handshakes stay in Lua: ", nerr)
  elseif domain ~= sni then
    certcache.serve_alias(sni, domain, state.config.cache_size)
  end
end

return _M
