-- What several storage adapters share (resty.acme.storage.*): the stored text of a number, the
-- clock in milliseconds, and the server conf keys of the HTTP adapters (Consul, Vault).
local ngx = ngx
local ngx_now = ngx.now
local ngx_update_time = ngx.update_time
local math_floor = math.floor
local tonumber = tonumber
local tostring = tostring
local type = type
local find = string.find
local format = string.format
local gsub = string.gsub
local sub = string.sub

local _M = { _VERSION = "0.16.0" }

-- fn(key) for every key of `storage` under `prefix`: through the adapter's each_key (paged,
-- bounded memory; redis may give a key twice) when it has one, else through list(). err or nil
function _M.each_key(storage, prefix, fn)
  if storage.each_key then
    return storage:each_key(prefix, fn)
  end
  local keys, err = storage:list(prefix)
  if err then
    return err
  end
  for i = 1, #keys do
    fn(keys[i])
  end
  return nil
end

-- Text of a value as the adapters store it: a string as is, a number as its decimal text
-- (integers without an exponent); nil for any other type.
function _M.text(v)
  local t = type(v)
  if t == "string" then
    return v
  elseif t == "number" then
    if v == math_floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then
      return format("%.0f", v)
    end
    return tostring(v)
  end
  return nil
end

-- Unix time in milliseconds, after updating nginx's cached clock.
function _M.now_ms()
  ngx_update_time()
  return math_floor(ngx_now() * 1000)
end

-- conf.host, conf.port, conf.https and conf.kv_path of an HTTP adapter (errors start with
-- "<name>: "). Returns {
--   conf =,     -- the conf table ({} for nil)
--   host =,     -- conf.host or 127.0.0.1
--   origin =,   -- "http[s]://<host, bracketed when IPv6>:<port>"
--   kv_path =,  -- conf.kv_path or /acme, with one leading "/" and no trailing ones
-- }; or nil, err.
function _M.server_conf(name, conf, default_port)
  if conf == nil then
    conf = {}
  elseif type(conf) ~= "table" then
    return nil, name .. ": conf must be a table"
  end
  local host = conf.host or "127.0.0.1"
  local port = tonumber(conf.port or default_port)
  if type(host) ~= "string" or host == "" then
    return nil, name .. ": conf.host must be a string"
  end
  if not port then
    return nil, name .. ": conf.port must be a number"
  end
  local kv_path = conf.kv_path or "/acme"
  if type(kv_path) ~= "string" then
    return nil, name .. ": conf.kv_path must be a string"
  end
  if sub(kv_path, 1, 1) ~= "/" then
    kv_path = "/" .. kv_path
  end
  local scheme = conf.https and "https" or "http"
  local hostpart = find(host, ":", 1, true) and ("[" .. host .. "]") or host
  return {
    conf = conf,
    host = host,
    origin = scheme .. "://" .. hostpart .. ":" .. port,
    kv_path = (gsub(kv_path, "/+$", "")),
  }
end

return _M
