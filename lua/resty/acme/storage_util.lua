-- What several storage adapters share (resty.acme.storage.*): the server conf keys of the HTTP
-- adapters (Consul, Vault).
local tonumber = tonumber
local type = type
local find = string.find
local gsub = string.gsub
local sub = string.sub

local _M = { _VERSION = "0.16.0" }

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
