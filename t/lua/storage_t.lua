-- Test endpoint for the storage suites: adapters are built in init_by_lua (as autossl builds
-- the client's), and each POST /op runs one adapter method in content_by_lua.
--
-- setup({ <store name> = { adapter = "redis", conf = {...} }, ... }) in init_by_lua.
-- POST /op {"store": name, "method": "set", "args": [...], "dot": false}: arguments are JSON
-- values, where {"s": "<base64>"} stands for a byte string; the answer is
-- {"ret": [...], "n": count} with strings as {"s": "<base64>"} and lists of strings as lists.
-- GET /new_error?store=name tells what new() returned as error (or null).
local cjson = require("cjson.safe")

local ngx = ngx
local ipairs = ipairs
local pairs = pairs
local pcall = pcall
local select = select
local type = type
local unpack = unpack

local _M = {}

local stores = {}
local new_errors = {}

function _M.setup(conf)
  for name, spec in pairs(conf) do
    local adapter = spec.adapter
    if not adapter:find(".", 1, true) then
      adapter = "resty.acme.storage." .. adapter
    end
    local mod = require(adapter)
    local s, err = mod.new(spec.conf)
    stores[name] = s
    new_errors[name] = err or cjson.null
  end
end

local function from_json(v)
  if type(v) == "table" and v.s then
    return ngx.decode_base64(v.s)
  end
  if v == cjson.null then
    return nil
  end
  return v
end

local function to_json(v)
  local t = type(v)
  if t == "string" then
    return { s = ngx.encode_base64(v) }
  elseif t == "table" then
    local out = {}
    for i, x in ipairs(v) do
      out[i] = to_json(x)
    end
    return out
  elseif v == nil then
    return cjson.null
  end
  return v
end

local function reply(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.print(cjson.encode(body))
  return ngx.exit(status)
end

local function pack(...)
  return { n = select("#", ...), ... }
end

function _M.op()
  ngx.req.read_body()
  local raw = ngx.req.get_body_data()
  if not raw then
    local path = ngx.req.get_body_file()
    if path then
      local f = io.open(path, "rb")
      raw = f:read("*a")
      f:close()
    end
  end
  local req = cjson.decode(raw or "")
  if type(req) ~= "table" then
    return reply(400, { error = "bad request" })
  end
  local store = stores[req.store]
  if not store then
    return reply(404, { error = "no store " .. tostring(req.store),
                        new_error = new_errors[req.store] })
  end
  local args = {}
  local nargs = req.nargs or #(req.args or {})
  for i = 1, nargs do
    args[i] = from_json(req.args[i])
  end
  local fn = store[req.method]
  local res
  if req.method == "each_key_collect" then
    -- storage_util.each_key (the adapter's each_key, or list): the keys in the order given
    local keys = {}
    res = pack(pcall(function()
      local err = require("resty.acme.storage_util").each_key(store, args[1], function(k)
        keys[#keys + 1] = k
      end)
      return keys, err, store.each_key ~= nil
    end))
  elseif req.dot then
    -- a plain function call with the adapter as first argument (as kong.cache does)
    res = pack(pcall(fn, store, unpack(args, 1, nargs)))
  else
    res = pack(pcall(function() return store[req.method](store, unpack(args, 1, nargs)) end))
  end
  if not res[1] then
    return reply(500, { error = "raised: " .. tostring(res[2]) })
  end
  local out = {}
  for i = 2, res.n do
    out[i - 1] = to_json(res[i])
  end
  return reply(200, { ret = out, n = res.n - 1 })
end

function _M.new_error()
  local name = ngx.var.arg_store
  return reply(200, { new_error = new_errors[name], exists = stores[name] ~= nil })
end

-- POST /autossl_init {"storage_adapter":..., "storage_config":...}: autossl.init's error.
function _M.autossl_init()
  ngx.req.read_body()
  local req = cjson.decode(ngx.req.get_body_data() or "") or {}
  local autossl = require("resty.acme.autossl")
  local ok, err = pcall(autossl.init, {
    tos_accepted = true,
    domain_whitelist = { "example.test" },
    storage_adapter = req.storage_adapter,
    storage_config = req.storage_config,
    shared_cache = req.shared_cache,
  }, { api_uri = "https://127.0.0.1:1/dir" })
  return reply(200, { ok = ok, error = not ok and tostring(err) or cjson.null })
end

return _M
