-- What the autossl modules share: the handles init and init_worker create, this worker's
-- certificate caches, and the internal fields COMPAT.md keeps reachable on the facade.
-- Plain data; every module reads it at call time (init may run again and replace handles).
local ngx = ngx
local ngx_now = ngx.now
local ngx_update_time = ngx.update_time

local _M = {
  _VERSION = "0.16.0",
  config = nil,                -- the merged autossl config (init)
  client = nil,                -- the resty.acme.client (init)
  storage = nil,               -- the storage adapter (init_worker)
  dns_01_enabled = nil,        -- a dns-01 or dns-persist-01 handler is enabled (init)
  client_initialized = nil,    -- the account is registered (first order or renewal pass)
  generated_account_key = nil, -- a PEM used instead of generating one when the store has none
  caches = {},                 -- key type -> resty.acme.certcache of served certificates
  -- key type -> certcache of "not in the store" entries only: a flood of unknown names must not
  -- evict the certificates that are served
  negatives = {},
  domain_keys = {},            -- key type -> PEM from domain_key_paths
}

-- The fields above that resty.acme.autossl exposes as its own (read and written through it).
_M.PUBLIC = {
  config = true, client = true, storage = true,
  dns_01_enabled = true, client_initialized = true, generated_account_key = true,
}

-- now(): the current time, updated first (orders and store calls take long).
function _M.now()
  ngx_update_time()
  return ngx_now()
end

return _M
