-- Storage in Redis through resty.redis (OpenResty's lua-resty-redis; Debian's package
-- lua-nginx-redis installs the same library as `nginx.redis`, which is used when `resty.redis`
-- is not found).
--
-- Keys are `<namespace><key>` holding the value as a Redis string, expiry with PX (the
-- original's layout). Unlike the original, connections are pooled (one pool per server,
-- database, TLS setting and credentials, so pooled connections never mix identities), a
-- transport failure is retried once on a fresh connection, and `list` escapes glob
-- characters in the prefix.
local storage_util = require("resty.acme.storage_util")
local transport = require("resty.acme.transport")

local ngx = ngx
local ngx_md5 = ngx.md5
local ngx_null = ngx.null
local math_floor = math.floor
local math_max = math.max
local pcall = pcall
local rawget = rawget
local require = require
local setmetatable = setmetatable
local tonumber = tonumber
local tostring = tostring
local type = type
local unpack = unpack
local gsub = string.gsub
local sub = string.sub

local redis
do
  local ok, mod = pcall(require, "resty.redis")
  if not ok then
    ok, mod = pcall(require, "nginx.redis")
  end
  if ok then
    redis = mod
  end
end

local _M = { _VERSION = "0.16.0" }
local mt = { __index = _M }

local DEFAULT_TIMEOUT = 1000
local DEFAULT_KEEPALIVE = 60000
local DEFAULT_POOL_SIZE = 16

-- Numbers are stored as their decimal text (integers without an exponent).
local text = storage_util.text

-- Milliseconds for PX: at least 1 (PX 0 is an error in Redis).
local function px(ttl)
  return math_max(1, math_floor(ttl * 1000))
end

-- SCAN MATCH pattern for a literal prefix: escape the glob characters * ? [ ] and \.
local function glob_escape(s)
  return (gsub(s, "[%*%?%[%]\\]", "\\%0"))
end

local function opt_string(conf, name)
  local v = conf[name]
  if v ~= nil and type(v) ~= "string" then
    return nil, "redis: conf." .. name .. " must be a string"
  end
  return v
end

local function opt_number(conf, name, default)
  local v = conf[name]
  if v == nil then
    return default
  end
  v = tonumber(v)
  if not v or v < 0 then
    return nil, "redis: conf." .. name .. " must be a non-negative number"
  end
  return v
end

-- Opens (or takes from the pool) an authenticated connection. Returns red; or nil, err, retry
-- where retry tells whether the failure was in the transport (worth one more attempt).
local function connect(self)
  local red, err = redis:new()
  if not red then
    return nil, "redis: failed to create socket: " .. tostring(err), false
  end
  red:set_timeout(self.timeout)
  local ok
  if self.unix then
    ok, err = red:connect(self.host, self.connect_opts)
  else
    ok, err = red:connect(self.host, self.port, self.connect_opts)
  end
  if not ok then
    return nil, "redis: failed to connect to " .. self.where .. ": " .. tostring(err), true
  end
  if (red:get_reused_times() or 0) > 0 then
    return red
  end
  if self.ssl then
    -- resty.redis before 0.28 has no TLS option: the handshake is done on its cosocket
    local sock = rawget(red, "_sock")
    -- with ssl_verify the certificate must name ssl_server_name, by default the host
    ok, err = transport.tls_handshake(sock, self.ssl_server_name
      or ((not self.unix) and self.host or nil), self.ssl_verify)
    if not ok then
      red:close()
      return nil, "redis: tls handshake with " .. self.where .. " failed: " .. tostring(err), true
    end
  end
  local res
  if self.auth_args then
    res, err = red:auth(unpack(self.auth_args))
    if not res then
      red:close()
      return nil, "redis: authentication failed " .. tostring(err), res == nil
    end
  end
  if self.database then
    res, err = red:select(self.database)
    if not res then
      red:close()
      return nil, "redis: can't select database " .. tostring(err), res == nil
    end
  end
  return red
end

-- Runs op(self, red) on a connection; op returns result, err, transport_failed. A transport
-- failure (on connect or on the command) is retried once on a new connection.
local function run(self, what, op)
  local err
  for _ = 1, 2 do
    local red, cerr, retry = connect(self)
    if red then
      local res, oerr, broken = op(self, red)
      if broken then
        red:close()
        err = "redis: " .. what .. " failed: " .. tostring(oerr)
      else
        red:set_keepalive(self.keepalive_timeout, self.pool_size)
        if oerr then
          return nil, "redis: " .. what .. " failed: " .. tostring(oerr)
        end
        return res
      end
    else
      err = cerr
      if not retry then
        return nil, err
      end
    end
  end
  return nil, err
end

-- resty.redis returns nil, err for socket errors and false, err for Redis error replies.
local function cmd_result(res, err)
  if res == nil then
    return nil, err, true
  elseif res == false then
    return nil, err
  end
  return res
end

function _M.new(conf)
  if conf == nil then
    conf = {}
  elseif type(conf) ~= "table" then
    return nil, "redis: conf must be a table"
  end
  if not redis then
    return nil, "redis: the resty.redis library is not installed (lua-resty-redis, or "
      .. "Debian's lua-nginx-redis)"
  end
  local host, err = opt_string(conf, "host")
  if err then
    return nil, err
  end
  host = host or "127.0.0.1"
  local unix = sub(host, 1, 5) == "unix:"
  local port
  port, err = opt_number(conf, "port", 6379)
  if err then
    return nil, err
  end
  local database = conf.database
  if database ~= nil and database ~= ngx_null then
    database = tonumber(database)
    if not database or database < 0 or database ~= math_floor(database) then
      return nil, "redis: conf.database must be a non-negative integer"
    end
  else
    database = nil
  end
  local namespace
  namespace, err = opt_string(conf, "namespace")
  if err then
    return nil, err
  end
  local username, password, auth
  username, err = opt_string(conf, "username")
  if not err then
    password, err = opt_string(conf, "password")
  end
  if not err then
    auth, err = opt_string(conf, "auth")
  end
  if err then
    return nil, err
  end
  local server_name
  server_name, err = opt_string(conf, "ssl_server_name")
  if err then
    return nil, err
  end
  local scan_count, timeout, keepalive_timeout, pool_size
  scan_count, err = opt_number(conf, "scan_count", 10)
  if not err then
    timeout, err = opt_number(conf, "timeout", DEFAULT_TIMEOUT)
  end
  if not err then
    keepalive_timeout, err = opt_number(conf, "keepalive_timeout", DEFAULT_KEEPALIVE)
  end
  if not err then
    pool_size, err = opt_number(conf, "pool_size", DEFAULT_POOL_SIZE)
  end
  if err then
    return nil, err
  end

  -- AUTH: username + password (Redis 6 ACL), else password, else the legacy `auth` key. A
  -- username without a password sends no AUTH (as the original).
  local auth_args, identity
  if password and password ~= "" then
    if username and username ~= "" then
      auth_args = { username, password }
    else
      auth_args = { password }
    end
  elseif auth and auth ~= "" then
    auth_args = { auth }
  end
  if auth_args then
    -- the pool name holds a digest of the credentials, never the credentials
    identity = ngx_md5((auth_args[2] and (auth_args[1] .. "\0" .. auth_args[2])) or auth_args[1])
  end

  local ssl = conf.ssl and true or false
  -- the original's default (lua-resty-redis): no verification unless asked for
  local ssl_verify = conf.ssl_verify and true or false
  if ssl and not ssl_verify then
    transport.warn_noverify("resty.acme.storage.redis")
  end
  local where = unix and host or (host .. ":" .. port)
  local pool = "resty.acme.redis:" .. where .. ":" .. tostring(database or "") .. ":"
    .. (ssl and ("ssl:" .. tostring(ssl_verify) .. ":" .. tostring(server_name or "")) or "plain")
    .. ":" .. (identity or "")

  return setmetatable({
    host = host,
    port = port,
    unix = unix,
    where = where,
    database = database,
    namespace = namespace or "",
    scan_count = math_max(1, math_floor(scan_count)),
    ssl = ssl,
    ssl_verify = ssl_verify,
    ssl_server_name = server_name,
    auth_args = auth_args,
    timeout = timeout,
    keepalive_timeout = keepalive_timeout,
    pool_size = math_max(1, math_floor(pool_size)),
    connect_opts = { pool = pool, pool_size = math_max(1, math_floor(pool_size)) },
  }, mt)
end

function _M.set(self, k, v, ttl)
  local value = text(v)
  if not value then
    return "redis: value must be a string or a number, got " .. type(v)
  end
  if ttl ~= nil and ttl <= 0 then
    -- already expired: nothing is stored and an older value is gone
    return self:delete(k)
  end
  local key = self.namespace .. k
  local _, err = run(self, "set", function(_, red)
    if ttl then
      return cmd_result(red:set(key, value, "PX", px(ttl)))
    end
    return cmd_result(red:set(key, value))
  end)
  return err
end

function _M.add(self, k, v, ttl)
  local value = text(v)
  if not value then
    return "redis: value must be a string or a number, got " .. type(v)
  end
  if ttl ~= nil and ttl <= 0 then
    return nil
  end
  local key = self.namespace .. k
  local res, err = run(self, "add", function(_, red)
    if ttl then
      return cmd_result(red:set(key, value, "NX", "PX", px(ttl)))
    end
    return cmd_result(red:set(key, value, "NX"))
  end)
  if err then
    return err
  end
  if res == ngx_null then
    return "exists"
  end
  return nil
end

-- Lease operations (docs/STORAGE.md, "Leases"): one script each, so the comparison and the
-- write are one atomic step in Redis.
local CAS_SCRIPT = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
  .. "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end return 0"
local CAS_FOREVER_SCRIPT = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
  .. "redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0"
local CAD_SCRIPT = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
  .. "return redis.call('DEL', KEYS[1]) end return 0"

local function script_result(res, err)
  if err then
    return err
  end
  if tonumber(res) ~= 1 then
    return "mismatch"
  end
  return nil
end

function _M.compare_and_set(self, k, old, v, ttl)
  local expected, value = text(old), text(v)
  if not expected or not value then
    return "redis: value must be a string or a number"
  end
  if ttl ~= nil and ttl <= 0 then
    return self:compare_and_delete(k, old)
  end
  local key = self.namespace .. k
  return script_result(run(self, "compare_and_set", function(_, red)
    if ttl then
      return cmd_result(red:eval(CAS_SCRIPT, 1, key, expected, value, px(ttl)))
    end
    return cmd_result(red:eval(CAS_FOREVER_SCRIPT, 1, key, expected, value))
  end))
end

function _M.compare_and_delete(self, k, old)
  local expected = text(old)
  if not expected then
    return "redis: value must be a string or a number"
  end
  local key = self.namespace .. k
  return script_result(run(self, "compare_and_delete", function(_, red)
    return cmd_result(red:eval(CAD_SCRIPT, 1, key, expected))
  end))
end

function _M.delete(self, k)
  local key = self.namespace .. k
  local _, err = run(self, "delete", function(_, red)
    return cmd_result(red:del(key))
  end)
  return err
end

function _M.get(self, k)
  local key = self.namespace .. k
  local res, err = run(self, "get", function(_, red)
    return cmd_result(red:get(key))
  end)
  if err then
    return nil, err
  end
  if res == ngx_null then
    return nil, nil
  end
  return res, nil
end

-- Every SCAN page of the keys under `prefix`, namespace stripped, to `each(keys)`: one round
-- trip per page and no more than a page in memory. A key may come in more than one page (SCAN
-- does that while the keyspace is rehashed, and a retried connection starts over).
local function scan_pages(self, prefix, each)
  local ns = self.namespace
  local nslen = #ns
  local pattern = glob_escape(ns .. (prefix or "")) .. "*"
  local _, err = run(self, "list", function(s, red)
    local cursor = "0"
    repeat
      local res, serr, broken = cmd_result(red:scan(cursor, "MATCH", pattern, "COUNT", s.scan_count))
      if not res then
        return nil, serr, broken
      end
      cursor = res[1]
      local batch, page = res[2], {}
      for i = 1, #batch do
        local key = batch[i]
        if sub(key, 1, nslen) == ns then
          page[#page + 1] = sub(key, nslen + 1)
        end
      end
      each(page)
    until cursor == "0"
    return true
  end)
  return err
end

function _M.list(self, prefix)
  local seen, out = {}, {}
  local err = scan_pages(self, prefix, function(page)
    for i = 1, #page do
      local key = page[i]
      if not seen[key] then
        seen[key] = true
        out[#out + 1] = key
      end
    end
  end)
  if err then
    return {}, err
  end
  return out, nil
end

-- Beyond the original (docs/STORAGE.md): each_key(prefix, fn) calls fn(key) for every key under
-- `prefix`, page by page in bounded memory; a key may come more than once. err or nil
function _M.each_key(self, prefix, fn)
  return scan_pages(self, prefix, function(page)
    for i = 1, #page do
      fn(page[i])
    end
  end)
end

return _M
