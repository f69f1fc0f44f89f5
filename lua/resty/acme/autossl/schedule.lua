-- The wake timer: this worker's early renewal pass when a certificate falls due before the
-- next periodic one (short lifetimes), and this worker's expiry index (resty.acme.due_index:
-- when each stored entry next needs a look; every entry on the renewal owner, those it stored
-- itself on any other worker). The pass itself is resty.acme.autossl.renew's; it registers it
-- here, so that what stores a certificate can schedule without requiring it.
local due_index = require("resty.acme.due_index")
local state = require("resty.acme.autossl.state")
local util = require("resty.acme.util")

local ngx = ngx
local ngx_timer_at = ngx.timer.at
local now = state.now
local log = util.log
local math_max = math.max

local _M = { _VERSION = "0.16.0" }

local wake_at -- this worker's next early pass
local index = due_index.new()
local run_pass -- set by resty.acme.autossl.renew when it loads

local function on_wake(premature, at)
  if premature or at ~= wake_at then
    return
  end
  wake_at = nil
  if run_pass then
    run_pass()
  end
end

-- set_pass(fn): the pass a wake runs.
function _M.set_pass(fn)
  run_pass = fn
end

-- wake(earliest): wake at the earliest due time (nil: nothing due) when it comes before the
-- next periodic pass, never sooner than renew_min_interval from now (a store full of due
-- certificates does not spin). Never raises; a timer that cannot start is logged.
function _M.wake(earliest)
  local conf = state.config
  if not earliest then
    return
  end
  local t = now()
  local at = math_max(earliest, t + conf.renew_min_interval)
  if at >= t + conf.renew_check_interval or (wake_at and wake_at <= at and wake_at > t) then
    return
  end
  wake_at = at
  local ok, err = ngx_timer_at(at - t, on_wake, at)
  if not ok then
    wake_at = nil
    log(ngx.WARN, "renewal: cannot schedule the next check: ", err)
  end
end

-- index(): this worker's expiry index; reset(): a new, empty one (the next pass lists).
function _M.index()
  return index
end

function _M.reset()
  index = due_index.new()
end

-- note(key, at): look at the stored entry `key` again at `at`, waking for it if need be.
function _M.note(key, at)
  index:note(key, at)
  _M.wake(at)
end

return _M
