-- The autossl config: its defaults, the checks init runs on it, and the client config derived
-- from it. Every check raises with the key and what was wrong (init runs in init_by_lua).
local core = require("resty.acme.core")
local ondemand = require("resty.acme.ondemand")
local keys = require("resty.acme.autossl.keys")
local util = require("resty.acme.util")

local ngx = ngx
local ngx_sleep = ngx.sleep
local log = util.log
local read_file = util.read_file
local error = error
local ipairs = ipairs
local pairs = pairs
local setmetatable = setmetatable
local tonumber = tonumber
local tostring = tostring
local type = type
local find = string.find
local sub = string.sub

local _M = { _VERSION = "0.16.0" }

local STAGING_URI = "https://acme-staging-v02.api.letsencrypt.org/directory"

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
  -- Beyond the original: a lua_shared_dict all workers of a node share as a second cache level
  -- (resty.acme.sharedcache; README, "Many names"): a worker-cache miss it holds costs no
  -- storage read. Off when nil.
  shared_cache = nil,
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
  -- Seconds the renewal owner's lease lives without an extension (resty.acme.owner): a dead
  -- owner's passes are taken over about this long after its last extension.
  renewal_owner_ttl = 60,
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
_M.defaults = default_config

-- key must be a positive number of seconds; raises naming it and what it got.
local function check_seconds(conf, key)
  local v = conf[key]
  if type(v) ~= "number" or v <= 0 then
    error(key .. " must be a positive number of seconds, got " .. tostring(v))
  end
end

-- merge(autossl_config): the user's table with the defaults behind it (a metatable: the table
-- is the user's own), checked; the storage adapter name made a module name. Raises.
function _M.merge(autossl_config)
  autossl_config = setmetatable(autossl_config or {}, { __index = default_config })

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

  check_seconds(autossl_config, "renew_min_interval")
  local prof = autossl_config.profile
  if prof ~= nil and type(prof) ~= "string" and type(prof) ~= "function" then
    error("profile must be a profile name or a function of the domain, got " .. type(prof))
  end
  if autossl_config.ip_profile ~= nil and type(autossl_config.ip_profile) ~= "string" then
    error("ip_profile must be a profile name, got " .. type(autossl_config.ip_profile))
  end
  check_seconds(autossl_config, "update_lock_ttl")
  check_seconds(autossl_config, "renewal_owner_ttl")

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
    for _, prefix in ipairs(keys.RESERVED) do
      if sub(ns, 1, #prefix) == prefix then
        error("namespace can't be prefixed with reserved word: " .. prefix)
      end
    end
  end
  return autossl_config
end

-- read_domain_keys(conf, into): the PEMs of domain_key_paths into `into` by key type. Raises.
function _M.read_domain_keys(conf, into)
  for typ, path in pairs(conf.domain_key_paths or {}) do
    local pem, err, opened = read_file(path)
    if not pem then
      error(opened and ("failed to read domain_key: " .. path) or ("failed to open domain_key: " .. err))
    end
    if not core.pkey_from_pem(pem) then
      error("failed to read domain key: " .. path .. " is not a supported private key")
    end
    into[typ] = pem
  end
end

-- client_config(conf, acme_config): what of conf the client takes, into acme_config (the user's
-- table, mutated as the original does), and whether a dns-01 handler is enabled.
function _M.client_config(conf, acme_config)
  if conf.staging then
    acme_config.api_uri = STAGING_URI
  end
  acme_config.account_email = conf.account_email
  acme_config.storage_adapter = conf.storage_adapter
  acme_config.storage_config = conf.storage_config
  acme_config.dns_provider_accounts = conf.dns_provider_accounts
  acme_config.enabled_challenge_handlers = conf.enabled_challenge_handlers
  acme_config.dns_persist = conf.dns_persist

  local delay = tonumber(conf.challenge_start_delay) or 0
  acme_config.challenge_start_callback = function()
    if delay > 0 then
      ngx_sleep(delay)
    end
    return true
  end

  local dns_01
  for _, name in ipairs(conf.enabled_challenge_handlers) do
    if name == "dns-01" or name == "dns-persist-01" then
      dns_01 = true
    end
  end
  if conf.preflight_check then
    acme_config.challenge_preflight = ondemand.preflight
  end
  return dns_01
end

return _M
