-- The admin API of autossl (content phase, through autossl.serve_admin(opts)): list the stored
-- certificates with filters and pages, show one name, order or renew a name now, delete it
-- (and revoke it), and explain why a name is served its certificate or the fallback.
--
-- Routes (the location's prefix is free: only the end of the path is matched):
--   GET    .../certificates[?name=&type=&due=1&expiring_within=S&offset=N&limit=N]  (any other
--          path, e.g. `location = /admin`, is this list too)
--   GET    .../certificates/<name>
--   POST   .../certificates/<name>[?type=rsa|ecc&self_test=1&force=1]
--   DELETE .../certificates/<name>[?type=rsa|ecc&revoke=1&reason=N]
--   PATCH  .../certificates[?all=1]   renew every due (every) certificate in the background
--   GET    .../why/<name>
-- opts: { token = "..." } or { token_env = "VAR" } requires `Authorization: Bearer <token>`
-- (compared in constant time; a token_env that is unset refuses everything).
-- Off unless a location calls it; protect that location (allow/deny) as well.
local core = require("resty.acme.core")
local inventory = require("resty.acme.inventory")
local keys = require("resty.acme.autossl.keys")
local renewal = require("resty.acme.renewal")
local ondemand = require("resty.acme.ondemand")
local events = require("resty.acme.events")
local dns_persist_log = require("resty.acme.dns_persist_log")
local backoff_state = require("resty.acme.backoff")
local issuers = require("resty.acme.issuers")
local transport = require("resty.acme.transport")
local util = require("resty.acme.util")
local hostname = require("resty.acme.hostname")
local cjson = require("cjson.safe")
local bit = require("bit")

local ngx = ngx
local ngx_var = ngx.var
local ngx_null = ngx.null
local ngx_now = ngx.now
local ngx_timer_at = ngx.timer.at
local ngx_update_time = ngx.update_time
local ngx_unescape_uri = ngx.unescape_uri
local ngx_req = ngx.req
local log = util.log
local valid_host = hostname.valid
local bxor = bit.bxor
local bor = bit.bor
local byte = string.byte
local find = string.find
local gsub = string.gsub
local lower = string.lower
local match = string.match
local sub = string.sub
local math_floor = math.floor
local math_max = math.max
local math_min = math.min
local math_random = math.random
local table_sort = table.sort
local ipairs = ipairs
local pairs = pairs
local pcall = pcall
local setmetatable = setmetatable
local tonumber = tonumber
local tostring = tostring
local type = type
local os_getenv = os.getenv

local _M = { _VERSION = "0.1.0" }

local json = cjson.new()

local LIST_LIMIT = 100
local LIST_LIMIT_MAX = 1000

local function now()
  ngx_update_time()
  return ngx_now()
end

-- An empty list encodes as [] with OpenResty's cjson (array_mt); Debian's lua-cjson has no
-- array_mt, and an empty table there stands for this placeholder until after encoding.
local EMPTY = "\0empty array\0"
local EMPTY_JSON = json.encode(EMPTY)

local function array(t)
  if cjson.array_mt then
    return setmetatable(t, cjson.array_mt)
  end
  return #t == 0 and EMPTY or t
end

local function reply(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  local text = json.encode(body)
  if not cjson.array_mt then
    text = gsub(text, EMPTY_JSON, "[]", nil)
  end
  ngx.say(text)
  return ngx.exit(status)
end

-- Constant time in the length of the expected token.
local function token_ok(expected, got)
  if type(got) ~= "string" then
    return false
  end
  local diff = #got == #expected and 0 or 1
  for i = 1, #expected do
    diff = bor(diff, bxor(byte(expected, i), byte(got, i) or 0))
  end
  return diff == 0
end

local function key_types(autossl, args)
  local typ = args.type
  if typ ~= nil then
    for _, t in ipairs(autossl.config.domain_key_types) do
      if t == typ then
        return { typ }
      end
    end
    return nil, "unknown key type " .. tostring(typ)
  end
  return autossl.config.domain_key_types
end

-- The CA a name's certificates come from: the one recorded in a stored entry (more than one
-- issuer), else the only (first) one configured.
local function ca_of(autossl, types)
  for _, f in pairs(types) do
    if f.ca then
      return f.ca
    end
  end
  local conf = autossl.client and autossl.client.conf
  return conf and conf.api_uri
end

-- The ACME problem type in an error message, when it names one.
local function problem_of(err)
  local t = type(err) == "string" and match(err, "urn:ietf:params:acme:error:[%w]+")
  return t and { type = t } or nil
end

-- Backoff state of a name: attempts, next try (resty.acme.backoff, by cause and key type; a
-- failure_lock left by lua-resty-acme is honoured too), last error.
local function backoff(autossl, name)
  local storage = autossl.storage
  local attempts = tonumber((storage:get(keys.FAILED_ATTEMPTS .. name))) or 0
  local until_t = tonumber((storage:get(keys.FAILURE_LOCK .. name)))
    or backoff_state.until_any(storage, name)
  local last_error = ondemand.last_error(storage, name)
  local t = now()
  local states = {}
  local latest -- the state of the most recent failure, at any issuer
  for _, typ in ipairs({ "rsa", "ecc" }) do
    for i = 1, math_max(1, issuers.count()) do
      local st = backoff_state.get(storage, name, typ, i)
      if st then
        st.type = typ
        st.issuer = i
        st.fingerprint = nil
        states[#states + 1] = st
        if not latest or (tonumber(st.failed_at) or 0) > (tonumber(latest.failed_at) or 0) then
          latest = st
        end
      end
    end
  end
  return {
    attempts = attempts,
    cooloff_until = until_t or ngx_null,
    in_cooloff = until_t ~= nil and until_t > t,
    states = array(states),
    last_error = last_error or ngx_null,
    -- the CA's whole problem document (subproblems too) when one was kept
    last_problem = latest and latest.problem or problem_of(last_error) or ngx_null,
  }
end

-- Allowed or not, and by which rule.
local function rule_for(autossl, name, is_renewal)
  local conf = autossl.config
  local ok, allowed = pcall(autossl.is_domain_whitelisted, name, is_renewal,
    { renewal = is_renewal, admin = true })
  if not ok then
    return false, "domain_whitelist_callback raised: " .. tostring(allowed)
  end
  if conf.domain_whitelist_callback then
    return allowed and true or false, "domain_whitelist_callback " .. (allowed and "allowed" or "refused")
  end
  if not conf.domain_whitelist then
    return true, "no domain_whitelist: every name is allowed"
  end
  if not allowed then
    return false, "not in domain_whitelist"
  end
  if allowed == name then
    return true, "domain_whitelist entry " .. name
  end
  return true, "domain_whitelist entry " .. tostring(allowed)
end

-- The CA's renewal window (ARI) of a certificate as every worker shares it, when known.
local function with_ari(storage, f)
  if f.fingerprint_sha256 then
    local win = renewal.shared_window(storage, f.fingerprint_sha256)
    if win then
      f.ari = { start = win.start, ["end"] = win["end"], explanation_url = win.explanation_url,
                next_query = win.next_query, error = win.error }
    end
  end
  return f
end

local function list(autossl, args)
  local storage = autossl.storage
  local conf = autossl.config
  local listed, err = storage:list(keys.DOMAIN)
  if err then
    return reply(500, { error = "cannot list certificates: " .. tostring(err) })
  end
  local name_f = args.name and lower(args.name)
  local type_f = args.type
  local due_f = args.due == "1" or args.due == "true"
  local within = tonumber(args.expiring_within)
  local offset = math_max(0, math_floor(tonumber(args.offset) or 0))
  local limit = math_min(LIST_LIMIT_MAX, math_max(1, math_floor(tonumber(args.limit) or LIST_LIMIT)))
  -- what the key says is filtered before anything is read
  local selected = {}
  for _, key in ipairs(listed) do
    local typ, name = inventory.split_key(key)
    if typ and (not type_f or typ == type_f) and (not name_f or find(name, name_f, 1, true)) then
      selected[#selected + 1] = key
    end
  end
  table_sort(selected)
  local t = now()
  local certs = {}
  local total
  if due_f or within then
    -- filters on the content read every selected entry (its dates parsed once per worker and
    -- value); the page's entries are parsed in full
    local matched = 0
    for _, key in ipairs(selected) do
      local b = inventory.brief(storage, key, conf.renew_threshold)
      if b and b.not_after and (not due_f or (b.due_at and t >= b.due_at))
          and (not within or b.not_after - t <= within) then
        matched = matched + 1
        if matched > offset and #certs < limit then
          local f = inventory.facts(storage, key, conf.renew_threshold, t)
          if f then
            certs[#certs + 1] = with_ari(storage, f)
          end
        end
      end
    end
    total = matched
  else
    total = #selected
    for i = offset + 1, math_min(#selected, offset + limit) do
      local f = inventory.facts(storage, selected[i], conf.renew_threshold, t)
      if f then
        certs[#certs + 1] = with_ari(storage, f)
      end
    end
  end
  local failures = {}
  local fkeys = storage:list(keys.FAILED_ATTEMPTS) or {}
  table_sort(fkeys)
  for _, key in ipairs(fkeys) do
    local name = sub(key, #keys.FAILED_ATTEMPTS + 1)
    if #failures < limit and (not name_f or find(name, name_f, 1, true)) then
      local b = backoff(autossl, name)
      if b.attempts > 0 then
        b.name = name
        failures[#failures + 1] = b
      end
    end
  end
  local next_offset = offset + limit < total and offset + limit or nil
  return reply(200, { total = total, offset = offset, limit = limit, next_offset = next_offset,
                      certificates = array(certs), failures = array(failures),
                      backoff = array(backoff_state.list(storage)),
                      dns_persist = dns_persist_log.records(storage) })
end

local function show(autossl, name)
  local storage = autossl.storage
  local conf = autossl.config
  local t = now()
  local types = {}
  local any = false
  for _, typ in ipairs(conf.domain_key_types) do
    local f = inventory.facts(storage, keys.domain(typ, name), conf.renew_threshold, t)
    if f then
      any = true
      f.name, f.type = nil, nil
      types[typ] = with_ari(storage, f)
    end
  end
  local allowed, rule = rule_for(autossl, name, any)
  local out = backoff(autossl, name)
  out.name = name
  out.allowed = allowed
  out.rule = rule
  out.stored = any
  out.certificates = types
  out.lock_holder = storage:get(keys.UPDATE_LOCK .. name) or ngx_null
  out.ca = ca_of(autossl, types)
  if not any and not out.in_cooloff and out.attempts == 0 then
    return reply(404, out)
  end
  return reply(200, out)
end

-- Kong's test of the http-01 path: a token of our own is published as a challenge and fetched
-- through the name, as the CA would, before the CA is asked anything.
local function self_test(autossl, name)
  local handler = autossl.client.challenge_handlers["http-01"]
  if not handler then
    return true -- only http-01 has a path to test
  end
  local token = "selftest" .. tostring(math_random(1e9)) .. tostring(math_floor(now() * 1000))
  local value = token .. ".self-test"
  local err = handler:register_challenge(token, value, { name })
  if err then
    return nil, "self-test: cannot publish the test token: " .. tostring(err)
  end
  local port = autossl.config.preflight_port or 80
  local url = "http://" .. name .. ":" .. port .. "/.well-known/acme-challenge/" .. token
  local http = transport.new({ timeout = math_floor((autossl.config.preflight_timeout or 5) * 1000),
                               keepalive = false })
  local res, rerr = http:request("GET", url)
  handler:cleanup_challenge(token, { name })
  if res and res.status == 200 and res.body == value then
    return true
  end
  if res then
    rerr = "got status " .. res.status .. (res.status == 200 and " with another body" or "")
  end
  return nil, "self-test failed: " .. url .. " " .. tostring(rerr) .. " (the CA was not asked)"
end

local function order_now(autossl, name, args)
  local storage = autossl.storage
  local conf = autossl.config
  local types, terr = key_types(autossl, args)
  if not types then
    return reply(400, { error = terr })
  end
  local allowed, rule = rule_for(autossl, name, false)
  if not allowed then
    return reply(403, { error = "name not allowed: " .. rule, name = name })
  end
  if args.force == "1" or args.force == "true" then
    storage:delete(keys.FAILURE_LOCK .. name)
    backoff_state.clear(storage, name)
  end
  local b = backoff(autossl, name)
  if b.in_cooloff then
    return reply(409, { error = "in cooloff after a failure (force=1 ends it)", name = name,
                        cooloff_until = b.cooloff_until, last_error = b.last_error })
  end
  local holder = storage:get(keys.UPDATE_LOCK .. name)
  if holder then
    return reply(409, { error = "an update is running", name = name, lock_holder = holder })
  end
  if args.self_test == "1" or args.self_test == "true" then
    local ok, serr = self_test(autossl, name)
    if not ok then
      return reply(502, { error = serr, name = name })
    end
  end
  local results = {}
  local failed = false
  for _, typ in ipairs(types) do
    local key = keys.domain(typ, name)
    local before = inventory.facts(storage, key, conf.renew_threshold, now())
    local data = { domain = name, type = typ, renew = false, ctx = { renewal = false, admin = true } }
    if before and before.fingerprint_sha256 then
      data.renew = true
      data.ctx.renewal = true
      data.fingerprint = before.fingerprint_sha256
      local entry = inventory.entry(storage, key)
      data.replaces = entry and core.ari_cert_id(entry.cert) or nil
    end
    local err = autossl.update_cert(data)
    local after = inventory.facts(storage, key, conf.renew_threshold, now())
    local r = { type = typ, action = data.renew and "renew" or "order",
                old_serial = before and before.serial }
    if err then
      r.error = tostring(err)
      failed = true
    elseif not after or not after.serial or (before and after.serial == before.serial) then
      r.error = "not updated (another update or a cooloff got in the way)"
      failed = true
    else
      r.serial = after.serial
      r.not_after = after.not_after
    end
    autossl._forget(name, typ)
    results[#results + 1] = r
  end
  return reply(failed and 502 or 200, { name = name, results = array(results) })
end

-- Kong's PATCH: renew now, in a background job, every stored certificate that is due (all of
-- them with all=1), one at a time; answers at once with how many were scheduled.
local function renew_job(premature, autossl, list_of)
  if premature then
    return
  end
  for _, c in ipairs(list_of) do
    local ok, err = pcall(autossl.update_cert, c)
    if not ok or err then
      log(ngx.ERR, "admin: renewal of ", c.domain, " (", c.type, ") failed: ", tostring(err))
    end
  end
end

local function renew_all(autossl, args)
  local storage = autossl.storage
  local conf = autossl.config
  local all = args.all == "1" or args.all == "true"
  local listed, err = storage:list(keys.DOMAIN)
  if err then
    return reply(500, { error = "cannot list certificates: " .. tostring(err) })
  end
  local t = now()
  local todo = {}
  for _, key in ipairs(listed) do
    local f = inventory.facts(storage, key, conf.renew_threshold, t)
    if f and f.fingerprint_sha256 and (all or f.renewal_due) then
      local entry = inventory.entry(storage, key)
      todo[#todo + 1] = { domain = f.name, type = f.type, renew = true,
                          fingerprint = f.fingerprint_sha256,
                          replaces = entry and core.ari_cert_id(entry.cert) or nil,
                          ctx = { renewal = true, admin = true } }
    end
  end
  if #todo > 0 then
    local ok, terr = ngx_timer_at(0, renew_job, autossl, todo)
    if not ok then
      return reply(500, { error = "cannot start the renewal job: " .. tostring(terr) })
    end
  end
  return reply(202, { scheduled = #todo })
end

local function delete(autossl, name, args)
  local storage = autossl.storage
  local types, terr = key_types(autossl, args)
  if not types then
    return reply(400, { error = terr })
  end
  local revoke = args.revoke == "1" or args.revoke == "true"
  local reason = tonumber(args.reason)
  local deleted, revoked, errors = {}, {}, {}
  for _, typ in ipairs(types) do
    local key = keys.domain(typ, name)
    local entry, gerr = inventory.entry(storage, key)
    if gerr then
      errors[#errors + 1] = typ .. ": " .. tostring(gerr)
    end
    local keep = false
    if entry and revoke then
      local ok, rerr = autossl.client:revoke_certificate(entry.cert, { reason = reason })
      if ok then
        revoked[#revoked + 1] = typ
        events.emit("revoked", { domain = name, type = typ })
      else
        -- a certificate that could not be revoked is kept: the operator retries
        errors[#errors + 1] = typ .. ": " .. tostring(rerr)
        keep = true
      end
    end
    if entry and not keep then
      local derr = storage:delete(key)
      if derr then
        errors[#errors + 1] = typ .. ": cannot delete: " .. tostring(derr)
      else
        deleted[#deleted + 1] = typ
      end
    end
    autossl._forget(name, typ)
  end
  if #deleted == 0 and #errors == 0 then
    return reply(404, { error = "no stored certificate", name = name })
  end
  log(ngx.NOTICE, "admin: deleted ", name, " (", #deleted, " key types, ", #revoked, " revoked)")
  return reply(#errors > 0 and 502 or 200, { name = name, deleted = array(deleted),
                                              revoked = array(revoked), errors = array(errors) })
end

local function why(autossl, name)
  local storage = autossl.storage
  local conf = autossl.config
  local out = { name = name, valid_name = valid_host(name) }
  if not out.valid_name then
    out.answer = "fallback: not a valid host name"
    return reply(200, out)
  end
  local stored, cached = {}, {}
  local any = false
  for _, typ in ipairs(conf.domain_key_types) do
    local raw = storage:get(keys.domain(typ, name))
    stored[typ] = raw ~= nil
    any = any or raw ~= nil
    cached[typ] = autossl._cache_state(name, typ)
  end
  local allowed, rule = rule_for(autossl, name, false)
  local b = backoff(autossl, name)
  out.allowed = allowed
  out.rule = rule
  out.stored = stored
  out.cached = cached
  out.backoff = b
  out.lock_holder = storage:get(keys.UPDATE_LOCK .. name)
  out.blocking = conf.blocking and true or false
  out.ask = conf.ask ~= nil
  if not allowed then
    out.answer = "fallback: not allowed (" .. rule .. ")"
  elseif any then
    out.answer = "served from the store"
  elseif b.in_cooloff then
    out.answer = "fallback: in backoff after a failed order until " .. tostring(b.cooloff_until)
  elseif out.lock_holder ~= nil then
    out.answer = "fallback: an order is running"
  else
    out.answer = "fallback: not issued yet; the next handshake orders it"
  end
  return reply(200, out)
end

-- serve(autossl, opts): the content handler.
-- The bearer token check of opts { token = } or { token_env = "VAR" } (the variable read per
-- request; nginx passes it to Lua only with `env VAR;`). A configured but empty or missing
-- token refuses every request: a forgotten `env` line never opens the API.
function _M.authorize(opts, realm)
  local expected = opts.token
  if opts.token_env ~= nil then
    expected = os_getenv(opts.token_env)
    if expected == nil or expected == "" then
      return false, 503, "the admin token variable " .. tostring(opts.token_env)
        .. " is not set (env " .. tostring(opts.token_env) .. "; in nginx.conf?)"
    end
  elseif expected == nil then
    return true
  end
  if type(expected) ~= "string" or expected == "" then
    return false, 503, "the admin token is empty"
  end
  local auth = ngx_req.get_headers()["authorization"]
  local got = type(auth) == "string" and match(auth, "^[Bb]earer%s+(%S+)%s*$")
  if not token_ok(expected, got) then
    ngx.header["WWW-Authenticate"] = 'Bearer realm="' .. realm .. '"'
    return false, 401, "unauthorized"
  end
  return true
end

function _M.serve(autossl, opts)
  opts = opts or {}
  local ok, status, err = _M.authorize(opts, "acme-admin")
  if not ok then
    return reply(status, { error = err })
  end
  if not autossl.storage then
    return reply(503, { error = "autossl is not initialized in this worker" })
  end
  local method = ngx_req.get_method()
  local uri = ngx_var.uri or ""
  local args = ngx_req.get_uri_args() or {}
  for k, v in pairs(args) do
    if type(v) ~= "string" then
      args[k] = type(v) == "table" and tostring(v[1]) or nil
    end
  end
  local kind, raw = match(uri, "/(certificates)/([^/]+)/?$")
  if not kind then
    kind, raw = match(uri, "/(why)/([^/]+)/?$")
  end
  if not kind then
    if method == "PATCH" then
      return renew_all(autossl, args)
    elseif method ~= "GET" and method ~= "HEAD" then
      return reply(405, { error = "method not allowed" })
    end
    return list(autossl, args)
  end
  local name = lower(ngx_unescape_uri(raw))
  if #name > 253 then
    return reply(400, { error = "name too long" })
  end
  if kind == "why" then
    return why(autossl, name)
  end
  if method == "GET" or method == "HEAD" then
    return show(autossl, name)
  elseif method == "POST" or method == "PUT" then
    if not valid_host(name) and not find(name, "^%*%.") then
      return reply(400, { error = "not a valid host name", name = name })
    end
    return order_now(autossl, name, args)
  elseif method == "DELETE" then
    return delete(autossl, name, args)
  end
  return reply(405, { error = "method not allowed" })
end

_M._token_ok = token_ok

return _M
