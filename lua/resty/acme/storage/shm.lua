-- Storage in an nginx shared dict (the default adapter).
-- Writes use safe_set/safe_add: a full dict reports "no memory" instead of silently evicting
-- other entries, so a stored certificate is never dropped to make room for a lock.
local ngx = ngx
local setmetatable = setmetatable
local type = type
local sub = string.sub

local _M = { _VERSION = "0.16.0" }
local mt = { __index = _M }

function _M.new(conf)
  local name = type(conf) == "table" and conf.shm_name
  if not name then
    return nil, "conf.shm_name must be provided"
  end
  local shm = ngx.shared[name]
  if not shm then
    return nil, "shm " .. name .. " is not defined"
  end
  return setmetatable({ shm = shm, name = name }, mt)
end

-- A TTL of zero or less would be an already expired entry: nothing to store.
local function expired(ttl)
  return ttl ~= nil and ttl <= 0
end

function _M.set(self, k, v, ttl)
  if expired(ttl) then
    self.shm:delete(k)
    return nil
  end
  local ok, err = self.shm:safe_set(k, v, ttl or 0)
  if not ok then
    return "shm " .. self.name .. ": " .. (err or "set failed")
  end
  return nil
end

function _M.add(self, k, v, ttl)
  if expired(ttl) then
    return nil
  end
  local ok, err = self.shm:safe_add(k, v, ttl or 0)
  if not ok then
    if err == "exists" then
      return "exists"
    end
    return "shm " .. self.name .. ": " .. (err or "add failed")
  end
  return nil
end

function _M.delete(self, k)
  self.shm:delete(k)
  return nil
end

-- Lease operations (docs/STORAGE.md, "Leases"). A shared dict has no compare-and-swap, but
-- nothing between the read and the write below yields, and a holder's key can only change
-- hands by expiring (every lease user deletes through these): one that still has MARGIN
-- seconds to live cannot be taken by another worker before the write lands. One closer to
-- its end is left to expire (a release) or counts as lost (an extension).
local MARGIN = 0.5

local function held(self, k, old)
  local v = self.shm:get(k)
  if v == nil or v ~= old then
    return false
  end
  local ttl = self.shm:ttl(k)
  return ttl ~= nil and (ttl == 0 or ttl > MARGIN), ttl
end

function _M.compare_and_set(self, k, old, v, ttl)
  if not held(self, k, old) then
    return "mismatch"
  end
  return _M.set(self, k, v, ttl)
end

function _M.compare_and_delete(self, k, old)
  local ok, left = held(self, k, old)
  if ok then
    self.shm:delete(k)
  elseif not left then
    return "mismatch"
  end
  return nil
end

function _M.get(self, k)
  local v, err = self.shm:get(k)
  if v == nil and err then
    return nil, "shm " .. self.name .. ": " .. err
  end
  return v, nil
end

function _M.list(self, prefix)
  prefix = prefix or ""
  local keys = self.shm:get_keys(0)
  local out = {}
  local plen = #prefix
  for i = 1, #keys do
    local key = keys[i]
    if sub(key, 1, plen) == prefix then
      out[#out + 1] = key
    end
  end
  return out, nil
end

return _M
