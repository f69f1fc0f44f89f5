-- Automatic certificates for every allowed SNI, with lua-resty-acme's API, config keys, storage
-- keys and formats. Differences behind the same interface: one order per name and key type
-- however many handshakes and workers race (lock, then re-check the store), issued and renewed
-- certificates reach every worker within the cache TTLs without a reload, keys are generated on
-- a native thread, locks are always released, and a bad stored entry never aborts renewal.
local client = require("resty.acme.client")
local util = require("resty.acme.util")
local core = require("resty.acme.core")
local certcache = require("resty.acme.certcache")
local metrics = require("resty.acme.metrics")
local ondemand = require("resty.acme.ondemand")
local backoff = require("resty.acme.backoff")
local budget = require("resty.acme.budget")
local issuers = require("resty.acme.issuers")
local renewal = require("resty.acme.renewal")
local events = require("resty.acme.events")
local declared = require("resty.acme.declared")
local inventory = require("resty.acme.inventory")
local ssl = require("ngx.ssl")
local tls_cert = require("resty.acme.tls_cert")
local cjson = require("cjson.safe")
local ffi = require("ffi")

local ngx = ngx
local ngx_now = ngx.now
local ngx_sleep = ngx.sleep
local ngx_null = ngx.null
local ngx_timer_at = ngx.timer.at
local ngx_timer_every = ngx.timer.every
local ngx_worker_id = ngx.worker.id
local ngx_worker_count = ngx.worker.count
local ngx_worker_pid = ngx.worker.pid
local ngx_update_time = ngx.update_time
local ngx_md5_bin = ngx.md5_bin
local set_certkey = tls_cert.set_certkey
local attach_native = tls_cert.attach_native
local log = util.log
local ipairs = ipairs
local pairs = pairs
local pcall = pcall
local error = error
local io_open = io.open
local math_floor = math.floor
local math_random = math.random
local math_max = math.max
local math_min = math.min
local table_sort = table.sort
local require = require
local setmetatable = setmetatable
local tonumber = tonumber
local tostring = tostring
local type = type
local byte = string.byte
local find = string.find
local lower = string.lower
local sub = string.sub

local AUTOSSL = { _VERSION = "0.16.0" }


local default_config = {
  tos_accepted = false,
  staging = false,
  account_key_path = nil,
  account_email = nil,
  cache_size = 100,
  domain_key_paths = {},
  domain_key_types = { "rsa" },
  domain_whitelist = nil,
  domain_whitelist_callback = nil,
  failure_cooloff = 300,
  failure_cooloff_callback = nil,
  renew_threshold = 7 * 86400,
  renew_check_interval = 6 * 3600,
  -- Besides every renew_check_interval, a pass runs when the earliest stored certificate falls
  -- due, but not sooner than this after the last one.
  renew_min_interval = 30,
  storage_adapter = "shm",
  storage_config = { shm_name = "acme" },
  enabled_challenge_handlers = { "http-01" },
  challenge_start_delay = 0,
  blocking = false,
  enabled_delete_not_whitelisted_domain = false,
  dns_provider_accounts = {},
  wildcard_domain_in_san = false,
  -- Beyond the original: serve a name cached for every key type from OpenSSL's certificate
  -- callback, without entering ssl_certificate_by_lua (see README, "Native serving").
  native_serving = false,
  -- Beyond the original: how long a worker trusts its cached certificate before looking at the
  -- store again (renewals reach every worker within this), and how long "not in the store" is
  -- remembered (a new certificate reaches every worker within this).
  cache_ttl = 60,
  negative_cache_ttl = 1,
  -- How long a blocking handshake waits for an order that another worker or node runs.
  blocking_timeout = 60,
  -- Ask the CA when to renew (RFC 9773 ARI) where its directory offers renewalInfo; the
  -- renew_threshold still applies as a floor.
  ari = true,
  -- lua_shared_dict for the counters of serve_metrics(); "acme" is used when it exists.
  metrics_shm = "acme",
  -- Seconds an update lock lives (the original's fixed 300): a node that dies while ordering
  -- blocks the name at most this long.
  update_lock_ttl = 300,
  -- On-demand issuance that cannot be abused (README, "Allow-lists"; resty.acme.ondemand):
  -- an HTTP endpoint asked before the first order of a name (`?domain=NAME`, 200 allows),
  -- its answers cached in the `ask_shm` dict for ask_ttl / ask_negative_ttl seconds.
  ask = nil,
  ask_ttl = 3600,
  ask_negative_ttl = 300,
  ask_timeout = 3,
  ask_shm = "acme",
  -- { window = 3600, registered_domain = n, client = n, global = n }: new names per window.
  new_name_budget = nil,
  public_suffix_list = nil,
  -- background jobs for new names per worker; more wait for a later handshake
  max_pending_new = 64,
  -- fetch our own http-01 challenge URL before the CA is asked to validate it
  preflight_check = false,
  preflight_port = 80,
  preflight_timeout = 5,
  -- Names issued right after start and kept renewed without a handshake (resty.acme.declared):
  -- a list, or "domain_whitelist" for the exact entries of domain_whitelist.
  declared_names = nil,
  -- function(event, data) run in a timer for issued, renewed, failed, expiring and revoked
  -- (resty.acme.events); "expiring": a certificate due for renewal expires within this.
  events_callback = nil,
  events_expiring_within = 3 * 86400,
}

local STAGING_URI = "https://acme-staging-v02.api.letsencrypt.org/directory"
local RESERVED_PREFIXES = { "update_lock:", "domain:", "account_key:", "failure_lock:", "failed_attempts:" }

local json = cjson.new()

-- per-worker state
local caches = {}          -- key type -> resty.acme.certcache
-- key type -> certcache of "not in the store" entries only: a flood of unknown names must not
-- evict the certificates that are served
local negatives = {}
local whitelist_set = nil  -- exact names from domain_whitelist
local wildcard_suffixes = nil -- ".example.com" from "*.example.com" entries
local wildcard_names = nil  -- "*.example.com", same index: returned without a concatenation
local domain_keys = {}     -- key type -> PEM from domain_key_paths
local pending = {}         -- domain -> true while this worker has a background job for it
local native_ok = true     -- false once the native callback could not be attached
local account_ready = false
local quiet = {}           -- log reason -> { next = t, suppressed = n }

local function now()
  ngx_update_time()
  return ngx_now()
end

-- One line per reason per 10 s: a flood of bad handshakes must not flood the log.
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

-- A host name as a certificate can name it: LDH labels of 1..63, at most 253 bytes, no
-- trailing dot, not an IP literal. Anything else is never looked up or ordered.
local function valid_sni(name)
  local len = #name
  if len == 0 or len > 253 then
    return false
  end
  local label = 0         -- length of the current label
  local all_digits = true -- the current label is all digits
  for i = 1, len do
    local c = byte(name, i)
    if c == 46 then -- "."
      if label == 0 or byte(name, i - 1) == 45 then
        return false
      end
      label = 0
      all_digits = true
    elseif (c >= 97 and c <= 122) or (c >= 48 and c <= 57) or c == 45 then
      if label == 0 and c == 45 then
        return false
      end
      if c < 48 or c > 57 then
        all_digits = false
      end
      label = label + 1
      if label > 63 then
        return false
      end
    else
      return false
    end
  end
  -- a last label of only digits is an IPv4 literal, not a host name
  return label > 0 and byte(name, len) ~= 45 and not all_digits
end
AUTOSSL._valid_sni = valid_sni

local function stored_key(typ, domain)
  return "domain:" .. typ .. ":" .. domain
end

-- ctx (beyond the original): { renewal =, client_addr =, server_port =, sni = } handed to the
-- callback as its third argument.
function AUTOSSL.is_domain_whitelisted(domain, is_new_cert_needed, ctx)
  local conf = AUTOSSL.config
  local cb = conf.domain_whitelist_callback
  if cb then
    if cb(domain, is_new_cert_needed, ctx or { renewal = false }) then
      return domain
    end
    return false
  end
  local list = conf.domain_whitelist
  if not list then
    return domain
  end
  -- indexed, not only iterated: a metatable may decide (the original's own tests do that)
  if whitelist_set[domain] or list[domain] then
    return domain
  end
  local dlen = #domain
  for i, suffix in ipairs(wildcard_suffixes) do
    local from = dlen - #suffix + 1
    -- a plain find where the suffix would start: no substring per entry and handshake
    if from > 1 and find(domain, suffix, from, true) then
      return wildcard_names[i]
    end
  end
  return false
end

local function parse_entry(value)
  if type(value) ~= "string" then
    return nil, "stored value is not a string"
  end
  local entry = json.decode(value)
  if type(entry) ~= "table" then
    return nil, "stored value is not JSON"
  end
  if type(entry.cert) ~= "string" or type(entry.pkey) ~= "string" then
    return nil, "stored entry has no cert or pkey"
  end
  return entry
end

function AUTOSSL.get_certkey(domain, typ)
  if type(domain) ~= "string" then
    error("domain must be a string")
  end
  local value, err = AUTOSSL.storage:get(stored_key(typ or "rsa", domain))
  if err then
    return nil, err
  end
  if not value then
    return nil, nil
  end
  local entry = json.decode(value)
  if type(entry) ~= "table" then
    return nil, "malformed stored entry for " .. domain
  end
  return entry, nil
end

-- Parses a stored entry into what ngx.ssl needs, once per cache fill (OpenSSL 3.0 spends about
-- 0.5 ms of CPU on a chain and its key). The chain comes from the core: the leaf parsed, the
-- intermediates shared with every other chain of the same CA (a parsed certificate takes about
-- 5 KiB); what the core cannot read (e.g. TRUSTED CERTIFICATE blocks) goes through ngx.ssl.
local function parse_certkey(cert_pem, pkey_pem, digest)
  local e = certcache.new_certkey()
  local chain, err = core.cert_chain(cert_pem)
  if chain then
    e.cert = chain
  else
    local cert = ssl.parse_pem_cert(cert_pem)
    if not cert then
      return nil, "failed to parse certificate: " .. tostring(err)
    end
    e.cert = ffi.gc(cert, nil)
  end
  local pkey, kerr = ssl.parse_pem_priv_key(pkey_pem)
  if not pkey then
    return nil, "failed to parse private key: " .. tostring(kerr)
  end
  e.pkey = ffi.gc(pkey, nil)
  -- once per fill: a key of another certificate would fail every handshake of the name
  if tls_cert.leaf_matches_key(e.cert, e.pkey) == false then
    return nil, "the stored private key does not belong to the stored certificate"
  end
  ffi.copy(e.digest, digest, 16)
  return e
end

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

function AUTOSSL.get_cert_from_cache(domain, typ)
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

-- The cache, then the store; a failing store serves the stale entry rather than nothing. When
-- the TTL ran out and the store still holds the value the entry was parsed from (same MD5), the
-- entry is kept for another TTL: a few µs instead of parsing the chain and key again. What it
-- returns is the cache's view of the entry: use it before anything that may yield.
local function lookup(domain, typ)
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
  local conf = AUTOSSL.config
  -- may yield: what the cache handed out above is not used after it
  local raw, err = AUTOSSL.storage:get(stored_key(typ, domain))
  local entry, perr, digest
  if raw and not err then
    digest = type(raw) == "string" and ngx_md5_bin(raw)
    if digest and had_stale and cache:refresh(domain, digest, conf.cache_ttl) then
      return (cache:get(domain))
    end
    entry, perr = parse_entry(raw)
    if entry then
      entry, perr = parse_certkey(entry.cert, entry.pkey, digest)
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

local function release_lock(domain, token)
  local lock_key = "update_lock:" .. domain
  local holder = AUTOSSL.storage:get(lock_key)
  if holder == nil or holder == token then
    local err = AUTOSSL.storage:delete(lock_key)
    if err then
      log(ngx.WARN, "failed to release lock for ", domain, ": ", err)
    end
  end
end

local function ensure_account_key()
  if AUTOSSL.client.account_pkey then
    return true
  end
  local pem, err = AUTOSSL.load_account_key_storage()
  if not pem then
    return nil, err
  end
  local ok, serr = AUTOSSL.client:set_account_key(pem)
  if not ok then
    return nil, "failed to set account key: " .. tostring(serr)
  end
  return true
end

local function ensure_client()
  if account_ready then
    return true
  end
  local ok, err = ensure_account_key()
  if not ok then
    return nil, "error during acme init: " .. err
  end
  local act
  err, act = AUTOSSL.client:init()
  if err then
    return nil, "error during acme init: " .. err, act
  end
  local _, aerr, aact = AUTOSSL.client:new_account()
  if aerr then
    return nil, "error during acme login: " .. aerr, aact
  end
  account_ready = true
  AUTOSSL.client_initialized = true
  require("resty.acme.dns_persist_log").announce(AUTOSSL.client, AUTOSSL.config)
  return true
end

-- failed_attempts: as the original keeps it; when to try again is resty.acme.backoff's (by
-- cause, per name and key type, in storage).
local function record_result(domain, err, typ, fail, issuer)
  local storage = AUTOSSL.storage
  local key = "failed_attempts:" .. domain
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
  if domain_keys[typ] then
    return domain_keys[typ]
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
  local entry = raw and parse_entry(raw)
  if not entry then
    return nil
  end
  local due_at = renewal.due_at(entry, AUTOSSL.config.renew_threshold)
  if not due_at or now() >= due_at then
    return nil, entry
  end
  -- what the handshakes could not be served (e.g. a key of another certificate) is ordered anew
  if not parse_certkey(entry.cert, entry.pkey, ngx_md5_bin(raw)) then
    return nil, entry
  end
  return entry, entry
end

local function store_entry(key, value)
  local err
  for attempt = 1, 3 do
    err = AUTOSSL.storage:set(key, value)
    if not err then
      return nil
    end
    ngx_sleep(0.2 * attempt)
  end
  return err
end

local schedule_wake -- (below) the renewal pass that runs when a certificate falls due

-- The ACME profile to ask for: `profile` (a name, or a function of the domain), else the
-- `profile` field of what domain_whitelist_callback returned for it, else `ip_profile` for
-- IP addresses (the CA may issue those under one profile only); nil lets the client's own
-- `profile` (or the CA's default) decide. The client checks it against the directory.
local function profile_for(domain)
  local conf = AUTOSSL.config
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

local function do_update(data, domain, typ)
  local storage = AUTOSSL.storage
  local key = stored_key(typ, domain)
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
  local ok, err, efail = issuers.ensure(data.issuer, ensure_client, AUTOSSL.load_account_key_storage)
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

  local names = { domain }
  local field_domain = domain
  if AUTOSSL.config.wildcard_domain_in_san and sub(domain, 1, 2) == "*." then
    field_domain = sub(domain, 3)
    names = { field_domain, domain }
  end

  local profile, prerr = profile_for(domain)
  if prerr then
    return prerr
  end
  log(ngx.INFO, "ordering ", typ, " certificate for ", domain, profile and (" (profile " .. profile .. ")") or "")
  local t0 = now()
  local opts = { replaces = data.replaces, profile = profile }
  local cert, oerr, ofail
  local cl = issuers.client(data.issuer) or AUTOSSL.client
  if names[2] then
    cert, oerr, ofail = cl:order_certificate(pkey, names[1], names[2], opts)
  else
    cert, oerr, ofail = cl:order_certificate(pkey, names[1], opts)
  end
  if not cert then
    log(ngx.ERR, "failed to order ", typ, " certificate for ", domain, ": ", oerr)
    return oerr, nil, ofail
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
  schedule_wake((renewal.due_at({ cert = cert, updated = now() }, AUTOSSL.config.renew_threshold)))
  -- This worker serves it at once; other workers within negative_cache_ttl (new) or cache_ttl.
  local parsed = parse_certkey(cert, pkey, ngx_md5_bin(value))
  if parsed and caches[typ] then
    caches[typ]:set(domain, parsed, AUTOSSL.config.cache_ttl)
  end
  return nil
end

-- update_cert({ domain =, type = "rsa"|"ecc", renew = bool }): err or nil.
function AUTOSSL.update_cert(data)
  local domain = data.domain
  local typ = data.type or "rsa"
  if type(domain) ~= "string" then
    return "domain must be a string"
  end
  if not AUTOSSL.is_domain_whitelisted(domain, true, data.ctx or { renewal = data.renew == true }) then
    return "cert update is not allowed for domain " .. domain
  end
  local storage = AUTOSSL.storage
  -- a renewal asks the CA that issued the certificate first
  local issuer, until_t = issuers.pick(storage, domain, typ, nil,
    data.renew and issuers.issued_by(storage, domain, typ) or nil)
  data.issuer = issuer
  if until_t then
    log(ngx.INFO, "previous attempt for ", domain, " failed, cooling off for another ",
      until_t == math.huge and "ever" or math_floor(until_t - now()), "s")
    return nil
  end

  -- unique across nodes too (every nginx starts math.random from the same seed)
  local token = tostring(ngx_worker_pid()) .. ":" .. tostring(ngx_worker_id() or 0) .. ":"
    .. tostring(now()) .. ":" .. tostring(math_random(1e9))
  local lerr = storage:add("update_lock:" .. domain, token, AUTOSSL.config.update_lock_ttl)
  if lerr then
    metrics.add("acme_lock_busy_total")
    log(ngx.INFO, "update of ", domain, " is running elsewhere (", lerr, ")")
    return nil
  end

  local ok, err, skipped, fail = pcall(do_update, data, domain, typ)
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
  release_lock(domain, token)
  return err
end

-- One stored entry of a renewal pass (`ari()`: whether to ask the CA's window): a candidate
-- { name, typ, replaces, fingerprint, urgent, due_at, not_after } when due, else nil and the
-- time it becomes due (for the wake timer).
local function evaluate(key, ari)
  local storage = AUTOSSL.storage
  local conf = AUTOSSL.config
  local raw, err = storage:get(key)
  if err or not raw then
    log(ngx.WARN, "renewal: cannot read ", key, ": ", err or "missing")
    return
  end
  local entry, perr = parse_entry(raw)
  if not entry then
    log(ngx.WARN, "renewal: skipping ", key, ": ", perr)
    return
  end
  -- The name is the key's, not the entry's `domain` field: the original renewed wildcard
  -- entries stored with wildcard_domain_in_san under the bare name and never the wildcard.
  local typ, name = key:match("^domain:([^:]+):(.+)$")
  if not typ then
    return
  end
  if not AUTOSSL.is_domain_whitelisted(name, true, { renewal = true }) then
    if conf.enabled_delete_not_whitelisted_domain then
      log(ngx.INFO, "renewal: deleting ", key, ": no longer allowed")
      storage:delete(key)
    else
      log(ngx.INFO, "renewal: skipping ", key, ": not allowed")
    end
    return
  end
  -- The validity alone first: parsing a certificate costs OpenSSL 3.0 about 90 µs, reading
  -- the dates a few, and most entries of a pass are neither due nor asked about (ARI).
  local due_at, not_before, not_after = renewal.due_at(entry, conf.renew_threshold)
  if not due_at then
    log(ngx.WARN, "renewal: skipping ", key, ": ", not_before)
    return
  end
  local t = now()
  local due = t >= due_at
  local use_ari = ari()
  if not due and not use_ari then
    return nil, due_at
  end
  local info, cerr = core.cert_parse(entry.cert)
  if not info then
    log(ngx.WARN, "renewal: skipping ", key, ": ", cerr)
    return
  end
  local replaces, urgent
  if use_ari then
    local fp = info[1].fingerprint_sha256
    local win = renewal.window(storage, AUTOSSL.client, entry.cert, info[1], t)
    local ari_due, ari_urgent, at = renewal.ari_due(win, fp, not_before, not_after, t)
    if ari_urgent and not due then
      log(ngx.WARN, "renewal: the CA's renewal window for ", name, " ended in the past",
        win.explanation_url and (" (" .. win.explanation_url .. ")") or "", ", renewing at once")
    end
    due = due or ari_due
    urgent = ari_urgent
    replaces = win and win.cert_id or core.ari_cert_id(entry.cert)
    if at and at < due_at then
      due_at = at
    end
  end
  if not due then
    return nil, due_at
  end
  return { name = name, typ = typ, replaces = replaces, urgent = urgent, due_at = due_at,
           not_after = info[1].not_after, fingerprint = info[1].fingerprint_sha256 }
end

local function renew_candidate(c)
  log(ngx.INFO, "renewing ", c.typ, " certificate for ", c.name, " (expires ", c.not_after, ")")
  metrics.add('acme_renewals_total{type="' .. c.typ .. '"}')
  if c.not_after - now() <= AUTOSSL.config.events_expiring_within then
    events.emit("expiring", { domain = c.name, type = c.typ, not_after = c.not_after },
      AUTOSSL.storage)
  end
  local uerr = AUTOSSL.update_cert({ domain = c.name, renew = true, tries = 0, type = c.typ,
                                     replaces = c.replaces, fingerprint = c.fingerprint })
  if uerr then
    log(ngx.ERR, "renewal of ", c.name, " failed: ", uerr)
  end
end

-- Whether this renewal pass asks the CA for renewal windows: configured, and the CA's
-- directory offers renewalInfo (the directory is fetched at most once per pass).
local function ari_available()
  if not AUTOSSL.config.ari then
    return false
  end
  local ok, err = ensure_client()
  if not ok then
    log(ngx.WARN, "renewal: no renewal information this pass: ", err)
    return false
  end
  local dir = AUTOSSL.client.directory
  return dir ~= nil and dir.renewalInfo ~= nil
end

local wake_at -- this worker's next early pass (the timer that keeps up with short lifetimes)
local run_pass

local function on_wake(premature, at)
  if premature or at ~= wake_at then
    return
  end
  wake_at = nil
  run_pass()
end

-- Wake at the earliest due time when it comes before the next periodic pass, never sooner
-- than renew_min_interval from now (a store full of due certificates does not spin).
function schedule_wake(earliest)
  local conf = AUTOSSL.config
  if not earliest then
    return
  end
  local t = now()
  local at = math_max(earliest, t + conf.renew_min_interval)
  if at >= t + conf.renew_check_interval or (wake_at and wake_at <= at and wake_at > t) then
    return
  end
  wake_at = at
  local ok, err = ngx_timer_at(at - t, on_wake, at)
  if not ok then
    wake_at = nil
    log(ngx.WARN, "renewal: cannot schedule the next check: ", err)
  end
end

-- A renewal pass: every stored entry is evaluated, then the due ones are renewed, those whose
-- CA window ended in the past (revocation) first, then by due time.
function run_pass()
  -- declared names first: the first pass after start issues them
  local dok, missing = pcall(declared.issue, AUTOSSL)
  if not dok then
    log(ngx.ERR, "declared names: ", missing)
  elseif missing > 0 then
    schedule_wake(now())
  end
  local keys, err = AUTOSSL.storage:list("domain:")
  if err then
    log(ngx.ERR, "renewal: cannot list certificates: ", err)
    return
  end
  -- the client (and its account) only once an entry needs the CA's window
  local ari_state
  local function ari()
    if ari_state == nil then
      ari_state = ari_available()
    end
    return ari_state
  end
  local due, earliest = {}, nil
  for _, key in ipairs(keys) do
    local ok, c, next_at = pcall(evaluate, key, ari)
    if not ok then
      log(ngx.ERR, "renewal: ", key, ": ", c)
    elseif c then
      due[#due + 1] = c
    elseif next_at then
      earliest = earliest and math_min(earliest, next_at) or next_at
    end
  end
  table_sort(due, function(x, y)
    if x.urgent ~= y.urgent then
      return x.urgent == true
    end
    return x.due_at < y.due_at
  end)
  for _, c in ipairs(due) do
    local ok, perr = pcall(renew_candidate, c)
    if not ok then
      log(ngx.ERR, "renewal: ", c.name, ": ", perr)
    end
  end
  if #due > 0 then
    -- what failed (cooloff, CA error) is looked at again soon
    earliest = now()
  end
  schedule_wake(earliest)
end

function AUTOSSL.check_renew(premature)
  if premature then
    return
  end
  local interval = AUTOSSL.config.renew_check_interval
  local count = ngx_worker_count()
  if count > 1 and math_floor(ngx_now() / interval) % count ~= ngx_worker_id() then
    return
  end
  run_pass()
end

local function background_update(premature, domain, types, ctx)
  if not premature and ondemand.admit(AUTOSSL.storage, domain, ctx) then
    for _, typ in ipairs(types) do
      local err = AUTOSSL.update_cert({ domain = domain, renew = false, tries = 0, type = typ,
                                        ctx = ctx })
      if err then
        log(ngx.ERR, "failed to update ", typ, " certificate for ", domain, ": ", err)
      end
    end
  end
  ondemand.done()
  pending[domain] = nil
end

-- Blocking mode: order inline, or wait while another worker or node orders.
local function blocking_update(domain, typ, ctx)
  local deadline = now() + AUTOSSL.config.blocking_timeout
  local admitted, why = ondemand.admit(AUTOSSL.storage, domain, ctx)
  if admitted then
    local err = AUTOSSL.update_cert({ domain = domain, renew = false, tries = 0, type = typ,
                                      ctx = ctx })
    if err then
      log(ngx.ERR, "failed to update ", typ, " certificate for ", domain, ": ", err)
      return nil
    end
  elseif why ~= "ordering_elsewhere" then
    return nil
  end
  local cache = caches[typ]
  while true do
    cache:delete(domain)
    negatives[typ]:delete(domain)
    local entry = lookup(domain, typ)
    if entry then
      return entry
    end
    local lock = AUTOSSL.storage:get("update_lock:" .. domain)
    if not lock or now() >= deadline then
      return nil
    end
    ngx_sleep(0.2)
  end
end

-- opts (beyond the original, optional): { native_serving = bool } overrides the config for the
-- server block this is called from.
function AUTOSSL.ssl_certificate(opts)
  local name, err = ssl.server_name()
  if not name then
    metrics.inc('acme_handshakes_total{result="no_sni"}')
    log_quiet(ngx.INFO, "no SNI in the client hello, serving the fallback certificate", err or "")
    return
  end
  local sni = lower(name)
  local domain = sni
  local conf = AUTOSSL.config

  local types = conf.domain_key_types
  local any = false
  if not valid_sni(domain) then
    metrics.inc('acme_handshakes_total{result="invalid_name"}')
    log_quiet(ngx.INFO, "invalid server name, serving the fallback certificate:", domain:sub(1, 64))
    return
  end
  local ctx = conf.domain_whitelist_callback and ondemand.handshake_ctx(name)
  local allowed = AUTOSSL.is_domain_whitelisted(domain, false, ctx)
  if not allowed then
    metrics.inc('acme_handshakes_total{result="refused"}')
    log_quiet(ngx.INFO, "server name not allowed, serving the fallback certificate:", domain)
    return
  end
  if allowed ~= domain and AUTOSSL.dns_01_enabled then
    -- a wildcard certificate covers one label only (RFC 6125 §6.4.3)
    local base = sub(allowed, 2)
    if not find(sub(domain, 1, #domain - #base), ".", 1, true) then
      domain = allowed
    end
  end

  local missing
  for _, typ in ipairs(types) do
    local entry = lookup(domain, typ)
    if not entry and conf.blocking then
      ctx = ctx or ondemand.handshake_ctx(name)
      entry = blocking_update(domain, typ, ctx)
    end
    if entry then
      local ok, ierr = set_certkey(entry.cert, entry.pkey, not any)
      if ok then
        any = true
      else
        log_quiet(ngx.ERR, "cannot install the cached certificate:", domain .. ": " .. tostring(ierr))
      end
    elseif not conf.blocking then
      missing = missing or {}
      missing[#missing + 1] = typ
    end
  end

  metrics.inc(any and 'acme_handshakes_total{result="served"}'
    or 'acme_handshakes_total{result="fallback"}')

  local native = conf.native_serving
  if opts and opts.native_serving ~= nil then
    native = opts.native_serving
  end
  if any and native and native_ok then
    -- from the next connection on, this server block's cached names skip the Lua phase
    local ok, nerr = attach_native()
    if not ok then
      native_ok = false
      log(ngx.WARN, "native serving is off, handshakes stay in Lua: ", nerr)
    elseif domain ~= sni then
      certcache.serve_alias(sni, domain, conf.cache_size)
    end
  end

  if missing and not pending[domain] and ondemand.screen(domain) then
    pending[domain] = true
    local ok, terr = ngx_timer_at(0, background_update, domain, missing,
      ctx or ondemand.handshake_ctx(name))
    if not ok then
      ondemand.done()
      pending[domain] = nil
      log(ngx.ERR, "failed to schedule certificate update for ", domain, ": ", terr)
    end
  end
end

function AUTOSSL.serve_http_challenge()
  return AUTOSSL.client:serve_http_challenge()
end

function AUTOSSL.serve_tls_alpn_challenge()
  return AUTOSSL.client:serve_tls_alpn_challenge()
end

-- For resty.acme.admin: what this worker's caches hold for a name ("cached", "not_in_store",
-- or "no"), and dropping it from them (this worker only; the others within the cache TTLs).
function AUTOSSL._cache_state(domain, typ)
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

function AUTOSSL._forget(domain, typ)
  if caches[typ] then
    caches[typ]:delete(domain)
    negatives[typ]:delete(domain)
  end
end

AUTOSSL._log = log
AUTOSSL._ensure_client = function()
  return ensure_client()
end

-- Admin API (content phase; resty.acme.admin): opts { token = } requires a bearer token.
-- Protect the location (allow/deny) too: it names every certificate this server holds.
function AUTOSSL.serve_admin(opts)
  return require("resty.acme.admin").serve(AUTOSSL, opts)
end

-- Prometheus metrics (content phase): the counters, and the store's gauges (the store is
-- listed on every scrape; each certificate is parsed once per worker).
function AUTOSSL.serve_metrics()
  local gauges, help = inventory.gauges(AUTOSSL.storage, AUTOSSL.config.renew_threshold, now())
  ngx.header["Content-Type"] = "text/plain; version=0.0.4"
  ngx.print(metrics.render(gauges, help))
  return ngx.exit(ngx.HTTP_OK)
end

function AUTOSSL.create_account_key()
  local t = now()
  local pem, err = util.create_pkey(4096, "RSA")
  if not pem then
    return nil, err
  end
  log(ngx.INFO, "account key generated in ", math_floor((now() - t) * 1000) / 1000, "s")
  return pem
end

function AUTOSSL.load_account_key(filepath)
  local f, err = io_open(filepath, "r")
  if not f then
    error("can't open account_key file " .. filepath .. ": " .. tostring(err))
  end
  local pem = f:read("*a")
  f:close()
  if not pem or pem == "" then
    error("can't read account_key file " .. filepath)
  end
  return pem
end

-- The account key from the store; created (on a native thread) and stored with `add` when
-- absent, so nodes sharing a store agree on one key instead of the last writer winning.
function AUTOSSL.load_account_key_storage()
  local storage = AUTOSSL.storage
  local pem, err = storage:get("account_key:")
  if err then
    return nil, "Failed to read account key from storage: " .. err
  end
  if pem then
    return pem
  end
  local generated = AUTOSSL.generated_account_key
  if not generated then
    local gerr
    generated, gerr = AUTOSSL.create_account_key()
    if not generated then
      return nil, "failed to create account key: " .. tostring(gerr)
    end
  end
  local aerr = storage:add("account_key:", generated)
  if aerr and aerr ~= "exists" then
    return nil, "failed to save account_key: " .. aerr
  end
  pem, err = storage:get("account_key:")
  if not pem then
    return nil, "Failed to read account key from storage: " .. tostring(err or "missing after add")
  end
  return pem
end

local function read_file(path, what)
  local f, err = io_open(path, "r")
  if not f then
    error("failed to open " .. what .. ": " .. tostring(err))
  end
  local data = f:read("*a")
  f:close()
  if not data or data == "" then
    error("failed to read " .. what .. ": " .. path)
  end
  return data
end

function AUTOSSL.init(autossl_config, acme_config)
  autossl_config = setmetatable(autossl_config or {}, { __index = default_config })
  acme_config = acme_config or {}

  if not autossl_config.tos_accepted then
    error("tos_accepted must be set to true to continue, to read the Terms of Service, " ..
      "use `staging = true` and look for termsOfService in the directory")
  end

  local cb = autossl_config.domain_whitelist_callback
  if cb ~= nil and type(cb) ~= "function" then
    error("domain_whitelist_callback must be a function, got " .. type(cb))
  end
  local fcb = autossl_config.failure_cooloff_callback
  if fcb ~= nil and type(fcb) ~= "function" then
    error("failure_cooloff_callback must be a function, got " .. type(fcb))
  end

  if not autossl_config.domain_whitelist and not cb then
    log(ngx.WARN, "neither domain_whitelist nor domain_whitelist_callback is defined, this may cause ",
      "security issues as all SNI will trigger a creation of certificate")
  end
  if not autossl_config.failure_cooloff and not fcb then
    log(ngx.WARN, "neither failure_cooloff nor failure_cooloff_callback is defined, ",
      "failed orders are retried without delay")
  end

  if type(autossl_config.native_serving) ~= "boolean" then
    error("native_serving must be true or false, got " .. tostring(autossl_config.native_serving))
  end

  local rmi = autossl_config.renew_min_interval
  if type(rmi) ~= "number" or rmi <= 0 then
    error("renew_min_interval must be a positive number of seconds, got " .. tostring(rmi))
  end
  local prof = autossl_config.profile
  if prof ~= nil and type(prof) ~= "string" and type(prof) ~= "function" then
    error("profile must be a profile name or a function of the domain, got " .. type(prof))
  end
  if autossl_config.ip_profile ~= nil and type(autossl_config.ip_profile) ~= "string" then
    error("ip_profile must be a profile name, got " .. type(autossl_config.ip_profile))
  end
  local lock_ttl = autossl_config.update_lock_ttl
  if type(lock_ttl) ~= "number" or lock_ttl <= 0 then
    error("update_lock_ttl must be a positive number of seconds, got " .. tostring(lock_ttl))
  end

  local types = autossl_config.domain_key_types
  if type(types) ~= "table" or #types == 0 then
    error("domain_key_types must be a non-empty list of \"rsa\" and/or \"ecc\"")
  end
  for _, typ in ipairs(types) do
    if typ ~= "rsa" and typ ~= "ecc" then
      error("unknown domain key type: " .. tostring(typ))
    end
  end

  local adapter = autossl_config.storage_adapter
  if not find(adapter, ".", 1, true) then
    adapter = "resty.acme.storage." .. adapter
    autossl_config.storage_adapter = adapter
  end
  local ns = type(autossl_config.storage_config) == "table" and autossl_config.storage_config.namespace
  if adapter == "resty.acme.storage.redis" and ns then
    for _, prefix in ipairs(RESERVED_PREFIXES) do
      if sub(ns, 1, #prefix) == prefix then
        error("namespace can't be prefixed with reserved word: " .. prefix)
      end
    end
  end

  -- allow-list: exact names in a set of our own (the user's table is not modified)
  whitelist_set, wildcard_suffixes, wildcard_names = {}, {}, {}
  if type(autossl_config.domain_whitelist) == "table" then
    for _, entry in ipairs(autossl_config.domain_whitelist) do
      if type(entry) == "string" then
        local e = lower(entry)
        if sub(e, 1, 1) == "*" then
          wildcard_suffixes[#wildcard_suffixes + 1] = sub(e, 2)
          wildcard_names[#wildcard_names + 1] = e
        else
          whitelist_set[e] = true
        end
      end
    end
  end

  for typ, path in pairs(autossl_config.domain_key_paths or {}) do
    local pem = read_file(path, "domain_key")
    if not core.pkey_from_pem(pem) then
      error("failed to read domain key: " .. path .. " is not a supported private key")
    end
    domain_keys[typ] = pem
  end

  if autossl_config.account_key_path then
    acme_config.account_key = AUTOSSL.load_account_key(autossl_config.account_key_path)
  end

  if autossl_config.staging then
    acme_config.api_uri = STAGING_URI
  end
  acme_config.account_email = autossl_config.account_email
  acme_config.storage_adapter = adapter
  acme_config.storage_config = autossl_config.storage_config
  acme_config.dns_provider_accounts = autossl_config.dns_provider_accounts
  acme_config.enabled_challenge_handlers = autossl_config.enabled_challenge_handlers
  acme_config.dns_persist = autossl_config.dns_persist

  local delay = tonumber(autossl_config.challenge_start_delay) or 0
  acme_config.challenge_start_callback = function()
    if delay > 0 then
      ngx_sleep(delay)
    end
    return true
  end

  for _, name in ipairs(autossl_config.enabled_challenge_handlers) do
    if name == "dns-01" or name == "dns-persist-01" then
      AUTOSSL.dns_01_enabled = true
    end
  end

  ondemand.init(autossl_config)
  events.init(autossl_config)
  declared.init(autossl_config)
  if autossl_config.preflight_check then
    acme_config.challenge_preflight = ondemand.preflight
  end

  issuers.prepare(autossl_config, acme_config)
  backoff.init(autossl_config, acme_config)
  budget.init(autossl_config.order_budget, acme_config.api_uri)
  local c, err = client.new(acme_config)
  if not c then
    error("failed to initialize ACME client: " .. tostring(err))
  end
  issuers.init(autossl_config, acme_config, c)
  AUTOSSL.client = c
  AUTOSSL.config = autossl_config

  local size = tonumber(autossl_config.cache_size)
  if not size or size < 1 then
    error("cache_size must be a positive number, got " .. tostring(autossl_config.cache_size))
  end
  -- a second init starts with new caches (the old ones stay allocated: the core never frees a
  -- cache its certificate callback may have seen)
  for typ in pairs(caches) do
    caches[typ] = nil
  end
  local served_from = {}
  for _, typ in ipairs(types) do
    if not caches[typ] then
      caches[typ] = certcache.new(size)
      negatives[typ] = certcache.new(size)
      served_from[#served_from + 1] = caches[typ]
    end
  end
  -- the native callback installs every key type of a name, in the order of domain_key_types
  certcache.serve_from(served_from)
end

function AUTOSSL.init_worker()
  local conf = AUTOSSL.config
  if not conf then
    error("autossl.init() must be called in init_by_lua before init_worker")
  end
  local storagemod = require(conf.storage_adapter)
  local storage, err = storagemod.new(conf.storage_config)
  if not storage then
    error("failed to initialize storage: " .. tostring(err))
  end
  AUTOSSL.storage = storage
  ondemand.init_worker()

  local shm = conf.metrics_shm
  local mok, merr = metrics.init_worker(shm and ngx.shared[shm] and shm or nil)
  if not mok then
    error(merr)
  end
  metrics.pull('acme_handshakes_total{result="served"}', tls_cert.native_served)

  local bok, berr = budget.init_worker(function() return AUTOSSL.storage end, AUTOSSL.update_cert)
  if not bok then
    error("failed to start the order queue timer: " .. tostring(berr))
  end

  -- The first renewal check runs soon after start, then every interval.
  local ok, terr = ngx_timer_every(conf.renew_check_interval, AUTOSSL.check_renew)
  if not ok then
    error("failed to start renewal timer: " .. tostring(terr))
  end
  if ngx_worker_id() == 0 then
    ngx_timer_at(1 + math_random() * 4, function(premature)
      if premature then
        return
      end
      -- Creates the account key early so that the first handshake does not wait for it.
      if not conf.account_key_path then
        local kok, kerr = ensure_account_key()
        if not kok then
          log(ngx.ERR, kerr)
        end
      end
      -- dns-persist-01: the account is needed to show the records to publish (logged then)
      if type(conf.dns_persist) == "table" and conf.dns_persist.domains then
        local cok, cerr = ensure_client()
        if not cok then
          log(ngx.WARN, "cannot show the dns-persist-01 records yet: ", cerr)
        end
      end
      run_pass()
    end)
  end
end

return AUTOSSL
