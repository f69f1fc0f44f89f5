-- Storage in etcd v3 through its HTTP/JSON gateway (`/v3/kv/...`, etcd 3.4 and later), over
-- the project's cosocket transport (resty.acme.transport).
--
-- Layout as lua-resty-etcd wrote it for the original: key `<key_prefix>/<key>`, value the JSON
-- text of the Lua value (a string is a quoted JSON string with `/` escaped as `\/`; both forms
-- are read), expiry through a lease. `add` is one transaction (put when the key's
-- create_revision is 0), so exactly one of several racing nodes gets "no error".
local transport = require("resty.acme.transport")
local cjson = require("cjson.safe")

local ngx = ngx
local encode_base64 = ngx.encode_base64
local decode_base64 = ngx.decode_base64
local ipairs = ipairs
local math_ceil = math.ceil
local math_floor = math.floor
local math_max = math.max
local setmetatable = setmetatable
local tonumber = tonumber
local tostring = tostring
local type = type
local byte = string.byte
local char = string.char
local find = string.find
local match = string.match
local sub = string.sub

local _M = { _VERSION = "0.16.0" }
local mt = { __index = _M }

-- default cjson settings: the same bytes lua-resty-etcd's json serializer produced
local json = cjson.new()

local HEADERS = { ["Content-Type"] = "application/json" }
local MAX_BODY = 64 * 1024 * 1024
-- keys per range request of list() unless conf.page_size says otherwise: about 100 KiB of
-- response for our key names
local PAGE = 1000

-- The first key after every key that starts with `key` (etcd's prefix range_end).
local function range_end(key)
  for i = #key, 1, -1 do
    local b = byte(key, i)
    if b < 255 then
      return sub(key, 1, i - 1) .. char(b + 1)
    end
  end
  return "\0"
end

-- Stored text of a value: JSON as lua-resty-etcd's serializer made it.
local function serialize(v)
  local t = type(v)
  if t ~= "string" and t ~= "number" then
    return nil
  end
  return json.encode(v)
end

-- Value of stored text: a JSON string gives the string, a JSON number its decimal text;
-- anything else (not JSON, or a JSON object written by someone else) is returned as is.
local function deserialize(raw)
  local v = json.decode(raw)
  local t = type(v)
  if t == "string" then
    return v
  elseif t == "number" then
    return (match(raw, "^%s*(.-)%s*$"))
  end
  return raw
end

local function status_error(res)
  local body = json.decode(res.body or "")
  local msg = type(body) == "table" and (body.message or body.error)
  if type(msg) ~= "string" then
    msg = sub(res.body or "", 1, 200)
  end
  return "status " .. tostring(res.status) .. ": " .. msg
end

-- POST /v3/<path> with a JSON body; a transport error is retried once (on the next host
-- when several are configured). Returns the decoded response or nil, err.
local function call(self, path, body)
  local payload = json.encode(body)
  local hosts = self.hosts
  local attempts = math_max(2, #hosts)
  local res, err
  for i = 1, attempts do
    local host = hosts[(self.current + i - 2) % #hosts + 1]
    res, err = self.transport:request("POST", host .. "/v3/" .. path, HEADERS, payload)
    if res then
      self.current = (self.current + i - 2) % #hosts + 1
      break
    end
  end
  if not res then
    return nil, "etcd: " .. path .. " failed: " .. tostring(err)
  end
  if res.status ~= 200 then
    return nil, "etcd: " .. path .. " returned " .. status_error(res)
  end
  local decoded = json.decode(res.body)
  if type(decoded) ~= "table" then
    return nil, "etcd: " .. path .. " returned an invalid response body"
  end
  return decoded
end

-- A lease for `ttl` seconds: etcd leases are whole seconds, at least 1.
local function grant(self, ttl)
  local res, err = call(self, "lease/grant", { TTL = math_max(1, math_ceil(ttl)), ID = 0 })
  if not res then
    return nil, err
  end
  if res.error then
    return nil, "etcd: lease/grant failed: " .. tostring(res.error)
  end
  if res.ID == nil then
    return nil, "etcd: lease/grant returned no lease id"
  end
  -- int64 ids arrive as JSON strings; keep them as text (a Lua number would lose digits)
  return tostring(res.ID)
end

local function full_key(self, k)
  return self.key_prefix .. "/" .. k
end

-- The put request of `value` (already serialized) at `key` (encoded), on a new lease of `ttl`
-- seconds when given: put, lease id (nil without a ttl); nil, err when no lease was granted.
local function put_request(self, key, value, ttl)
  local put = { key = key, value = encode_base64(value) }
  if not ttl then
    return put
  end
  local lease, err = grant(self, ttl)
  if not lease then
    return nil, err
  end
  put.lease = lease
  return put, lease
end

function _M.new(conf)
  if conf == nil then
    conf = {}
  elseif type(conf) ~= "table" then
    return nil, "etcd: conf must be a table"
  end
  local protocol = conf.protocol or "v3"
  if protocol ~= "v3" then
    return nil, "etcd: only protocol v3 is supported, got " .. tostring(protocol)
  end
  local hosts = conf.http_host or "http://127.0.0.1:4001"
  if type(hosts) == "string" then
    hosts = { hosts }
  end
  if type(hosts) ~= "table" or #hosts == 0 then
    return nil, "etcd: conf.http_host must be a URL or a list of URLs"
  end
  local list = {}
  for i, h in ipairs(hosts) do
    if type(h) ~= "string" or not find(h, "^https?://") then
      return nil, "etcd: conf.http_host[" .. i .. "] must be an http:// or https:// URL"
    end
    list[i] = (h:gsub("/+$", ""))
  end
  local key_prefix = conf.key_prefix or ""
  if type(key_prefix) ~= "string" then
    return nil, "etcd: conf.key_prefix must be a string"
  end
  local timeout = tonumber(conf.timeout or 60)
  if not timeout or timeout < 0 then
    return nil, "etcd: conf.timeout must be a non-negative number of seconds"
  end
  local page_size = tonumber(conf.page_size or PAGE)
  if not page_size or page_size < 1 or page_size ~= math_floor(page_size) then
    return nil, "etcd: conf.page_size must be a positive integer"
  end
  local t = transport.new({
    timeout = math_ceil(timeout * 1000),
    -- nil verifies, as lua-resty-etcd did
    ssl_verify = conf.ssl_verify ~= false,
    max_body = MAX_BODY,
  })
  return setmetatable({
    hosts = list,
    current = 1,
    key_prefix = key_prefix,
    page_size = page_size,
    transport = t,
  }, mt)
end

function _M.set(self, k, v, ttl)
  local value = serialize(v)
  if not value then
    return "etcd: value must be a string or a number, got " .. type(v)
  end
  if ttl ~= nil and ttl <= 0 then
    return self:delete(k)
  end
  local req, err = put_request(self, encode_base64(full_key(self, k)), value, ttl)
  if not req then
    return err
  end
  local _
  _, err = call(self, "kv/put", req)
  return err
end

function _M.add(self, k, v, ttl)
  local value = serialize(v)
  if not value then
    return "etcd: value must be a string or a number, got " .. type(v)
  end
  if ttl ~= nil and ttl <= 0 then
    return nil
  end
  local key = encode_base64(full_key(self, k))
  -- a cheap read first: a held lock costs no lease
  local res, err = call(self, "kv/range", { key = key, count_only = true })
  if not res then
    return err
  end
  if (tonumber(res.count) or 0) > 0 then
    return "exists"
  end
  local put, lease = put_request(self, key, value, ttl)
  if not put then
    return lease
  end
  res, err = call(self, "kv/txn", {
    compare = { { key = key, target = "CREATE", result = "EQUAL", create_revision = "0" } },
    success = { { request_put = put } },
  })
  if not res then
    return err
  end
  if res.succeeded ~= true then
    if lease then
      call(self, "lease/revoke", { ID = lease })
    end
    return "exists"
  end
  return nil
end

-- Lease operations (docs/STORAGE.md, "Leases"): one transaction comparing the stored value.
-- Both forms a string may be stored in are compared (`/` escaped or not, see deserialize).
local function if_value(self, k, old, op)
  local expected = serialize(old)
  if not expected then
    return "etcd: value must be a string or a number, got " .. type(old)
  end
  local key = encode_base64(full_key(self, k))
  local forms = { expected }
  local plain = (expected:gsub("\\/", "/"))
  if plain ~= expected then
    forms[2] = plain
  end
  for _, form in ipairs(forms) do
    local res, err = call(self, "kv/txn", {
      compare = { { key = key, target = "VALUE", result = "EQUAL", value = encode_base64(form) } },
      success = { op(key) },
    })
    if not res then
      return err
    end
    if res.succeeded == true then
      return nil
    end
  end
  return "mismatch"
end

function _M.compare_and_set(self, k, old, v, ttl)
  local value = serialize(v)
  if not value then
    return "etcd: value must be a string or a number, got " .. type(v)
  end
  if ttl ~= nil and ttl <= 0 then
    return self:compare_and_delete(k, old)
  end
  -- a new lease: the old one expires with nothing attached to it
  local put, lease = put_request(self, encode_base64(full_key(self, k)), value, ttl)
  if not put then
    return lease
  end
  local err = if_value(self, k, old, function()
    return { request_put = put }
  end)
  if err and lease then
    call(self, "lease/revoke", { ID = lease })
  end
  return err
end

function _M.compare_and_delete(self, k, old)
  return if_value(self, k, old, function(key)
    return { request_delete_range = { key = key } }
  end)
end

function _M.delete(self, k)
  local _, err = call(self, "kv/deleterange", { key = encode_base64(full_key(self, k)) })
  return err
end

function _M.get(self, k)
  local res, err = call(self, "kv/range", { key = encode_base64(full_key(self, k)) })
  if not res then
    return nil, err
  end
  local kv = type(res.kvs) == "table" and res.kvs[1]
  if not kv then
    return nil, nil
  end
  local raw = decode_base64(kv.value or "")
  if not raw then
    return nil, "etcd: kv/range returned a value that is not base64"
  end
  return deserialize(raw), nil
end

-- Every page of up to PAGE keys under `prefix`, `<key_prefix>/` stripped, to `each(keys)`: a
-- range request with a limit, continued after the last key while etcd says there is more.
local function range_pages(self, prefix, each)
  local start = full_key(self, prefix or "")
  local stop = encode_base64(range_end(start))
  local strip = #self.key_prefix + 1 -- "<key_prefix>/"
  local from = start
  while true do
    local res, err = call(self, "kv/range", {
      key = encode_base64(from),
      range_end = stop,
      keys_only = true,
      limit = self.page_size,
    })
    if not res then
      return err
    end
    local page, last = {}, nil
    for _, kv in ipairs(res.kvs or {}) do
      local key = decode_base64(kv.key or "")
      if key then
        last = key
        page[#page + 1] = sub(key, strip + 1)
      end
    end
    each(page)
    if not res.more or not last then
      return nil
    end
    -- the next key after `last`
    from = last .. "\0"
  end
end

function _M.list(self, prefix)
  local out = {}
  local err = range_pages(self, prefix, function(page)
    for i = 1, #page do
      out[#out + 1] = page[i]
    end
  end)
  if err then
    return {}, err
  end
  return out, nil
end

-- Beyond the original (docs/STORAGE.md): each_key(prefix, fn) calls fn(key) for every key under
-- `prefix`, page by page in bounded memory. err or nil
function _M.each_key(self, prefix, fn)
  return range_pages(self, prefix, function(page)
    for i = 1, #page do
      fn(page[i])
    end
  end)
end

return _M
