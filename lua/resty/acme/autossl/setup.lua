-- Start-up: init (init_by_lua) checks the config and builds the client, the allow-list and the
-- caches; init_worker builds the storage and starts the timers. Both raise on any error: a
-- server must not start half configured (COMPAT.md 2.1).
local account = require("resty.acme.autossl.account")
local backoff = require("resty.acme.backoff")
local budget = require("resty.acme.budget")
local certcache = require("resty.acme.certcache")
local client = require("resty.acme.client")
local config = require("resty.acme.autossl.config")
local declared = require("resty.acme.declared")
local events = require("resty.acme.events")
local issue = require("resty.acme.autossl.issue")
local issuers = require("resty.acme.issuers")
local metrics = require("resty.acme.metrics")
local names = require("resty.acme.autossl.names")
local ondemand = require("resty.acme.ondemand")
local owner = require("resty.acme.owner")
local renew = require("resty.acme.autossl.renew")
local sharedcache = require("resty.acme.sharedcache")
local state = require("resty.acme.autossl.state")
local tls_cert = require("resty.acme.tls_cert")
local util = require("resty.acme.util")

local ngx = ngx
local ngx_timer_at = ngx.timer.at
local ngx_timer_every = ngx.timer.every
local ngx_worker_id = ngx.worker.id
local log = util.log
local error = error
local ipairs = ipairs
local pairs = pairs
local math_random = math.random
local require = require
local tonumber = tonumber
local tostring = tostring
local type = type

local _M = { _VERSION = "0.16.0" }

local caches = state.caches
local negatives = state.negatives

-- init(autossl_config, acme_config): returns nothing; raises on an invalid config.
function _M.init(autossl_config, acme_config)
  acme_config = acme_config or {}
  autossl_config = config.merge(autossl_config)
  local types = autossl_config.domain_key_types
  names.init(autossl_config)
  config.read_domain_keys(autossl_config, state.domain_keys)

  if autossl_config.account_key_path then
    acme_config.account_key = account.load_account_key(autossl_config.account_key_path)
  end
  if config.client_config(autossl_config, acme_config) then
    state.dns_01_enabled = true
  end

  ondemand.init(autossl_config)
  events.init(autossl_config)
  declared.init(autossl_config)
  issuers.prepare(autossl_config, acme_config)
  backoff.init(autossl_config, acme_config)
  budget.init(autossl_config.order_budget, acme_config.api_uri)
  local c, err = client.new(acme_config)
  if not c then
    error("failed to initialize ACME client: " .. tostring(err))
  end
  issuers.init(autossl_config, acme_config, c)
  state.client = c
  state.config = autossl_config

  local size = tonumber(autossl_config.cache_size)
  if not size or size < 1 then
    error("cache_size must be a positive number, got " .. tostring(autossl_config.cache_size))
  end
  -- a second init starts with new caches (the old ones stay allocated: the core never frees a
  -- cache its certificate callback may have seen)
  for typ in pairs(caches) do
    caches[typ] = nil
  end
  local served_from, served_types = {}, {}
  for _, typ in ipairs(types) do
    if not caches[typ] then
      caches[typ] = certcache.new(size)
      negatives[typ] = certcache.new(size)
      served_from[#served_from + 1] = caches[typ]
      served_types[#served_types + 1] = typ
    end
  end
  -- the native callback installs every key type of a name, in the order of domain_key_types
  certcache.serve_from(served_from)
  state.shared_cache = nil
  local shared_name = autossl_config.shared_cache
  if shared_name ~= nil then
    if type(shared_name) ~= "string" then
      error("shared_cache must be the name of a lua_shared_dict, got " .. type(shared_name))
    end
    local sc, serr = sharedcache.new(shared_name)
    if not sc then
      error(serr)
    end
    state.shared_cache = sc
  end
  -- the native callback fills misses from it too (or, with none, forgets the last init's)
  local ok, nerr = sharedcache.serve_native(state.shared_cache, served_types)
  if not ok and state.shared_cache then
    log(ngx.WARN, "native serving reads no shared cache, the Lua phase does: ", nerr)
  end
end

-- init_worker(): returns nothing; raises when init did not run or the storage, the metrics or
-- a timer cannot start.
function _M.init_worker()
  local conf = state.config
  if not conf then
    error("autossl.init() must be called in init_by_lua before init_worker")
  end
  local storagemod = require(conf.storage_adapter)
  local storage, err = storagemod.new(conf.storage_config)
  if not storage then
    error("failed to initialize storage: " .. tostring(err))
  end
  state.storage = storage
  ondemand.init_worker()

  local shm = conf.metrics_shm
  local mok, merr = metrics.init_worker(shm and ngx.shared[shm] and shm or nil)
  if not mok then
    error(merr)
  end
  metrics.pull('acme_handshakes_total{result="served"}', tls_cert.native_served)

  local bok, berr = budget.init_worker(function() return state.storage end, issue.update_cert)
  if not bok then
    error("failed to start the order queue timer: " .. tostring(berr))
  end

  -- The renewal owner (one worker of the cluster, resty.acme.owner) runs a pass as soon as it
  -- takes the lease, then every interval.
  local ok, terr = ngx_timer_every(conf.renew_check_interval, renew.check_renew)
  if not ok then
    error("failed to start renewal timer: " .. tostring(terr))
  end
  ok, terr = owner.init_worker(function() return state.storage end, conf.renewal_owner_ttl,
    function() renew.run_pass() end)
  if not ok then
    error("failed to start the renewal owner timer: " .. tostring(terr))
  end
  if ngx_worker_id() == 0 then
    ngx_timer_at(1 + math_random() * 4, function(premature)
      if premature then
        return
      end
      -- Creates the account key early so that the first handshake does not wait for it.
      if not conf.account_key_path then
        local kok, kerr = account.ensure_key()
        if not kok then
          log(ngx.ERR, kerr)
        end
      end
      -- dns-persist-01: the account is needed to show the records to publish (logged then)
      if type(conf.dns_persist) == "table" and conf.dns_persist.domains then
        local cok, cerr = account.ensure_client()
        if not cok then
          log(ngx.WARN, "cannot show the dns-persist-01 records yet: ", cerr)
        end
      end
    end)
  end
end

return _M
