-- The order budget of a CA for the whole cluster: a token bucket in storage, and a queue of the
-- names that found it empty, ordered (renewals first, then oldest first) as it refills.
--
-- Defaults follow Let's Encrypt's published limit on new orders (300 per account per 3 hours,
-- a bucket of 300 refilled by one every 36 s). Config (autossl key `order_budget`):
--   { capacity = 300, refill_every = 36, drain_interval = 1 }, or false to disable.
--
-- Storage keys (docs/FORMAT.md), <ca> being the first 12 hex digits of md5(directory URL):
--   order_budget:<ca>            JSON { tokens =, at = } (the bucket)
--   order_budget_lock:<ca>       held while the bucket is read and written (2 s)
--   order_queue:<ca>:<type>:<name>  JSON { renew =, at =, replaces =, fingerprint = }
--   order_queue_waiting:<ca>     "1" while names wait (new names then queue behind them)
--   order_queue_lock:<ca>        held by the worker draining the queue (the renewal owner; the
--                                lock also excludes an original's or a previous owner's drain)
local util = require("resty.acme.util")
local metrics = require("resty.acme.metrics")
local keys = require("resty.acme.autossl.keys")
local renewal_owner = require("resty.acme.owner")
local cjson = require("cjson.safe")

local ngx = ngx
local ngx_now = ngx.now
local ngx_sleep = ngx.sleep
local ngx_md5 = ngx.md5
local ngx_timer_at = ngx.timer.at
local ngx_timer_every = ngx.timer.every
local ngx_worker_pid = ngx.worker.pid
local log = util.log
local ipairs = ipairs
local pcall = pcall
local tonumber = tonumber
local tostring = tostring
local type = type
local math_min = math.min
local math_random = math.random
local sub = string.sub
local table_sort = table.sort

local _M = { _VERSION = "0.16.0" }

local conf -- { capacity =, refill_every =, drain_interval = } or nil (disabled)
local uris = {} -- the directory URLs whose queues this worker drains
local last_full_scan = 0

local function ca_id(uri)
  return sub(ngx_md5(tostring(uri)), 1, 12)
end

local function owner()
  return tostring(ngx_worker_pid()) .. ":" .. tostring(ngx_now()) .. ":" .. tostring(math_random(1e9))
end

-- fn under a short storage lock; nil, err when the lock cannot be had within about a second.
local function locked(storage, key, fn)
  local me = owner()
  for _ = 1, 100 do
    local err = storage:add(key, me, 2)
    if not err then
      local ok, a, b = pcall(fn)
      if storage:get(key) == me then
        storage:delete(key)
      end
      if not ok then
        return nil, a
      end
      return a, b
    end
    if err ~= "exists" then
      return nil, err
    end
    ngx_sleep(0.01)
  end
  return nil, "busy"
end

-- take(storage, ca): true when a token was taken, else false and the seconds until one refills.
local function take(storage, ca)
  return locked(storage, keys.ORDER_BUDGET_LOCK .. ca, function()
    local key = keys.ORDER_BUDGET .. ca
    local now = ngx_now()
    local state = cjson.decode(storage:get(key) or "") or {}
    local tokens = tonumber(state.tokens) or conf.capacity
    local at = tonumber(state.at) or now
    tokens = math_min(conf.capacity, tokens + (now - at) / conf.refill_every)
    local ok = tokens >= 1
    if ok then
      tokens = tokens - 1
    end
    local err = storage:set(key, cjson.encode({ tokens = tokens, at = now }))
    if err then
      error("cannot store the order budget: " .. tostring(err))
    end
    if ok then
      return true
    end
    return false, (1 - tokens) * conf.refill_every
  end)
end

local function enqueue(storage, ca, domain, typ, data)
  local key = keys.ORDER_QUEUE .. ca .. ":" .. typ .. ":" .. domain
  local err = storage:add(key, cjson.encode({
    renew = data.renew == true or nil, at = ngx_now(), replaces = data.replaces,
    fingerprint = data.fingerprint,
  }), 86400)
  storage:set(keys.ORDER_QUEUE_WAITING .. ca, "1", 86400)
  if not err then
    metrics.add('acme_orders_queued_total{reason="budget"}')
    log(ngx.INFO, "order budget of the CA spent: ", domain, " (", typ, ") waits in the queue")
  end
end

-- One pass over the queue of `ca`: renewals first, then oldest first, as long as tokens last.
local function drain(storage, ca, update)
  local waiting = storage:get(keys.ORDER_QUEUE_WAITING .. ca)
  local now = ngx_now()
  if not waiting and now - last_full_scan < 30 then
    return
  end
  last_full_scan = now
  local lerr = storage:add(keys.ORDER_QUEUE_LOCK .. ca, owner(), conf.drain_interval * 5)
  if lerr then
    return
  end
  -- cleared before the listing and set again when names remain: a name queued meanwhile sets
  -- it anew, so it is never lost
  storage:delete(keys.ORDER_QUEUE_WAITING .. ca)
  local prefix = keys.ORDER_QUEUE .. ca .. ":"
  local listed = storage:list(prefix) or {}
  local items = {}
  for _, key in ipairs(listed) do
    local typ, name = sub(key, #prefix + 1):match("^([^:]+):(.+)$")
    local v = typ and cjson.decode(storage:get(key) or "")
    if type(v) == "table" then
      items[#items + 1] = { key = key, typ = typ, name = name, v = v }
    end
  end
  table_sort(items, function(a, b)
    if (a.v.renew == true) ~= (b.v.renew == true) then
      return a.v.renew == true
    end
    return (tonumber(a.v.at) or 0) < (tonumber(b.v.at) or 0)
  end)
  local served = 0
  for _, it in ipairs(items) do
    local ok = take(storage, ca)
    if not ok then
      break
    end
    served = served + 1
    storage:delete(it.key)
    metrics.add('acme_orders_dequeued_total')
    ngx_timer_at(0, function(premature)
      if premature then
        return
      end
      local err = update({ domain = it.name, type = it.typ, renew = it.v.renew == true,
                           replaces = it.v.replaces, fingerprint = it.v.fingerprint,
                           budgeted = true })
      if err then
        log(ngx.ERR, "queued order of ", it.name, " (", it.typ, ") failed: ", err)
      end
    end)
  end
  if served < #items then
    storage:set(keys.ORDER_QUEUE_WAITING .. ca, "1", 86400)
  end
  storage:delete(keys.ORDER_QUEUE_LOCK .. ca)
end

-- init(c, uri): the autossl config's `order_budget` (nil: the defaults; false: no budget) and
-- the directory URL of the (first) CA.
function _M.init(c, uri)
  uris = { uri }
  if c == false then
    conf = nil
    return
  end
  if c ~= nil and type(c) ~= "table" then
    error("order_budget must be a table or false, got " .. type(c))
  end
  c = c or {}
  conf = {
    capacity = tonumber(c.capacity) or 300,
    refill_every = tonumber(c.refill_every) or 36,
    drain_interval = tonumber(c.drain_interval) or 1,
  }
  if conf.capacity < 1 or conf.refill_every <= 0 or conf.drain_interval <= 0 then
    error("order_budget needs capacity >= 1, refill_every > 0 and drain_interval > 0")
  end
end

-- add_ca(uri): one more CA whose queue is drained (more than one issuer).
function _M.add_ca(uri)
  for _, u in ipairs(uris) do
    if u == uri then
      return
    end
  end
  uris[#uris + 1] = uri
end

-- init_worker(storage_fn, update): a timer drains the queue of every CA. One worker of the
-- cluster drains, the renewal owner (resty.acme.owner): the queue is the cluster's, and the
-- others would only read its flag every drain_interval (and list the store every 30 s).
function _M.init_worker(storage_fn, update)
  if not conf then
    return true
  end
  return ngx_timer_every(conf.drain_interval, function(premature)
    if premature or not renewal_owner.owns() then
      return
    end
    local storage = storage_fn()
    if not storage then
      return
    end
    for _, uri in ipairs(uris) do
      local ok, err = pcall(drain, storage, ca_id(uri), update)
      if not ok then
        log(ngx.ERR, "order queue: ", err)
      end
    end
  end)
end

-- admit(storage, domain, typ, data, uri?): true when `domain` may be ordered now from the CA at
-- `uri` (default: the first) and a token was taken; false when it was queued instead. Queued
-- names come back through the update function given to init_worker with `budgeted = true`.
function _M.admit(storage, domain, typ, data, uri)
  if not conf or data.budgeted then
    return true
  end
  local ca = ca_id(uri or uris[1])
  -- new names wait behind anything queued; renewals only behind the budget itself
  if not data.renew and storage:get(keys.ORDER_QUEUE_WAITING .. ca) then
    enqueue(storage, ca, domain, typ, data)
    return false
  end
  local ok, err = take(storage, ca)
  if ok then
    return true
  end
  if ok == nil then
    -- the bucket cannot be read or locked: do not order blind, try again from the queue
    log(ngx.WARN, "order budget unavailable (", err, "), queueing ", domain)
  end
  enqueue(storage, ca, domain, typ, data)
  return false
end

_M.ca_id = ca_id

return _M
