-- When stored certificates are due for renewal: the lifetime rule (the core's acme::renewal:
-- min(renew_threshold, lifetime / 3), half the lifetime under 10 days, spread per certificate)
-- and the CA's renewal window (RFC 9773 ARI), shared by every worker and node through storage.
local core = require("resty.acme.core")
local util = require("resty.acme.util")
local keys = require("resty.acme.autossl.keys")
local cjson = require("cjson.safe")

local ngx = ngx
local log = util.log
local tonumber = tonumber
local tostring = tostring
local type = type
local math_max = math.max
local math_min = math.min
local math_ceil = math.ceil
local sub = string.sub

local _M = { _VERSION = "0.1.0" }

local json = cjson.new()

-- RFC 9773 §4.3: a client should not ask again before Retry-After; the CA's value is kept in
-- [60 s, 24 h] so that a missing, zero or huge value neither hammers the CA nor forgets it.
_M.RETRY_AFTER_MIN = 60
_M.RETRY_AFTER_MAX = 86400
_M.RETRY_AFTER_DEFAULT = 6 * 3600

-- Storage namespace of shared windows: lua-resty-acme lists only "domain:" and reads
-- "update_lock:", "account_key:" and "failure_lock:"; it never sees these keys.
_M.ARI_PREFIX = keys.ARI_WINDOW
_M.ARI_LOCK_PREFIX = keys.ARI_QUERY_LOCK

-- due_at(entry, threshold): the Unix time from which the stored entry is due, and its
-- notBefore and notAfter; nil, err for an unreadable certificate.
function _M.due_at(entry, threshold)
  local due, nb, na, err = core.cert_renewal_due(entry.cert, threshold, tonumber(entry.updated))
  if not due then
    return nil, err
  end
  return due, nb, na
end

-- Retry-After (an absolute time, as the core reports it) clamped to [60 s, 24 h] from now.
function _M.next_query(retry_after, now)
  local at = tonumber(retry_after) or (now + _M.RETRY_AFTER_DEFAULT)
  return math_min(math_max(at, now + _M.RETRY_AFTER_MIN), now + _M.RETRY_AFTER_MAX)
end

-- The renewal moment inside a window: uniform (from the fingerprint, so the same on every node)
-- in [start, end], but not before a third of the lifetime has passed: a CA whose window opens
-- at issuance (Pebble's does for short lifetimes) would otherwise have certificates re-ordered
-- seconds after they were issued.
local function moment(win, fp, not_before, not_after)
  local frac = (tonumber(sub(fp or "", 1, 8), 16) or 0) / 0xffffffff
  local lo = math_max(win.start, not_before + (not_after - not_before) / 3)
  local hi = math_max(win["end"], lo)
  return lo + frac * (hi - lo)
end

local function decode(raw)
  local w = type(raw) == "string" and json.decode(raw)
  if type(w) ~= "table" or type(w.next_query) ~= "number" then
    return nil
  end
  return w
end

-- window(storage, client, cert_pem, info, now): the CA's window for this certificate as
-- { start =, ["end"] =, cert_id =, explanation_url =, next_query =, error = }, or nil when
-- nobody knows it yet. Asked at most once per Retry-After for the whole cluster: the asker
-- holds a short lock, stores the answer (or the failure) with a TTL until the next query, and
-- every other worker and node reads it from storage (one read per certificate and pass; no
-- per-worker copy, so what the store says is what every worker acts on).
function _M.window(storage, client, cert_pem, info, now)
  local fp = info.fingerprint_sha256 or ""
  local key = _M.ARI_PREFIX .. fp
  local w = decode((storage:get(key)))
  if w and now < w.next_query then
    return w
  end
  local lerr = storage:add(_M.ARI_LOCK_PREFIX .. fp, tostring(now), 30)
  if lerr then
    return w -- another worker or node is asking (stale or nil meanwhile)
  end
  -- the asker before us may have stored its answer between our read and our lock
  local fresh = decode((storage:get(key)))
  if fresh and now < fresh.next_query then
    return fresh
  end
  local res, err = client:renewal_info(cert_pem)
  if res then
    w = {
      start = res.start,
      ["end"] = res["end"],
      cert_id = res.cert_id,
      explanation_url = res.explanation_url,
      next_query = _M.next_query(res.retry_after, now),
      asked = now,
    }
    if res.explanation_url then
      log(ngx.WARN, "renewal window for ", info.subject_cn or (info.sans and info.sans[1]) or "?",
        " has an explanation: ", res.explanation_url)
    end
  else
    if not err then
      storage:delete(_M.ARI_LOCK_PREFIX .. fp)
      return nil -- the CA offers no renewal information
    end
    log(ngx.WARN, "renewal information for ", info.subject_cn or (info.sans and info.sans[1]) or "?",
      ": ", err)
    w = { error = tostring(err), next_query = now + _M.RETRY_AFTER_MIN, asked = now }
  end
  local ttl = math_max(1, math_ceil(w.next_query - now))
  local serr = storage:set(key, json.encode(w), ttl)
  if serr then
    log(ngx.WARN, "cannot share the renewal window of ", fp, ": ", serr)
  end
  -- the lock is left to expire: whoever read "nothing" just before the answer was stored
  -- cannot take it and ask again
  return w
end

-- ari_due(w, fp, not_before, not_after, now): due, urgent, at. Urgent: the window ends in the
-- past (mass revocation, RFC 9773 §4.2 "renew immediately").
function _M.ari_due(w, fp, not_before, not_after, now)
  if not w or w.error or type(w.start) ~= "number" or type(w["end"]) ~= "number" then
    return false, false, nil
  end
  if w["end"] <= now then
    return true, true, w["end"]
  end
  local at = moment(w, fp, not_before, not_after)
  return now >= at, false, at
end

-- Shared window of a certificate for the admin view (no CA request).
function _M.shared_window(storage, fp)
  return decode((storage:get(_M.ARI_PREFIX .. fp)))
end

return _M
