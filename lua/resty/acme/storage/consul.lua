-- Storage in Consul's KV store through its HTTP API, over the project's cosocket transport.
--
-- Layout as the original: KV key `<kv_path>/<key with every "/" replaced by "-">` (kv_path
-- without its leading "/"), the value as the raw body, expiry as KV `flags` = Unix time in
-- milliseconds (0 = none), expired keys deleted lazily on read. Keys are percent-encoded in
-- the URL (Consul decodes them), so names with `#` or `*` land on the same KV key.
-- `add` is atomic: PUT with `cas=0` (create only); a key that exists but has expired is
-- removed with `cas=<ModifyIndex>` and the create is tried once more.
local transport = require("resty.acme.transport")
local http_api = require("resty.acme.http_api")
local storage_util = require("resty.acme.storage_util")

local ngx = ngx
local ngx_now = ngx.now
local ngx_update_time = ngx.update_time
local decode_base64 = ngx.decode_base64
local ipairs = ipairs
local math_floor = math.floor
local setmetatable = setmetatable
local tonumber = tonumber
local tostring = tostring
local type = type
local concat = table.concat
local find = string.find
local format = string.format
local gsub = string.gsub
local sub = string.sub

local _M = { _VERSION = "0.16.0" }
local mt = { __index = _M }

local escape = http_api.escape
local decode = http_api.decode
local text = storage_util.text
local now_ms = storage_util.now_ms
local MAX_BODY = 64 * 1024 * 1024

-- KV key (below kv_path) of a logical key.
local function kv_name(k)
  return (gsub(k, "/", "-"))
end

-- One request; a transport error is retried once. Returns res (any status) or nil, err.
local function request(self, method, path, body)
  return http_api.request(self.transport, method, self.base_url .. path, self.headers, body,
    "consul: " .. method, 2)
end

local function status_error(what, res)
  local body = res.body or ""
  return "consul: " .. what .. " returned status " .. tostring(res.status) .. ": "
    .. sub(gsub(body, "%s+$", ""), 1, 200)
end

-- PUT; returns true (written), false (cas failed), or nil, err.
local function put(self, k, value, ttl, cas)
  local q = {}
  if ttl then
    q[#q + 1] = "flags=" .. format("%.0f", math_floor((ngx_now() + ttl) * 1000))
  end
  if cas then
    q[#q + 1] = "cas=" .. cas
  end
  local path = escape(kv_name(k))
  if #q > 0 then
    path = path .. "?" .. concat(q, "&")
  end
  local res, err = request(self, "PUT", path, value)
  if not res then
    return nil, err
  end
  if res.status ~= 200 then
    return nil, status_error("PUT", res)
  end
  local ok = decode(res.body)
  if ok == true then
    return true
  elseif ok == false then
    return false
  end
  return nil, "consul: PUT returned an invalid response body"
end

-- GET of one key: entry table, or nil when missing, or nil, err.
local function fetch(self, k)
  local res, err = request(self, "GET", escape(kv_name(k)))
  if not res then
    return nil, err
  end
  if res.status == 404 then
    return nil
  end
  if res.status ~= 200 then
    return nil, status_error("GET", res)
  end
  local decoded = decode(res.body)
  if type(decoded) ~= "table" or type(decoded[1]) ~= "table" then
    return nil, "consul: unable to decode response body"
  end
  return decoded[1]
end

local function expired(entry)
  local flags = tonumber(entry.Flags) or 0
  return flags > 0 and flags <= now_ms()
end

local function remove(self, k, cas)
  local path = escape(kv_name(k))
  if cas then
    path = path .. "?cas=" .. format("%.0f", cas)
  end
  local res, err = request(self, "DELETE", path)
  if not res then
    return nil, err
  end
  if res.status ~= 200 then
    return nil, status_error("DELETE", res)
  end
  return decode(res.body) == true
end

function _M.new(conf)
  local srv, serr = storage_util.server_conf("consul", conf, 8500)
  if not srv then
    return nil, serr
  end
  conf = srv.conf
  local kv_path = srv.kv_path
  if kv_path == "" then
    return nil, "consul: conf.kv_path must name a path"
  end
  local timeout = tonumber(conf.timeout or 2000)
  if not timeout or timeout < 0 then
    return nil, "consul: conf.timeout must be a non-negative number of milliseconds"
  end
  local token = conf.token
  if token ~= nil and type(token) ~= "string" then
    return nil, "consul: conf.token must be a string"
  end
  local headers = {}
  if token and token ~= "" then
    headers["X-Consul-Token"] = token
  end
  -- kv_path segments are escaped like keys, "/" kept
  local path_escaped = gsub(kv_path, "[^/]+", escape)
  return setmetatable({
    base_url = srv.origin .. "/v1/kv" .. path_escaped .. "/",
    kv_prefix = sub(kv_path, 2) .. "/",
    headers = headers,
    transport = transport.new({
      timeout = math_floor(timeout),
      ssl_verify = conf.tls_verify ~= false and conf.ssl_verify ~= false,
      max_body = MAX_BODY,
    }),
  }, mt)
end

function _M.set(self, k, v, ttl)
  local value = text(v)
  if not value then
    return "consul: value must be a string or a number, got " .. type(v)
  end
  if ttl ~= nil and ttl <= 0 then
    return self:delete(k)
  end
  ngx_update_time()
  local ok, err = put(self, k, value, ttl)
  if ok == nil then
    return err
  elseif not ok then
    return "consul: PUT returned false"
  end
  return nil
end

function _M.add(self, k, v, ttl)
  local value = text(v)
  if not value then
    return "consul: value must be a string or a number, got " .. type(v)
  end
  if ttl ~= nil and ttl <= 0 then
    return nil
  end
  ngx_update_time()
  for _ = 1, 2 do
    local ok, err = put(self, k, value, ttl, 0)
    if ok == nil then
      return err
    elseif ok then
      return nil
    end
    -- present: is it expired? then remove exactly that version and try once more
    local entry
    entry, err = fetch(self, k)
    if err then
      return err
    end
    if entry then
      if not expired(entry) then
        return "exists"
      end
      local _, derr = remove(self, k, tonumber(entry.ModifyIndex))
      if derr then
        return derr
      end
    end
  end
  return "exists"
end

-- Lease operations (docs/STORAGE.md, "Leases"): check-and-set on the ModifyIndex of the
-- entry whose value was compared, so a write by anyone in between makes them fail.
local function held_entry(self, k, old)
  local entry, err = fetch(self, k)
  if err then
    return nil, err
  end
  if not entry or expired(entry) or type(entry.Value) ~= "string"
     or decode_base64(entry.Value) ~= text(old) then
    return nil, "mismatch"
  end
  return entry
end

function _M.compare_and_set(self, k, old, v, ttl)
  local value = text(v)
  if not value then
    return "consul: value must be a string or a number, got " .. type(v)
  end
  if ttl ~= nil and ttl <= 0 then
    return self:compare_and_delete(k, old)
  end
  local entry, err = held_entry(self, k, old)
  if not entry then
    return err
  end
  ngx_update_time()
  local ok
  ok, err = put(self, k, value, ttl, format("%.0f", tonumber(entry.ModifyIndex) or 0))
  if ok == nil then
    return err
  end
  return not ok and "mismatch" or nil
end

function _M.compare_and_delete(self, k, old)
  local entry, err = held_entry(self, k, old)
  if not entry then
    return err
  end
  local ok
  ok, err = remove(self, k, tonumber(entry.ModifyIndex) or 0)
  if ok == nil then
    return err
  end
  return not ok and "mismatch" or nil
end

function _M.delete(self, k)
  local _, err = remove(self, k)
  return err
end

function _M.get(self, k)
  local entry, err = fetch(self, k)
  if err then
    return nil, err
  end
  if not entry then
    return nil, nil
  end
  if expired(entry) then
    local _, derr = remove(self, k, tonumber(entry.ModifyIndex))
    if derr then
      return nil, derr
    end
    return nil, nil
  end
  local b64 = entry.Value
  if type(b64) ~= "string" then
    -- a key with an empty value
    return nil, nil
  end
  local value = decode_base64(b64)
  if not value then
    return nil, "consul: stored value is not base64"
  end
  return value, nil
end

function _M.list(self, prefix)
  local res, err = request(self, "GET", escape(kv_name(prefix or "")) .. "?keys")
  if not res then
    return {}, err
  end
  if res.status == 404 then
    return {}, nil
  end
  if res.status ~= 200 then
    return {}, status_error("GET", res)
  end
  local keys = decode(res.body)
  if type(keys) ~= "table" then
    return {}, "consul: unable to decode response body"
  end
  local strip = #self.kv_prefix
  local out = {}
  for _, key in ipairs(keys) do
    if type(key) == "string" and sub(key, 1, strip) == self.kv_prefix then
      local name = sub(key, strip + 1)
      -- only keys directly under kv_path are ours
      if name ~= "" and not find(name, "/", 1, true) then
        out[#out + 1] = name
      end
    end
  end
  return out, nil
end

return _M
