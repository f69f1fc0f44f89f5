-- Leases in storage: a key taken with `add` and a TTL, extended while its holder works, and
-- released only by its holder. Used for `update_lock:<name>` (one order per name) and for the
-- renewal owner (resty.acme.owner).
--
-- The value is the holder's token as text: the original library, which only tests presence
-- through `add`, still excludes itself. Extending and releasing need the adapter's optional
-- `compare_and_set(k, old, v, ttl)` and `compare_and_delete(k, old)` (docs/STORAGE.md,
-- "Leases"), which return nil, "mismatch" when the key holds another value (or none), or an
-- error. An adapter without them gets today's behaviour: no extension (the lease lives its
-- first TTL) and a release by read-then-delete, with a WARN once.
local util = require("resty.acme.util")

local ngx = ngx
local ngx_now = ngx.now
local ngx_update_time = ngx.update_time
local ngx_timer_at = ngx.timer.at
local ngx_worker_pid = ngx.worker.pid
local ngx_worker_id = ngx.worker.id
local log = util.log
local math_max = math.max
local math_random = math.random
local setmetatable = setmetatable
local tostring = tostring
local type = type

local _M = { _VERSION = "0.16.0" }

local warned = false

local function now()
  ngx_update_time()
  return ngx_now()
end

local function atomic(storage)
  if type(storage.compare_and_set) == "function" and type(storage.compare_and_delete) == "function" then
    return true
  end
  if not warned then
    warned = true
    log(ngx.WARN, "the storage adapter has no compare_and_set/compare_and_delete: locks are ",
      "not extended and are released by read-then-delete (docs/STORAGE.md, \"Leases\")")
  end
  return false
end

-- A token unique across workers and nodes (every nginx starts math.random from the same seed,
-- so the pid and the time are in it too).
function _M.token()
  return tostring(ngx_worker_pid()) .. ":" .. tostring(ngx_worker_id() or 0) .. ":"
    .. tostring(now()) .. ":" .. tostring(math_random(1e9))
end

-- acquire(storage, key, ttl, token?): the token when taken; nil, "exists" when another holds
-- it; nil, err.
function _M.acquire(storage, key, ttl, token)
  token = token or _M.token()
  local err = storage:add(key, token, ttl)
  if err then
    return nil, err
  end
  return token
end

-- extend(storage, key, token, ttl): true while the key is ours (its TTL starts again); nil,
-- "lost" when another holds it or it expired; nil, err when the store cannot tell.
function _M.extend(storage, key, token, ttl)
  if not atomic(storage) then
    local v, err = storage:get(key)
    if err then
      return nil, err
    end
    if v ~= token then
      return nil, "lost"
    end
    return true
  end
  local err = storage:compare_and_set(key, token, token, ttl)
  if err == "mismatch" then
    return nil, "lost"
  elseif err then
    return nil, err
  end
  return true
end

-- release(storage, key, token): true once the key no longer holds our token (a lease taken
-- by another meanwhile is left alone); nil, err.
function _M.release(storage, key, token)
  local err
  if atomic(storage) then
    err = storage:compare_and_delete(key, token)
    if err == "mismatch" then
      err = nil
    end
  else
    local v, gerr = storage:get(key)
    if gerr then
      return nil, gerr
    end
    if v == token then
      err = storage:delete(key)
    end
  end
  if err then
    return nil, err
  end
  return true
end

local Held = {}
Held.__index = Held

-- Whether the lease is still ours as far as this worker knows: not lost, not released, and
-- extended within its TTL (a store that stopped answering may have let it expire).
function Held:held()
  return not self.lost and not self.released and now() < self.until_t
end

-- Extends at once; false when the lease is gone (what it guards must then not be written).
function Held:confirm()
  if not self:held() then
    return false
  end
  local ok, err = _M.extend(self.storage, self.key, self.token, self.ttl)
  if ok then
    self.until_t = now() + self.ttl
    return true
  end
  if err == "lost" then
    self.lost = true
    return false
  end
  log(ngx.WARN, "cannot extend ", self.key, ": ", err)
  return self:held()
end

function Held:release()
  if self.released then
    return true
  end
  self.released = true
  local ok, err = _M.release(self.storage, self.key, self.token)
  if not ok then
    log(ngx.WARN, "failed to release ", self.key, ": ", err)
  end
  return ok, err
end

local function keep(premature, h)
  if premature or h.released or h.lost then
    return
  end
  if not h:confirm() then
    if h.lost then
      log(ngx.WARN, h.key, " was taken over by another holder")
    end
    if h.on_lost then
      h.on_lost(h)
    end
    return
  end
  local ok, err = ngx_timer_at(h.every, keep, h)
  if not ok then
    log(ngx.WARN, "cannot keep extending ", h.key, ": ", err)
  end
end

-- hold(storage, key, ttl, opts?): takes the lease and keeps extending it (every third of its
-- TTL, so two missed extensions still leave it ours) until released. opts.on_lost(h) runs when
-- it is lost. Returns the handle { held(), confirm(), release() }; nil, "exists"; nil, err.
function _M.hold(storage, key, ttl, opts)
  local token, err = _M.acquire(storage, key, ttl)
  if not token then
    return nil, err
  end
  local h = setmetatable({
    storage = storage, key = key, token = token, ttl = ttl,
    every = math_max(0.1, ttl / 3), until_t = now() + ttl,
    on_lost = opts and opts.on_lost,
  }, Held)
  if atomic(storage) then
    local ok, terr = ngx_timer_at(h.every, keep, h)
    if not ok then
      log(ngx.WARN, "cannot keep extending ", key, ": ", terr)
    end
  end
  return h
end

return _M
