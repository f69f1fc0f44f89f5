-- What the store holds: the facts of each stored certificate (name, key type, issuer, serial,
-- dates, renewal due point) for the admin API (resty.acme.admin) and the metrics gauges.
-- What metrics need is parsed once per worker and stored value (keyed by the value's MD5): the
-- second scrape of a store of 10^5 names reads the store but parses nothing.
local core = require("resty.acme.core")
local renewal = require("resty.acme.renewal")
local backoff = require("resty.acme.backoff")
local keys = require("resty.acme.autossl.keys")
local cjson = require("cjson.safe")

local ngx = ngx
local ngx_md5_bin = ngx.md5_bin
local ipairs = ipairs
local setmetatable = setmetatable
local tostring = tostring
local type = type
local gsub = string.gsub
local sub = string.sub
local tonumber = tonumber

local _M = { _VERSION = "0.1.0" }

local json = cjson.new()

-- md5(stored value) .. threshold -> { not_after, due_at, issuer_cn } or { error }: what the
-- metrics and the list filters need, about 150 bytes a certificate (15 MB per worker for 10^5
-- names); the full facts of a page are parsed per request.
local brief_cache = {}
local brief_count = 0
local BRIEF_MAX = 200000

-- "domain:<type>:<name>" -> type, name
_M.split_key = keys.parse_domain

local function parse(raw, threshold)
  local entry = json.decode(raw)
  if type(entry) ~= "table" or type(entry.cert) ~= "string" or type(entry.pkey) ~= "string" then
    return { error = "stored entry has no cert or pkey" }
  end
  local info, err = core.cert_parse(entry.cert)
  if not info then
    return { error = "unparsable certificate: " .. tostring(err) }
  end
  local leaf = info[1]
  local due_at = renewal.due_at(entry, threshold)
  local sans = setmetatable({}, cjson.array_mt)
  for i, n in ipairs(leaf.sans or {}) do
    sans[i] = n
  end
  return {
    domain = entry.domain,
    updated = entry.updated,
    not_before = leaf.not_before,
    not_after = leaf.not_after,
    issuer = leaf.issuer,
    issuer_cn = leaf.issuer_cn,
    serial = leaf.serial,
    sans = sans,
    key_type = leaf.key_type,
    fingerprint_sha256 = leaf.fingerprint_sha256,
    renewal_due_at = due_at,
  }
end

local function read(storage, key)
  local raw, err = storage:get(key)
  if err then
    return nil, "cannot read the store: " .. tostring(err)
  end
  if raw ~= nil and type(raw) ~= "string" then
    return nil, "stored value is not a string"
  end
  return raw
end

-- facts(storage, key, threshold, now): the facts of one stored entry (parsed now), or nil
-- when the key is absent; a store error or an unreadable entry gives { error = }.
function _M.facts(storage, key, threshold, now)
  local typ, name = _M.split_key(key)
  local raw, err = read(storage, key)
  if err then
    return { name = name, type = typ, error = err }
  end
  if raw == nil then
    return nil
  end
  local out = parse(raw, threshold)
  out.name, out.type = name, typ
  if out.not_after then
    out.expires_in = out.not_after - now
    out.renewal_due = out.renewal_due_at ~= nil and now >= out.renewal_due_at
  end
  return out
end

-- brief(storage, key, threshold): { not_after =, due_at =, issuer_cn = } or { error = }, or
-- nil when absent; parsed once per worker and stored value.
function _M.brief(storage, key, threshold)
  local raw, err = read(storage, key)
  if err then
    return { error = err }
  end
  if raw == nil then
    return nil
  end
  local digest = ngx_md5_bin(raw) .. threshold
  local b = brief_cache[digest]
  if not b then
    local p = parse(raw, threshold)
    b = p.error and { error = p.error }
      or { not_after = p.not_after, due_at = p.renewal_due_at, issuer_cn = p.issuer_cn or p.issuer }
    if brief_count >= BRIEF_MAX then
      brief_cache, brief_count = {}, 0
    end
    brief_cache[digest] = b
    brief_count = brief_count + 1
  end
  return b
end

local function label(v)
  return (gsub(gsub(gsub(tostring(v), "\\", "\\\\"), '"', '\\"'), "\n", "\\n"))
end

local function days_band(left)
  if left <= 0 then
    return "expired"
  elseif left < 86400 then
    return "0-1"
  elseif left < 7 * 86400 then
    return "1-7"
  elseif left < 30 * 86400 then
    return "7-30"
  end
  return "30+"
end

-- gauges(storage, threshold, now): the store's gauges for resty.acme.metrics.render, and
-- their help texts. Lists the store (and every failure record) once.
function _M.gauges(storage, threshold, now)
  local g = {}
  local listed = storage:list(keys.DOMAIN) or {}
  for _, b in ipairs({ "expired", "0-1", "1-7", "7-30", "30+" }) do
    g['acme_certificates_by_days_left{days="' .. b .. '"}'] = 0
  end
  g["acme_renewal_lag_max_seconds"] = 0
  for _, key in ipairs(listed) do
    local f = _M.brief(storage, key, threshold)
    local typ, name = _M.split_key(key)
    if f and f.not_after and typ then
      local id = 'name="' .. label(name) .. '",type="' .. label(typ) .. '"'
      g["acme_certificate_expiry_timestamp_seconds{" .. id .. "}"] = f.not_after
      local k = 'acme_certificates{type="' .. label(typ) .. '"}'
      g[k] = (g[k] or 0) + 1
      k = 'acme_certificates_by_issuer{issuer="' .. label(f.issuer_cn or "") .. '"}'
      g[k] = (g[k] or 0) + 1
      k = 'acme_certificates_by_days_left{days="' .. days_band(f.not_after - now) .. '"}'
      g[k] = g[k] + 1
      if f.due_at and now > f.due_at then
        local lag = now - f.due_at
        g["acme_renewal_lag_seconds{" .. id .. "}"] = lag
        if lag > g["acme_renewal_lag_max_seconds"] then
          g["acme_renewal_lag_max_seconds"] = lag
        end
      end
    end
  end
  local failing, cooling = 0, 0
  for _, key in ipairs(storage:list(keys.FAILED_ATTEMPTS) or {}) do
    if (tonumber((storage:get(key))) or 0) > 0 then
      failing = failing + 1
      local name = sub(key, #keys.FAILED_ATTEMPTS + 1)
      -- resty.acme.backoff's next try, or a failure_lock lua-resty-acme left behind
      local until_t = backoff.until_any(storage, name)
      if (until_t and until_t > now) or storage:get(keys.FAILURE_LOCK .. name) then
        cooling = cooling + 1
      end
    end
  end
  g['acme_backoff_names{state="failing"}'] = failing
  g['acme_backoff_names{state="cooloff"}'] = cooling
  return g, _M.GAUGE_HELP
end

_M.GAUGE_HELP = {
  acme_certificate_expiry_timestamp_seconds = "not_after of each stored certificate",
  acme_certificates = "stored certificates, by key type",
  acme_certificates_by_issuer = "stored certificates, by the common name of their issuer",
  acme_certificates_by_days_left = "stored certificates, by days left before not_after",
  acme_renewal_lag_seconds = "seconds a stored certificate is past its renewal due point",
  acme_renewal_lag_max_seconds = "the largest acme_renewal_lag_seconds (0: none is late)",
  acme_backoff_names = "names whose last order failed (failing) and those in cooloff now",
}

-- The stored raw entry of a key, decoded ({ cert =, pkey =, ... }), or nil, err.
function _M.entry(storage, key)
  local raw, err = storage:get(key)
  if err then
    return nil, err
  end
  if type(raw) ~= "string" then
    return nil, nil
  end
  local entry = json.decode(raw)
  if type(entry) ~= "table" or type(entry.cert) ~= "string" then
    return nil, "stored entry has no cert"
  end
  return entry
end

return _M
