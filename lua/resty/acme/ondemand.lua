-- On-demand issuance that cannot be abused: what autossl asks before it orders a certificate
-- for a name it has never had.
--
-- * the decision context given to domain_whitelist_callback (renewal, client address, server
--   port, the SNI as received);
-- * `ask`: an HTTP endpoint asked once per name and TTL across the workers (shared dict cache,
--   one worker asks while the others wait for its answer);
-- * budgets of new names per registered domain, per client address and globally, per time
--   window, kept in the storage adapter so that a cluster shares them;
-- * the http-01 pre-flight check: our own challenge URL fetched before the CA is asked.
--
-- The handshake path only reads (`screen`); everything that talks to the network or the store
-- runs in the background job that would order the certificate (`admit`). Renewals never come
-- here: a stored certificate is renewed whatever the budgets say.
local core = require("resty.acme.core")
local util = require("resty.acme.util")
local keys = require("resty.acme.autossl.keys")
local metrics = require("resty.acme.metrics")
local transport = require("resty.acme.transport")
local ssl = require("ngx.ssl")

local ngx = ngx
local ngx_now = ngx.now
local ngx_sleep = ngx.sleep
local ngx_update_time = ngx.update_time
local ngx_escape_uri = ngx.escape_uri
local log = util.log
local byte = string.byte
local find = string.find
local format = string.format
local sub = string.sub
local concat = table.concat
local math_floor = math.floor
local tonumber = tonumber
local ipairs = ipairs
local tostring = tostring
local type = type
local error = error

local _M = { _VERSION = "0.16.0" }

local ASK_PREFIX = keys.ASK
local ASK_LOCK_PREFIX = keys.ASK_LOCK
local ADMIT_PREFIX = keys.ONDEMAND_ADMITTED
local BUDGET_PREFIX = keys.ONDEMAND_BUDGET
local ERROR_PREFIX = keys.ONDEMAND_LAST_ERROR

local DEFAULT_PSL = "/usr/share/publicsuffix/public_suffix_list.dat"

-- per worker (the list is read once in init and inherited by every worker)
local conf         -- the autossl config
local ask_dict     -- ngx.shared dict caching ask answers
local ask_http     -- transport for ask
local preflight_http -- transport for the pre-flight check
local psl          -- core public suffix list, when budgets per registered domain are on
local budgets      -- { window =, registered_domain =, client =, global = }
local inflight = 0 -- background jobs for new names running in this worker
local quiet = {}   -- log reason -> next time it may be logged

local function now()
  ngx_update_time()
  return ngx_now()
end

-- One line per reason per `every` seconds.
local function log_once(level, reason, every, ...)
  local t = ngx_now()
  if (quiet[reason] or 0) > t then
    return
  end
  quiet[reason] = t + every
  log(level, ...)
end

local function refuse(reason)
  metrics.inc('acme_orders_refused_total{reason="' .. reason .. '"}')
  return false, reason
end

-- "a.b.c.d", or eight hexadecimal groups with the longest run of zeros written "::".
local function format_addr(raw, typ)
  if typ == "inet" and #raw == 4 then
    return format("%d.%d.%d.%d", byte(raw, 1, 4))
  end
  if typ == "inet6" and #raw == 16 then
    local groups = {}
    for i = 1, 16, 2 do
      groups[#groups + 1] = byte(raw, i) * 256 + byte(raw, i + 1)
    end
    local best, best_len, run, run_len = 0, 0, 0, 0
    for i = 1, 8 do
      if groups[i] == 0 then
        if run_len == 0 then
          run = i
        end
        run_len = run_len + 1
        if run_len > best_len then
          best, best_len = run, run_len
        end
      else
        run_len = 0
      end
    end
    local parts = {}
    for i = 1, 8 do
      parts[i] = format("%x", groups[i])
    end
    if best_len < 2 then
      return concat(parts, ":")
    end
    local head = concat(parts, ":", 1, best - 1)
    local tail = best + best_len <= 8 and concat(parts, ":", best + best_len, 8) or ""
    return head .. "::" .. tail
  end
  return typ or "unknown"
end

-- The key a client's budget is kept under: the address, an IPv6 address by its /64 (one
-- host usually has a whole /64).
local function client_scope(ctx)
  local addr = ctx.client_addr
  if not addr then
    return nil
  end
  if ctx.client_raw and #ctx.client_raw == 16 then
    local raw = ctx.client_raw
    return format("%02x%02x:%02x%02x:%02x%02x:%02x%02x::/64", byte(raw, 1, 8))
  end
  return addr
end

-- A slot in a budget: slots 1..limit of `key` are taken with `add`, which is atomic in every
-- storage adapter; `key .. ":n"` is only a hint of how many are taken. true, or false when the
-- budget is spent, or nil, err.
local function take_slot(storage, key, limit, ttl)
  local hint = tonumber((storage:get(key .. ":n"))) or 0
  if hint >= limit then
    return false
  end
  for i = hint + 1, limit do
    local err = storage:add(key .. ":" .. i, "1", ttl)
    if not err then
      storage:set(key .. ":n", tostring(i), ttl)
      return true
    end
    if err ~= "exists" then
      return nil, err
    end
  end
  storage:set(key .. ":n", tostring(limit), ttl)
  return false
end

local function spent(storage, key, limit)
  return (tonumber((storage:get(key .. ":n"))) or 0) >= limit
end

-- The budgets a new name is charged to: { reason, key, limit } for each one configured.
local function scopes_for(domain, ctx, window_id)
  local out = {}
  local b = budgets
  if b.registered_domain then
    local reg = psl and psl:registered_domain(domain) or domain
    out[#out + 1] = { "budget_registered_domain", BUDGET_PREFIX .. "rd:" .. window_id .. ":" .. reg,
                      b.registered_domain, reg }
  end
  if b.client then
    local scope = client_scope(ctx)
    if scope then
      out[#out + 1] = { "budget_client", BUDGET_PREFIX .. "client:" .. window_id .. ":" .. scope,
                        b.client, scope }
    end
  end
  if b.global then
    out[#out + 1] = { "budget_global", BUDGET_PREFIX .. "global:" .. window_id, b.global, "all names" }
  end
  return out
end

-- One log line per budget and window, across the cluster (the first worker to find it spent
-- says so).
local function log_spent(storage, scope, window_end, ttl)
  if storage:add(scope[2] .. ":logged", "1", ttl) then
    return -- exists (or the store failed): someone logged it
  end
  log(ngx.WARN, "on-demand budget ", scope[1], " (", scope[3], " new names) spent for ", scope[4],
    " until ", math_floor(window_end), ": new names get the fallback certificate, renewals go on")
end

-- Charges the budgets for a new name: true, or false, reason.
local function charge(storage, domain, ctx)
  local window = budgets.window
  local t = now()
  local window_id = math_floor(t / window)
  local window_end = (window_id + 1) * window
  local ttl = math_floor(window_end - t) + 1
  local scopes = scopes_for(domain, ctx, window_id)
  -- read first: a spent budget takes no slot of the others
  for _, scope in ipairs(scopes) do
    if spent(storage, scope[2], scope[3]) then
      log_spent(storage, scope, window_end, ttl)
      return refuse(scope[1])
    end
  end
  for _, scope in ipairs(scopes) do
    local ok, err = take_slot(storage, scope[2], scope[3], ttl)
    if ok == nil then
      -- the budgets cannot be kept: new names wait until the store answers
      log_once(ngx.ERR, "budget_store", 10, "on-demand budgets: the store failed (", err,
        "), refusing new names")
      return refuse("budget_error")
    end
    if not ok then
      log_spent(storage, scope, window_end, ttl)
      return refuse(scope[1])
    end
  end
  return true
end

-- The ask endpoint's answer for `domain`: true (200), false (anything else, no answer), or nil
-- when another worker is asking and has not answered in time.
local function ask(domain)
  local key = ASK_PREFIX .. domain
  local v = ask_dict:get(key)
  if v ~= nil then
    return v == 1
  end
  local timeout = conf.ask_timeout
  local ok = ask_dict:add(ASK_LOCK_PREFIX .. domain, true, timeout + 1)
  if not ok then
    -- another worker asks: its answer lands in the dict
    local deadline = now() + timeout + 1
    while now() < deadline do
      ngx_sleep(0.05)
      v = ask_dict:get(key)
      if v ~= nil then
        return v == 1
      end
    end
    return nil
  end
  local url = conf.ask
  url = url .. (find(url, "?", 1, true) and "&" or "?") .. "domain=" .. ngx_escape_uri(domain)
  local res, err = ask_http:request("GET", url)
  local allowed = res ~= nil and res.status == 200
  if not res then
    log_once(ngx.WARN, "ask_error", 10, "on-demand ask endpoint did not answer for ", domain, ": ",
      err, " (denied)")
  end
  local sok, serr = ask_dict:safe_set(key, allowed and 1 or 0,
    allowed and conf.ask_ttl or conf.ask_negative_ttl)
  if not sok then
    log_once(ngx.WARN, "ask_cache", 10, "cannot cache the ask answer for ", domain, ": ", serr)
  end
  ask_dict:delete(ASK_LOCK_PREFIX .. domain)
  return allowed
end

-- init(config): from autossl.init (init_by_lua); raises on invalid config.
function _M.init(config)
  conf = config
  local url = config.ask
  if url ~= nil and (type(url) ~= "string" or not find(url, "^https?://")) then
    error("ask must be an http:// or https:// URL, got " .. tostring(url))
  end
  for _, k in ipairs({ "ask_ttl", "ask_negative_ttl", "ask_timeout", "max_pending_new",
                       "preflight_timeout" }) do
    local v = config[k]
    if type(v) ~= "number" or v <= 0 then
      error(k .. " must be a positive number, got " .. tostring(v))
    end
  end
  budgets = nil
  psl = nil
  local b = config.new_name_budget
  if b ~= nil then
    if type(b) ~= "table" then
      error("new_name_budget must be a table, got " .. type(b))
    end
    for _, k in ipairs({ "registered_domain", "client", "global" }) do
      local v = b[k]
      if v ~= nil and (type(v) ~= "number" or v < 0 or v ~= math_floor(v)) then
        error("new_name_budget." .. k .. " must be a non-negative integer, got " .. tostring(v))
      end
    end
    local window = b.window or 3600
    if type(window) ~= "number" or window < 1 then
      error("new_name_budget.window must be at least 1 second, got " .. tostring(window))
    end
    budgets = { window = window, registered_domain = b.registered_domain, client = b.client,
                global = b.global }
    if b.registered_domain then
      local path = config.public_suffix_list or DEFAULT_PSL
      local list, err = core.public_suffix_list(path)
      if not list then
        error("new_name_budget.registered_domain needs the public suffix list: " .. tostring(err)
          .. " (Debian: apt-get install publicsuffix, or set public_suffix_list)")
      end
      psl = list
    end
  end
  if url then
    ask_http = transport.new({ timeout = math_floor(config.ask_timeout * 1000),
                               keepalive_pool = 8 })
  end
  if config.preflight_check then
    local port = config.preflight_port
    if type(port) ~= "number" or port < 1 or port > 65535 or port ~= math_floor(port) then
      error("preflight_port must be a port number, got " .. tostring(port))
    end
    preflight_http = transport.new({ timeout = math_floor(config.preflight_timeout * 1000),
                                     keepalive = false })
  end
end

-- init_worker(): from autossl.init_worker; raises when the ask cache dict is missing.
function _M.init_worker()
  if conf.ask then
    local name = conf.ask_shm
    ask_dict = ngx.shared[name]
    if not ask_dict then
      error("ask needs lua_shared_dict " .. tostring(name) .. " (ask_shm)")
    end
  end
end

-- The decision context of a handshake (ssl_certificate_by_lua): { renewal = false,
-- client_addr =, server_port =, sni = the name as received }.
function _M.handshake_ctx(sni)
  local ctx = { renewal = false, sni = sni }
  local raw, typ = ssl.raw_client_addr()
  if raw then
    ctx.client_addr = format_addr(raw, typ)
    ctx.client_raw = raw
  end
  local port = ssl.server_port and ssl.server_port()
  ctx.server_port = port
  return ctx
end

-- Handshake path, read only: may a background job be started for the new name `domain`?
-- true (then call done() when the job ends), or false, reason.
function _M.screen(domain)
  if inflight >= conf.max_pending_new then
    log_once(ngx.WARN, "busy", 10, "more than ", conf.max_pending_new, " new names pending in ",
      "this worker: ", domain, " waits for a later handshake")
    return refuse("busy")
  end
  if ask_dict and ask_dict:get(ASK_PREFIX .. domain) == 0 then
    return refuse("ask")
  end
  inflight = inflight + 1
  return true
end

function _M.done()
  if inflight > 0 then
    inflight = inflight - 1
  end
end

-- Background, before the first order of a name (cosockets): ask, then the budgets. A name
-- admitted once stays admitted for the budget window (a retry after a failure is not charged
-- again). true, or false, reason.
function _M.admit(storage, domain, ctx)
  if not ask_dict and not budgets then
    return true
  end
  -- an order for the name is running (another worker or node): nothing to ask or charge
  if storage:get(keys.UPDATE_LOCK .. domain) then
    return false, "ordering_elsewhere"
  end
  if ask_dict then
    local allowed = ask(domain)
    if allowed == nil then
      return false, "ask_pending"
    end
    if not allowed then
      return refuse("ask")
    end
  end
  if not budgets then
    return true
  end
  local key = ADMIT_PREFIX .. domain
  -- "pending" while this worker decides: a worker that dies here holds the name 30 s at most
  local err = storage:add(key, "pending", 30)
  if err == "exists" then
    -- admitted (or being decided) by another worker or node
    return storage:get(key) == "ok", "decided_elsewhere"
  elseif err then
    log_once(ngx.ERR, "budget_store", 10, "on-demand budgets: the store failed (", err,
      "), refusing new names")
    return refuse("budget_error")
  end
  local ok, reason = charge(storage, domain, ctx or {})
  if ok then
    storage:set(key, "ok", budgets.window)
  else
    -- asked again a little later, not at every handshake
    storage:set(key, "refused", 10)
  end
  return ok, reason
end

-- The http-01 pre-flight check (client conf.challenge_preflight): our own challenge URL,
-- fetched through nginx's resolver, must answer the key authorization before the CA is asked
-- to validate. true, or false, err.
function _M.preflight(typ, name, token, key_authorization)
  if typ ~= "http-01" then
    return true
  end
  local url = "http://" .. name .. ":" .. conf.preflight_port .. "/.well-known/acme-challenge/"
    .. token
  local res, err
  for attempt = 1, 2 do
    res, err = preflight_http:request("GET", url)
    if res and res.status == 200 and res.body == key_authorization then
      return true
    end
    if attempt == 1 then
      ngx_sleep(0.5)
    end
  end
  if res then
    err = "got status " .. res.status .. (res.status == 200 and " with another body" or "")
  end
  return false, "pre-flight check failed: " .. url .. " " .. tostring(err)
    .. " (the CA was not asked to validate)"
end

-- Why the last order of `domain` failed, for the admin view (kept a day).
function _M.note_failure(storage, domain, err)
  storage:set(ERROR_PREFIX .. domain, sub(tostring(err), 1, 512), 86400)
end

function _M.last_error(storage, domain)
  return (storage:get(ERROR_PREFIX .. domain))
end

_M._format_addr = format_addr

return _M
