-- The renewal pass: the stored entries that are due evaluated (the lifetime rule, the CA's
-- renewal window by RFC 9773 ARI), the due ones renewed in order, and the next pass scheduled.
-- One worker of the cluster, the renewal owner (resty.acme.owner), lists the store, at most
-- every renew_check_interval; between listings, and on every other worker (for the entries it
-- stored itself), only what the expiry index (resty.acme.autossl.schedule) says is due is read.
local account = require("resty.acme.autossl.account")
local core = require("resty.acme.core")
local declared = require("resty.acme.declared")
local events = require("resty.acme.events")
local issue = require("resty.acme.autossl.issue")
local keys = require("resty.acme.autossl.keys")
local metrics = require("resty.acme.metrics")
local names = require("resty.acme.autossl.names")
local owner = require("resty.acme.owner")
local renewal = require("resty.acme.renewal")
local schedule = require("resty.acme.autossl.schedule")
local state = require("resty.acme.autossl.state")
local stored = require("resty.acme.autossl.entry")
local util = require("resty.acme.util")

local ngx = ngx
local now = state.now
local log = util.log
local ipairs = ipairs
local pcall = pcall
local math_min = math.min
local setmetatable = setmetatable
local table_sort = table.sort

local _M = { _VERSION = "0.16.0" }

-- what resty.acme.declared takes of autossl: the live handles, the log and the order
local host = setmetatable({ _log = log, update_cert = issue.update_cert }, { __index = state })

-- One stored entry of a renewal pass (`ari()`: whether to ask the CA's window): a candidate
-- { name, typ, replaces, fingerprint, urgent, due_at, not_after } when due, else nil and the
-- time to look at it again (it falls due, or its CA window is to be asked again).
local function evaluate(key, ari)
  local storage = state.storage
  local conf = state.config
  local raw, err = storage:get(key)
  if err or not raw then
    log(ngx.WARN, "renewal: cannot read ", key, ": ", err or "missing")
    return
  end
  local entry, perr = stored.parse(raw)
  if not entry then
    log(ngx.WARN, "renewal: skipping ", key, ": ", perr)
    return
  end
  -- The name is the key's, not the entry's `domain` field: the original renewed wildcard
  -- entries stored with wildcard_domain_in_san under the bare name and never the wildcard.
  local typ, name = keys.parse_domain(key)
  if not typ then
    return
  end
  if not names.allowed(name, true, { renewal = true }) then
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
  local replaces, urgent, look_at
  if use_ari then
    local fp = info[1].fingerprint_sha256
    local win = renewal.window(storage, state.client, entry.cert, info[1], t)
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
    look_at = win and win.next_query
  end
  if not due then
    return nil, look_at and math_min(due_at, look_at) or due_at
  end
  return { name = name, typ = typ, replaces = replaces, urgent = urgent, due_at = due_at,
           not_after = info[1].not_after, fingerprint = info[1].fingerprint_sha256 }
end

local function renew_candidate(c)
  log(ngx.INFO, "renewing ", c.typ, " certificate for ", c.name, " (expires ", c.not_after, ")")
  metrics.add('acme_renewals_total{type="' .. c.typ .. '"}')
  if c.not_after - now() <= state.config.events_expiring_within then
    events.emit("expiring", { domain = c.name, type = c.typ, not_after = c.not_after },
      state.storage)
  end
  local uerr = issue.update_cert({ domain = c.name, renew = true, type = c.typ,
                                   replaces = c.replaces, fingerprint = c.fingerprint })
  if uerr then
    log(ngx.ERR, "renewal of ", c.name, " failed: ", uerr)
  end
end

-- Whether this renewal pass asks the CA for renewal windows: configured, and the CA's
-- directory offers renewalInfo (the directory is fetched at most once per pass).
local function ari_available()
  if not state.config.ari then
    return false
  end
  local ok, err = account.ensure_client()
  if not ok then
    log(ngx.WARN, "renewal: no renewal information this pass: ", err)
    return false
  end
  local dir = state.client.directory
  return dir ~= nil and dir.renewalInfo ~= nil
end

-- pass(list_all): a renewal pass in this worker: the entries the index says are due (all of
-- them after a listing) are evaluated, then the due ones are renewed, those whose CA window
-- ended in the past (revocation) first, then by due time.
local function pass(list_all)
  -- declared names first: the first pass after start issues them
  local dok, missing = pcall(declared.issue, host)
  if not dok then
    log(ngx.ERR, "declared names: ", missing)
  elseif missing > 0 then
    schedule.wake(now())
  end
  local conf = state.config
  local index = schedule.index()
  local t = now()
  local listed = 0
  if list_all or owner.owns()
     and (not index.listed or t - index.listed >= conf.renew_check_interval - 1) then
    local all, err = state.storage:list(keys.DOMAIN)
    if err then
      log(ngx.ERR, "renewal: cannot list certificates: ", err)
    else
      index:sync(all, t)
      listed = #all
    end
  end
  local list = index:due(t)
  -- the client (and its account) only once an entry needs the CA's window
  local ari_state
  local function ari()
    if ari_state == nil then
      ari_state = ari_available()
    end
    return ari_state
  end
  local due = {}
  for _, key in ipairs(list) do
    local ok, c, next_at = pcall(evaluate, key, ari)
    if not ok then
      log(ngx.ERR, "renewal: ", key, ": ", c)
    elseif c then
      due[#due + 1] = c
      -- looked at again soon: what failed (cooloff, CA error) is retried
      index:note(key, t + conf.renew_min_interval)
    elseif next_at then
      index:note(key, next_at)
    end
    -- else unreadable or not allowed: the owner's next listing brings it back
  end
  log(ngx.INFO, "renewal pass: ", listed, " listed, ", #list, " read, ", #due, " due")
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
  schedule.wake(index:earliest())
end

local running = false -- one pass at a time per worker (timer, wake and owner overlap)

-- run_pass(list_all): a pass unless one runs in this worker already. Never raises: what fails
-- for one entry is logged and the pass goes on.
local function run_pass(list_all)
  if running then
    return
  end
  running = true
  local ok, err = pcall(pass, list_all)
  running = false
  if not ok then
    log(ngx.ERR, "renewal pass: ", err)
  end
end
_M.run_pass = run_pass
schedule.set_pass(run_pass)

-- check_renew(premature): the ngx.timer.every callback; a pass in the one worker of the
-- cluster that owns them. Returns nothing, never raises.
function _M.check_renew(premature)
  if premature or not owner.owns() then
    return
  end
  run_pass()
end

-- full_pass(): a pass that lists and reads every stored entry, as the owner's first one does
-- (the bench's P6); the index starts again from that listing.
function _M.full_pass()
  schedule.reset()
  run_pass(true)
end

return _M
