-- Counters for autossl, shared by all workers through a shared dict. The handshake path only
-- bumps a per-worker Lua table; a timer folds those into the dict once a second, so serving a
-- certificate never takes the dict's lock.
local keys = require("resty.acme.autossl.keys")

local ngx = ngx
local ngx_shared = ngx.shared
local ngx_timer_every = ngx.timer.every
local ipairs = ipairs
local pairs = pairs
local tostring = tostring
local tonumber = tonumber
local concat = table.concat
local sort = table.sort
local find = string.find
local sub = string.sub
local format = string.format
local math_huge = math.huge
local gsub = string.gsub
local match = string.match

local _M = { _VERSION = "0.16.0" }

local PREFIX = keys.METRICS

local HELP = {
  acme_handshakes_total = "TLS handshakes seen by ssl_certificate(), by how they were served",
  acme_orders_total = "certificate orders, by key type and result",
  acme_renewals_total = "renewals started by the renewal check, by key type",
  acme_lock_busy_total = "updates skipped because another worker or node held the lock",
  acme_orders_refused_total = "new names not ordered, by reason (ask, budget_*, busy)",
  acme_orders_queued_total = "names queued because the CA's order budget was spent",
  acme_orders_dequeued_total = "queued names ordered as the order budget refilled",
  acme_endpoint_orders_total = "orders of the order endpoint (resty.acme.order_endpoint), by result",
  acme_issue_duration_seconds = "time from the start of an order to the stored certificate, by key type",
}

-- Histograms: name -> upper bounds of the buckets (seconds); "+Inf" is added.
local HISTOGRAMS = {
  acme_issue_duration_seconds = { 1, 2, 5, 10, 20, 30, 60, 120, 300 },
}

local dict
local histogram_order -- (below) sort order of a histogram's samples
local pending = {} -- metric key -> count not yet folded into the dict
local sources = {} -- { key, fn, last }: counters kept elsewhere (the native callback's)

local function pull_sources()
  for _, src in ipairs(sources) do
    local v = src[2]()
    if v > src[3] then
      pending[src[1]] = (pending[src[1]] or 0) + (v - src[3])
      src[3] = v
    end
  end
end

-- key: 'name{label="value",...}'
local function flush()
  if not dict then
    return
  end
  pull_sources()
  for key, n in pairs(pending) do
    if n > 0 then
      dict:incr(PREFIX .. key, n, 0)
      pending[key] = 0
    end
  end
end

-- shm_name: a lua_shared_dict to keep the counters in (nil disables metrics).
function _M.init_worker(shm_name)
  dict = shm_name and ngx_shared[shm_name] or nil
  if dict then
    local ok, err = ngx_timer_every(1, function(premature)
      if not premature then
        flush()
      end
    end)
    if not ok then
      return nil, "cannot start the metrics timer: " .. tostring(err)
    end
  end
  return true
end

-- Per-worker increment (hot path: no dict access).
function _M.inc(key)
  pending[key] = (pending[key] or 0) + 1
end

-- Immediate increment, for rare events.
function _M.add(key, n)
  if dict then
    dict:incr(PREFIX .. key, n or 1, 0)
  end
end

-- observe(name, labels, value): one observation of histogram `name` (labels: 'type="rsa"' or
-- ""), for rare events (a dict write per bucket).
function _M.observe(name, labels, value)
  local bounds = HISTOGRAMS[name]
  if not dict or not bounds then
    return
  end
  local sep = labels ~= "" and "," or ""
  for _, b in ipairs(bounds) do
    if value <= b then
      dict:incr(PREFIX .. name .. "_bucket{" .. labels .. sep .. 'le="' .. b .. '"}', 1, 0)
    end
  end
  dict:incr(PREFIX .. name .. '_bucket{' .. labels .. sep .. 'le="+Inf"}', 1, 0)
  dict:incr(PREFIX .. name .. "_sum{" .. labels .. "}", value, 0)
  dict:incr(PREFIX .. name .. "_count{" .. labels .. "}", 1, 0)
end

-- A counter kept outside Lua: fn() returns its running total in this worker; what it grew by
-- is added to `key` at every flush.
function _M.pull(key, fn)
  for _, src in ipairs(sources) do
    if src[1] == key and src[2] == fn then
      return
    end
  end
  sources[#sources + 1] = { key, fn, fn() }
end

-- The counters as { key = value }, this worker's unflushed counts included.
function _M.snapshot()
  pull_sources()
  local out = {}
  if dict then
    local plen = #PREFIX
    for _, k in pairs(dict:get_keys(0)) do
      if sub(k, 1, plen) == PREFIX then
        out[sub(k, plen + 1)] = tonumber(dict:get(k)) or 0
      end
    end
  end
  for k, n in pairs(pending) do
    out[k] = (out[k] or 0) + n
  end
  return out
end

-- Samples of a histogram: by series, buckets in increasing order, then _count and _sum.
local function series_key(sample)
  local key = match(sample, "^(%S+)")
  local le = match(key, 'le="([^"]+)"')
  local labels = gsub(gsub(key, ',?le="[^"]+"', ""), "^[^{]+", "")
  local kind = match(key, "_bucket{") and 0 or (match(key, "_count{") and 1 or 2)
  return labels, kind, le == "+Inf" and math_huge or tonumber(le) or 0
end

function histogram_order(a, b)
  local la, ka, va = series_key(a)
  local lb, kb, vb = series_key(b)
  if la ~= lb then
    return la < lb
  end
  if ka ~= kb then
    return ka < kb
  end
  return va < vb
end

-- Prometheus text exposition of the counters plus `gauges` ({ key = value }).
function _M.render(gauges, gauge_help)
  local lines = {}
  local by_name = {}
  local function collect(tbl, kind, help)
    for key, v in pairs(tbl) do
      local brace = find(key, "{", 1, true)
      local name = brace and sub(key, 1, brace - 1) or key
      local k = kind
      local base = match(name, "^(.+)_bucket$") or match(name, "^(.+)_sum$")
        or match(name, "^(.+)_count$")
      if base and HISTOGRAMS[base] then
        name, k = base, "histogram"
      end
      local m = by_name[name]
      if not m then
        m = { kind = k, help = help[name], samples = {} }
        by_name[name] = m
      end
      m.samples[#m.samples + 1] = format("%s %s", key, format("%.17g", v))
    end
  end
  collect(_M.snapshot(), "counter", HELP)
  collect(gauges or {}, "gauge", gauge_help or {})
  local names = {}
  for name in pairs(by_name) do
    names[#names + 1] = name
  end
  sort(names)
  for _, name in ipairs(names) do
    local m = by_name[name]
    if m.help then
      lines[#lines + 1] = "# HELP " .. name .. " " .. m.help
    end
    lines[#lines + 1] = "# TYPE " .. name .. " " .. m.kind
    if m.kind == "histogram" then
      sort(m.samples, histogram_order)
    else
      sort(m.samples)
    end
    for _, s in ipairs(m.samples) do
      lines[#lines + 1] = s
    end
  end
  return concat(lines, "\n") .. "\n"
end

return _M
