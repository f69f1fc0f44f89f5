-- Events of autossl for a user callback (config `events_callback = function(event, data)`):
-- "issued", "renewed", "failed", "expiring" (a certificate due for renewal expires within
-- `events_expiring_within` seconds; at most once an hour per name, key type and worker) and
-- "revoked". data: { domain =, type =, error =,
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
local tostring = tostring
local type = type

local _M = { _VERSION = "0.1.0" }

local EVENTS = { issued = true, renewed = true, failed = true, expiring = true, revoked = true }

local callback
local quiet = {} -- event -> time before which its failures are not logged again
-- "expiring" is emitted by every renewal attempt of a due certificate (every pass while the
-- CA fails): once per name, key type and hour per worker is enough
local EXPIRING_EVERY = 3600
local expiring_sent = {}

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
end

function _M.enabled()
  return callback ~= nil
end

-- emit(event, data): schedules the callback; never raises.
function _M.emit(event, data)
  if not callback or not EVENTS[event] then
    return
  end
  if event == "expiring" then
    local k = tostring(data.domain) .. ":" .. tostring(data.type)
    local t = ngx_now()
    if (expiring_sent[k] or 0) > t then
      return
    end
    expiring_sent[k] = t + EXPIRING_EVERY
  end
  local ok, err = ngx_timer_at(0, run, callback, event, data)
  if not ok then
    log(ngx.WARN, "cannot run events_callback for ", event, ": ", err)
  end
end

return _M
