-- What autossl answers in the content phase: the challenge responses, the admin API and the
-- Prometheus metrics. Each ends the request (ngx.exit) as the original's do.
local inventory = require("resty.acme.inventory")
local metrics = require("resty.acme.metrics")
local state = require("resty.acme.autossl.state")

local ngx = ngx
local now = state.now
local require = require

local _M = { _VERSION = "0.16.0" }

-- serve_http_challenge(): the client's http-01 answer (COMPAT.md 2.1).
function _M.serve_http_challenge()
  return state.client:serve_http_challenge()
end

-- serve_tls_alpn_challenge(): the client's tls-alpn-01 answer (COMPAT.md 2.1).
function _M.serve_tls_alpn_challenge()
  return state.client:serve_tls_alpn_challenge()
end

-- serve_admin(api, opts): the admin API over the autossl facade `api` (resty.acme.admin; its
-- errors are HTTP answers). opts { token = } requires a bearer token. Protect the location
-- (allow/deny) too: it names every certificate this server holds.
function _M.serve_admin(api, opts)
  return require("resty.acme.admin").serve(api, opts)
end

-- serve_metrics(): the counters, and the store's gauges (the store is listed on every scrape;
-- each certificate is parsed once per worker), as text/plain version 0.0.4.
function _M.serve_metrics()
  local gauges, help = inventory.gauges(state.storage, state.config.renew_threshold, now())
  ngx.header["Content-Type"] = "text/plain; version=0.0.4"
  ngx.print(metrics.render(gauges, help))
  return ngx.exit(ngx.HTTP_OK)
end

return _M
