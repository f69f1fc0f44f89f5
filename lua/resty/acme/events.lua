-- Events of autossl for a user callback (config `events_callback = function(event, data)`):
-- "issued", "renewed", "failed", "expiring" (a certificate due for renewal expires within
-- `events_expiring_within` seconds; at most once per `events_expiring_interval`, an hour, per
-- name and key type in the cluster: the key `events:expiring:<type>:<name>` of the storage
-- marks the window) and "revoked". data: { domain =, type =, error =,
-- not_after =, serial = } as far as known. The callback runs in a timer of its own, never in
-- the handshake or the order; what it raises is caught and logged once per event name and
-- minute, so a broken callback cannot break serving.
local util = require("resty.acme.util")

local ngx = ngx
local ngx_now = ngx.now
local ngx_timer_at = ngx.timer.at
local log = util.log
local error = error
local pcall = pcall
local tonumber = tonumber
local tostring = tostring
local type = type
local math_ceil = math.ceil

local _M = { _VERSION = "0.1.0" }

local EVENTS = { issued = true, renewed = true, failed = true, expiring = true, revoked = true }

local callback
local quiet = {} -- event -> time before which its failures are not logged again
-- "expiring" is emitted by every renewal attempt of a due certificate (every pass while the
-- CA fails, in whichever worker or node runs it): once per name, key type and interval is
-- enough
local expiring_every = 3600
local expiring_sent = {} -- this worker's view of the windows, so that most passes ask no store

local function run(premature, cb, event, data)
  if premature then
    return
  end
  local ok, err = pcall(cb, event, data)
  if not ok then
    local t = ngx_now()
    if (quiet[event] or 0) <= t then
      quiet[event] = t + 60
      log(ngx.ERR, "events_callback failed for event ", event, ": ", tostring(err))
    end
  end
end

-- init(config): from autossl.init; raises on a callback that is not a function.
function _M.init(config)
  local cb = config.events_callback
  if cb ~= nil and type(cb) ~= "function" then
    error("events_callback must be a function, got " .. type(cb))
  end
  callback = cb
  local every = config.events_expiring_interval
  if every ~= nil and (type(every) ~= "number" or every <= 0) then
    error("events_expiring_interval must be a positive number of seconds, got " .. tostring(every))
  end
  expiring_every = tonumber(every) or 3600
end

-- Whether this "expiring" starts a window: not this worker's open one, and (with storage)
-- the cluster's marker is ours (`add` wins once per window; a store that fails to answer
-- leaves this worker's own window in charge).
local function first_in_window(data, storage)
  local k = tostring(data.type) .. ":" .. tostring(data.domain)
  local t = ngx_now()
  if (expiring_sent[k] or 0) > t then
    return false
  end
  expiring_sent[k] = t + expiring_every
  if not storage then
    return true
  end
  local err = storage:add("events:expiring:" .. k, "1", math_ceil(expiring_every))
  if err == nil then
    return true
  end
  if err ~= "exists" then
    log(ngx.WARN, "events: cannot mark the expiring window of ", k, ": ", tostring(err))
    return true
  end
  return false
end

function _M.enabled()
  return callback ~= nil
end

-- emit(event, data, storage?): schedules the callback; never raises. storage (autossl's)
-- makes the "expiring" window the cluster's.
function _M.emit(event, data, storage)
  if not callback or not EVENTS[event] then
    return
  end
  if event == "expiring" and not first_in_window(data, storage) then
    return
  end
  local ok, err = ngx_timer_at(0, run, callback, event, data)
  if not ok then
    log(ngx.WARN, "cannot run events_callback for ", event, ": ", err)
  end
end

return _M
