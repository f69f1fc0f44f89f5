-- Ordering one certificate: the update lock, the cooloff and budget checks, the re-check of the
-- store under the lock, the order, storing it, and the outcome (counters, backoff, events).
local account = require("resty.acme.autossl.account")
local backoff = require("resty.acme.backoff")
local budget = require("resty.acme.budget")
local core = require("resty.acme.core")
local events = require("resty.acme.events")
local issuers = require("resty.acme.issuers")
local lease = require("resty.acme.lease")
local keys = require("resty.acme.autossl.keys")
local metrics = require("resty.acme.metrics")
local names = require("resty.acme.autossl.names")
local ondemand = require("resty.acme.ondemand")
local renewal = require("resty.acme.renewal")
local schedule = require("resty.acme.autossl.schedule")
local state = require("resty.acme.autossl.state")
local stored = require("resty.acme.autossl.entry")
local util = require("resty.acme.util")
local cjson = require("cjson.safe")

local ngx = ngx
local ngx_sleep = ngx.sleep
local ngx_md5_bin = ngx.md5_bin
local now = state.now
local log = util.log
local pcall = pcall
local math_floor = math.floor
local tonumber = tonumber
local tostring = tostring
local type = type
local find = string.find
local sub = string.sub

local _M = { _VERSION = "0.16.0" }

local json = cjson.new()

-- failed_attempts: as the original keeps it; when to try again is resty.acme.backoff's (by
-- cause, per name and key type, in storage).
local function record_result(domain, err, typ, fail, issuer)
  local storage = state.storage
  local key = keys.FAILED_ATTEMPTS .. domain
  if not err then
    storage:set(key, 0)
  else
    storage:set(key, (tonumber((storage:get(key))) or 0) + 1)
  end
  backoff.record(storage, domain, typ, err, fail, issuer)
end

local function domain_key_for(typ, renew, existing)
  if renew and existing and existing.pkey then
    return existing.pkey
  end
  if state.domain_keys[typ] then
    return state.domain_keys[typ]
  end
  local key, err
  if typ == "rsa" then
    key, err = util.generate_key(4096, "RSA")
  elseif typ == "ecc" then
    key, err = util.generate_key(nil, "EC", "prime256v1")
  else
    return nil, "unknown key type: " .. tostring(typ)
  end
  if not key then
    return nil, err
  end
  return key:to_pem()
end

-- A stored entry that needs no order: present, parsable, and not due by the renewal rule
-- (resty.acme.renewal): whoever holds the lock never orders what was just issued.
local function still_good(raw)
  local entry = raw and stored.parse(raw)
  if not entry then
    return nil
  end
  local due_at = renewal.due_at(entry, state.config.renew_threshold)
  if not due_at or now() >= due_at then
    return nil, entry
  end
  -- what the handshakes could not be served (e.g. a key of another certificate) is ordered anew
  if not stored.certkey(entry.cert, entry.pkey, ngx_md5_bin(raw)) then
    return nil, entry
  end
  return entry, entry
end

local function store_entry(key, value)
  local err
  for attempt = 1, 3 do
    err = state.storage:set(key, value)
    if not err then
      return nil
    end
    ngx_sleep(0.2 * attempt)
  end
  return err
end

-- The ACME profile to ask for: `profile` (a name, or a function of the domain), else the
-- `profile` field of what domain_whitelist_callback returned for it, else `ip_profile` for
-- IP addresses (the CA may issue those under one profile only); nil lets the client's own
-- `profile` (or the CA's default) decide. The client checks it against the directory.
local function profile_for(domain)
  local conf = state.config
  local p = conf.profile
  if type(p) == "function" then
    local ok, res = pcall(p, domain)
    if not ok then
      return nil, "profile function failed for " .. domain .. ": " .. tostring(res)
    end
    p = res
  end
  if p == nil and conf.domain_whitelist_callback then
    local ok, res = pcall(conf.domain_whitelist_callback, domain, true)
    if ok and type(res) == "table" then
      p = res.profile
    end
  end
  if p == nil and conf.ip_profile and (find(domain, ":", 1, true)
      or find(domain, "^%d+%.%d+%.%d+%.%d+$")) then
    p = conf.ip_profile
  end
  if p ~= nil and type(p) ~= "string" then
    return nil, "profile for " .. domain .. " must be a string, got " .. type(p)
  end
  return p
end

local function do_update(data, domain, typ, lock)
  local storage = state.storage
  local key = keys.domain(typ, domain)
  local raw = storage:get(key)
  local good, existing = still_good(raw)
  -- Someone (another worker, another node) finished while we waited for the lock: the entry
  -- is fresh, or, for a renewal, no longer the certificate that was found due.
  local done_elsewhere = good
  if data.renew and data.fingerprint then
    local info = existing and core.cert_parse(existing.cert)
    done_elsewhere = not info or info[1].fingerprint_sha256 ~= data.fingerprint
  end
  if done_elsewhere then
    log(ngx.INFO, "certificate for ", domain, " (", typ, ") is already in the store")
    return nil, true
  end

  -- a failure before any order (directory, nonce, account) keeps the CA's problem type
  local ok, err, efail = issuers.ensure(data.issuer, account.ensure_client,
    account.load_account_key_storage)
  if not ok then
    return err, nil, efail
  end
  -- the CA's order budget (resty.acme.budget): beyond it the name waits in the queue
  if not budget.admit(storage, domain, typ, data, issuers.uri(data.issuer)) then
    return nil, true
  end

  local pkey, kerr = domain_key_for(typ, data.renew, existing)
  if not pkey then
    return kerr
  end

  local sans = { domain }
  local field_domain = domain
  if state.config.wildcard_domain_in_san and sub(domain, 1, 2) == "*." then
    field_domain = sub(domain, 3)
    sans = { field_domain, domain }
  end

  local profile, prerr = profile_for(domain)
  if prerr then
    return prerr
  end
  log(ngx.INFO, "ordering ", typ, " certificate for ", domain, profile and (" (profile " .. profile .. ")") or "")
  local t0 = now()
  local opts = { replaces = data.replaces, profile = profile }
  local cert, oerr, ofail
  local cl = issuers.client(data.issuer) or state.client
  if sans[2] then
    cert, oerr, ofail = cl:order_certificate(pkey, sans[1], sans[2], opts)
  else
    cert, oerr, ofail = cl:order_certificate(pkey, sans[1], opts)
  end
  if not cert then
    log(ngx.ERR, "failed to order ", typ, " certificate for ", domain, ": ", oerr)
    return oerr, nil, ofail
  end

  -- the lock lost (a store that stopped answering, a stalled worker): another order may have
  -- stored a newer certificate meanwhile, which must not be overwritten; whoever holds it, a
  -- certificate that changed in the store during the order is left as it is
  local lost = not lock:confirm()
  local now_raw, nerr = storage:get(key)
  if nerr or now_raw ~= raw then
    log(ngx.WARN, lost and ("lock of " .. domain .. " was lost and ") or "",
      "the stored ", typ, " certificate for ", domain, " changed during the order",
      nerr and (" (" .. tostring(nerr) .. ")") or "", ": the new one is not stored")
    return nil, true
  end
  if lost then
    log(ngx.WARN, "lock of ", domain, " was lost during the order; the store is unchanged")
  end

  local value = json.encode({
    domain = field_domain,
    pkey = pkey,
    cert = cert,
    type = typ,
    updated = now(),
    issuer = issuers.record_uri(data.issuer), -- a field lua-resty-acme ignores
  })
  local serr = store_entry(key, value)
  if serr then
    log(ngx.ERR, "failed to store certificate for ", domain, ": ", serr)
    return serr
  end
  log(ngx.INFO, "stored ", typ, " certificate for ", domain, " in ", math_floor((now() - t0) * 1000) / 1000, "s")
  metrics.observe("acme_issue_duration_seconds", 'type="' .. typ .. '"', now() - t0)
  -- the renewal of what was just stored, even if no pass is due before it (short lifetimes)
  local due_at = renewal.due_at({ cert = cert, updated = now() }, state.config.renew_threshold)
  if due_at then
    -- with ARI the next pass asks the CA's window of the new certificate
    schedule.note(key, state.config.ari and now() or due_at)
  end
  -- This worker serves it at once; other workers within negative_cache_ttl (new) or cache_ttl.
  local parsed = stored.certkey(cert, pkey, ngx_md5_bin(value))
  if parsed and state.caches[typ] then
    state.caches[typ]:set(domain, parsed, state.config.cache_ttl)
    -- and replaces what the node's shared cache held: a renewal reaches its workers at once
    local shared = state.shared_cache
    if shared then
      local shared_ok, sherr = shared:share(state.caches[typ], typ, domain,
        state.config.cache_ttl)
      if not shared_ok then
        log(ngx.WARN, "cannot share the certificate of ", domain, ": ", sherr)
      end
    end
  end
  return nil
end

-- update_cert(data): err (a string) or nil; nil also when it decided to do nothing (cooling
-- off, ordered elsewhere, already in the store, beyond the budget). An error inside the order
-- is returned as "unexpected error: ..." and the lock is always released; it raises only what
-- domain_whitelist_callback raises (COMPAT.md 2.1).
-- data = { domain =, type = "rsa"|"ecc", renew = bool } as the original takes it (its
-- `tries` is accepted and never read); beyond it: ctx (for the allow-list callback), replaces,
-- fingerprint (renewals).
function _M.update_cert(data)
  local domain = data.domain
  local typ = data.type or "rsa"
  if type(domain) ~= "string" then
    return "domain must be a string"
  end
  if not names.allowed(domain, true, data.ctx or { renewal = data.renew == true }) then
    return "cert update is not allowed for domain " .. domain
  end
  local storage = state.storage
  -- a renewal asks the CA that issued the certificate first
  local issuer, until_t = issuers.pick(storage, domain, typ, nil,
    data.renew and issuers.issued_by(storage, domain, typ) or nil)
  data.issuer = issuer
  if until_t then
    log(ngx.INFO, "previous attempt for ", domain, " failed, cooling off for another ",
      until_t == math.huge and "ever" or math_floor(until_t - now()), "s")
    return nil
  end

  -- a lease (resty.acme.lease): extended while the order runs, released only by us
  local lock, lerr = lease.hold(storage, keys.UPDATE_LOCK .. domain, state.config.update_lock_ttl)
  if not lock then
    metrics.add("acme_lock_busy_total")
    log(ngx.INFO, "update of ", domain, " is running elsewhere (", lerr, ")")
    return nil
  end

  local ok, err, skipped, fail = pcall(do_update, data, domain, typ, lock)
  if not ok then
    err = "unexpected error: " .. tostring(err)
  end
  if not skipped then
    record_result(domain, err, typ, fail, data.issuer)
    if err then
      ondemand.note_failure(storage, domain, err)
    end
    metrics.add('acme_orders_total{type="' .. typ .. '",result="' ..
      (err and "failure" or "success") .. '"}')
    events.emit(err and "failed" or (data.renew and "renewed" or "issued"),
      { domain = domain, type = typ, error = err and tostring(err) or nil })
  end
  lock:release()
  return err
end

return _M
