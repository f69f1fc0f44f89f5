-- The handshake (ssl_certificate_by_lua): the server name checked and allowed, each key type's
-- certificate served from resty.acme.autossl.serve, and the order of what is missing started
-- (in a timer, or inline in blocking mode).
local issue = require("resty.acme.autossl.issue")
local keys = require("resty.acme.autossl.keys")
local metrics = require("resty.acme.metrics")
local names = require("resty.acme.autossl.names")
local ondemand = require("resty.acme.ondemand")
local serve = require("resty.acme.autossl.serve")
local state = require("resty.acme.autossl.state")
local tls_cert = require("resty.acme.tls_cert")
local util = require("resty.acme.util")
local ssl = require("ngx.ssl")

local ngx = ngx
local ngx_sleep = ngx.sleep
local ngx_timer_at = ngx.timer.at
local now = state.now
local set_certkey = tls_cert.set_certkey
local log = util.log
local log_quiet = serve.log_quiet
local lookup = serve.lookup
local valid_sni = names.valid_sni
local allowed_name = names.allowed
local ipairs = ipairs
local tostring = tostring
local find = string.find
local lower = string.lower
local sub = string.sub

local _M = { _VERSION = "0.16.0" }

local pending = {} -- domain -> true while this worker has a background job for it

local function background_update(premature, domain, types, ctx)
  if not premature and ondemand.admit(state.storage, domain, ctx) then
    for _, typ in ipairs(types) do
      local err = issue.update_cert({ domain = domain, renew = false, type = typ,
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
  local deadline = now() + state.config.blocking_timeout
  local admitted, why = ondemand.admit(state.storage, domain, ctx)
  if admitted then
    local err = issue.update_cert({ domain = domain, renew = false, type = typ,
                                    ctx = ctx })
    if err then
      log(ngx.ERR, "failed to update ", typ, " certificate for ", domain, ": ", err)
      return nil
    end
  elseif why ~= "ordering_elsewhere" then
    return nil
  end
  local cache = state.caches[typ]
  while true do
    cache:delete(domain)
    state.negatives[typ]:delete(domain)
    local entry = lookup(domain, typ)
    if entry then
      return entry
    end
    local lock = state.storage:get(keys.UPDATE_LOCK .. domain)
    if not lock or now() >= deadline then
      return nil
    end
    ngx_sleep(0.2)
  end
end

-- ssl_certificate(opts): sets the certificate and key of every key type for the SNI, or leaves
-- nginx's fallback certificate; returns nothing and never raises for any client hello (only
-- what domain_whitelist_callback raises). opts (beyond the original, optional):
-- { native_serving = bool } overrides the config for the server block this is called from.
function _M.ssl_certificate(opts)
  local name, err = ssl.server_name()
  if not name then
    metrics.inc('acme_handshakes_total{result="no_sni"}')
    log_quiet(ngx.INFO, "no SNI in the client hello, serving the fallback certificate", err or "")
    return
  end
  local sni = lower(name)
  local domain = sni
  local conf = state.config

  local types = conf.domain_key_types
  local any = false
  if not valid_sni(domain) then
    metrics.inc('acme_handshakes_total{result="invalid_name"}')
    log_quiet(ngx.INFO, "invalid server name, serving the fallback certificate:", domain:sub(1, 64))
    return
  end
  local ctx = conf.domain_whitelist_callback and ondemand.handshake_ctx(name)
  local allowed = allowed_name(domain, false, ctx)
  if not allowed then
    metrics.inc('acme_handshakes_total{result="refused"}')
    log_quiet(ngx.INFO, "server name not allowed, serving the fallback certificate:", domain)
    return
  end
  if allowed ~= domain and state.dns_01_enabled then
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
  if any and native then
    serve.native(sni, domain)
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

return _M
