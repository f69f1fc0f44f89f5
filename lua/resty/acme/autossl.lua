-- Automatic certificates for every allowed SNI, with lua-resty-acme's API, config keys, storage
-- keys and formats. Differences behind the same interface: one order per name and key type
-- however many handshakes and workers race (lock, then re-check the store), issued and renewed
-- certificates reach every worker within the cache TTLs without a reload, keys are generated on
-- a native thread, locks are always released, and a bad stored entry never aborts renewal.
--
-- This module is the facade: the original's names, each the function of the module under
-- resty.acme.autossl.* that does that one job:
--   setup      init, init_worker          config    defaults and checks of the config
--   names      SNI rule, allow-list       handshake ssl_certificate and the orders it starts
--   serve      caches, store read, native entry     the stored entry: parse, get_certkey
--   issue      update_cert (lock, order)  account   account key, client bootstrap
--   renew      check_renew, the pass      schedule  the early-pass timer
--   content    challenges, admin, metrics keys      storage key prefixes
--   state      the handles they share
-- Error conventions are COMPAT.md 2.1's, written above each function where it lives. The
-- fields config, client, storage, client_initialized, generated_account_key and dns_01_enabled
-- are the shared state's, read and written through this table. No module requires this one.
local account = require("resty.acme.autossl.account")
local content = require("resty.acme.autossl.content")
local handshake = require("resty.acme.autossl.handshake")
local issue = require("resty.acme.autossl.issue")
local names = require("resty.acme.autossl.names")
local renew = require("resty.acme.autossl.renew")
local serve = require("resty.acme.autossl.serve")
local setup = require("resty.acme.autossl.setup")
local state = require("resty.acme.autossl.state")
local stored = require("resty.acme.autossl.entry")
local util = require("resty.acme.util")

local rawset = rawset
local setmetatable = setmetatable

local PUBLIC = state.PUBLIC

local AUTOSSL = {
  _VERSION = "0.16.0",

  init = setup.init,
  init_worker = setup.init_worker,
  ssl_certificate = handshake.ssl_certificate,
  update_cert = issue.update_cert,
  check_renew = renew.check_renew,
  get_certkey = stored.get_certkey,
  get_cert_from_cache = serve.get_cert_from_cache,
  is_domain_whitelisted = names.allowed,
  serve_http_challenge = content.serve_http_challenge,
  serve_tls_alpn_challenge = content.serve_tls_alpn_challenge,
  serve_metrics = content.serve_metrics,
  create_account_key = account.create_account_key,
  load_account_key = account.load_account_key,
  load_account_key_storage = account.load_account_key_storage,

  -- for resty.acme.admin, resty.acme.order_endpoint and the tests
  _valid_sni = names.valid_sni,
  _cache_state = serve.cache_state,
  _forget = serve.forget,
  _log = util.log,
  _ensure_client = account.ensure_client,
  _full_pass = renew.full_pass,
}

-- serve_admin(opts): the admin API (resty.acme.admin) over this facade.
function AUTOSSL.serve_admin(opts)
  return content.serve_admin(AUTOSSL, opts)
end

return setmetatable(AUTOSSL, {
  __index = function(_, k)
    if PUBLIC[k] then
      return state[k]
    end
  end,
  __newindex = function(t, k, v)
    if PUBLIC[k] then
      state[k] = v
    else
      rawset(t, k, v)
    end
  end,
})
