-- One renewal owner for the cluster: the worker holding the lease `renewal_owner:` in storage
-- (resty.acme.lease) runs the renewal passes; every other worker, on this node and on the
-- others, skips them. The owner extends the lease every third of its TTL; the others try to
-- take it every tenth, so a dead owner is replaced about one TTL after its last extension.
-- The key is outside every prefix the original reads or lists ("domain:", "update_lock:", ...).
local lease = require("resty.acme.lease")
local util = require("resty.acme.util")

local ngx = ngx
local ngx_timer_every = ngx.timer.every
local log = util.log
local math_max = math.max
local pcall = pcall

local _M = { _VERSION = "0.16.0" }

_M.KEY = "renewal_owner:"

local held -- this worker's lease handle while it owns the passes

-- Whether this worker runs the renewal passes now.
function _M.owns()
  return held ~= nil and held:held()
end

-- The holder's token as stored (nil when nobody holds it, or on a store error).
function _M.holder(storage)
  return (storage:get(_M.KEY))
end

local function try(storage_fn, ttl, on_owner)
  if _M.owns() then
    return
  end
  held = nil
  local storage = storage_fn()
  if not storage then
    return
  end
  local h, err = lease.hold(storage, _M.KEY, ttl)
  if not h then
    if err ~= "exists" then
      log(ngx.WARN, "renewal owner: cannot take the lease: ", err)
    end
    return
  end
  held = h
  log(ngx.INFO, "renewal owner: this worker runs the renewal passes (", h.token, ")")
  local ok, perr = pcall(on_owner)
  if not ok then
    log(ngx.ERR, "renewal owner: first pass: ", perr)
  end
end

-- init_worker(storage_fn, ttl, on_owner): a timer in this worker tries to take the lease;
-- on_owner() runs in the worker each time it becomes the owner.
function _M.init_worker(storage_fn, ttl, on_owner)
  return ngx_timer_every(math_max(0.2, ttl / 10), function(premature)
    if premature then
      if held then
        held:release()
      end
      return
    end
    try(storage_fn, ttl, on_owner)
  end)
end

return _M
