-- When each stored certificate of this worker's renewal passes next needs a look: a min-heap of
-- (time, key) with the latest time per key, so that a pass reads only what is due instead of
-- every stored entry. Superseded heap entries are skipped when they surface.
local math_floor = math.floor
local pairs = pairs
local setmetatable = setmetatable
local table_sort = table.sort

local _M = { _VERSION = "0.16.0" }
local mt = { __index = _M }

function _M.new()
  return setmetatable({ at = {}, heap = {}, n = 0, count = 0, listed = nil }, mt)
end

local function up(h, i)
  local e = h[i]
  while i > 1 do
    local p = math_floor(i / 2)
    if h[p][1] <= e[1] then
      break
    end
    h[i] = h[p]
    i = p
  end
  h[i] = e
end

local function down(h, n, i)
  local e = h[i]
  while true do
    local c = i * 2
    if c > n then
      break
    end
    if c < n and h[c + 1][1] < h[c][1] then
      c = c + 1
    end
    if h[c][1] >= e[1] then
      break
    end
    h[i] = h[c]
    i = c
  end
  h[i] = e
end

local function pop(self)
  local h, n = self.heap, self.n
  local top = h[1]
  h[1] = h[n]
  h[n] = nil
  self.n = n - 1
  if self.n > 0 then
    down(h, self.n, 1)
  end
  return top
end

-- note(key, t): look at key again at time t (replaces an earlier time).
function _M:note(key, t)
  if self.at[key] == nil then
    self.count = self.count + 1
  end
  self.at[key] = t
  self.n = self.n + 1
  self.heap[self.n] = { t, key }
  up(self.heap, self.n)
  -- superseded entries pile up only as fast as keys are noted again: compact at 4x
  if self.n > 4 * self.count + 64 then
    local fresh, m = {}, 0
    for k, at in pairs(self.at) do
      m = m + 1
      fresh[m] = { at, k }
    end
    table_sort(fresh, function(a, b) return a[1] < b[1] end)
    self.heap, self.n = fresh, m
  end
end

function _M:forget(key)
  if self.at[key] ~= nil then
    self.at[key] = nil
    self.count = self.count - 1
  end
end

function _M:has(key)
  return self.at[key] ~= nil
end

-- due(now): the keys whose time has come, earliest first; they leave the index (a pass notes
-- them again with their next time).
function _M:due(now)
  local out = {}
  while self.n > 0 and self.heap[1][1] <= now do
    local e = pop(self)
    if self.at[e[2]] == e[1] then
      self.at[e[2]] = nil
      self.count = self.count - 1
      out[#out + 1] = e[2]
    end
  end
  return out
end

-- earliest(): the next time anything is due, or nil.
function _M:earliest()
  while self.n > 0 do
    local e = self.heap[1]
    if self.at[e[2]] == e[1] then
      return e[1]
    end
    pop(self)
  end
  return nil
end

-- sync(keys, now): after a listing, keys not yet known are due now and keys no longer
-- stored are dropped.
function _M:sync(keys, now)
  local seen = {}
  for i = 1, #keys do
    local k = keys[i]
    seen[k] = true
    if self.at[k] == nil then
      self:note(k, now)
    end
  end
  for k in pairs(self.at) do
    if not seen[k] then
      self:forget(k)
    end
  end
  self.listed = now
end

return _M
