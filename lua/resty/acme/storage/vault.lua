-- Storage in a HashiCorp Vault KV secrets engine (version 2, the default, or version 1) over
-- the project's cosocket transport.
--
-- Layout as the original: `kv_path` is `/<mount>[/<path>]`; a key is the secret
-- `<mount>/data<path>/<key with "/" replaced by "-">` (KV v2) holding
-- `{"value": <value>, "note": "managed by lua-resty-acme"}`; a TTL is the key's metadata
-- `delete_version_after = "<ms>ms"`. Beyond the original:
-- - `add` is atomic (`options.cas`: 0 for a new key, the current version for a key whose
--   versions have all expired);
-- - a `set` without TTL clears a TTL left in the key's metadata by an earlier write;
-- - values that are not UTF-8 (Vault's JSON would replace the bytes) are stored base64 with
--   `"encoding": "base64"` next to the value; text values are stored as before;
-- - kubernetes login happens on first use (never in `new`, which runs in init_by_lua) and is
--   repeated once when Vault refuses the token;
-- - the mount's KV version is asked on first use (`sys/internal/ui/mounts/<mount>`); a
--   `conf.kv_version` that disagrees is an error (a v1 mount written with the v2 layout
--   "succeeded" while TTLs never expired and `delete` deleted nothing);
-- - on a KV v1 mount the expiry is kept in the secret (`expires_at`, Unix ms) and honoured on
--   read; v1 has no check-and-set, so `add` there is read-then-write.
local transport = require("resty.acme.transport")
local http_api = require("resty.acme.http_api")
local storage_util = require("resty.acme.storage_util")
local cjson = require("cjson.safe")

local ngx = ngx
local encode_base64 = ngx.encode_base64
local decode_base64 = ngx.decode_base64
local io_open = io.open
local ipairs = ipairs
local pairs = pairs
local math_floor = math.floor
local setmetatable = setmetatable
local tonumber = tonumber
local tostring = tostring
local type = type
local byte = string.byte
local find = string.find
local format = string.format
local gsub = string.gsub
local lower = string.lower
local match = string.match
local sub = string.sub

local _M = { _VERSION = "0.16.0" }
local mt = { __index = _M }

local json = cjson.new()
local escape = http_api.escape
local text = storage_util.text
local now_ms = storage_util.now_ms
local MAX_BODY = 64 * 1024 * 1024
local NOTE = "managed by lua-resty-acme"

-- Whether s is well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, at most U+10FFFF).
local function valid_utf8(s)
  if not find(s, "[\128-\255]") then
    return true
  end
  local i, n = 1, #s
  while i <= n do
    local c = byte(s, i)
    if c < 0x80 then
      i = i + 1
    elseif c >= 0xC2 and c <= 0xDF then
      local c2 = byte(s, i + 1)
      if not c2 or c2 < 0x80 or c2 > 0xBF then
        return false
      end
      i = i + 2
    elseif c >= 0xE0 and c <= 0xEF then
      local c2, c3 = byte(s, i + 1, i + 2)
      if not c3 or c2 < 0x80 or c2 > 0xBF or c3 < 0x80 or c3 > 0xBF
         or (c == 0xE0 and c2 < 0xA0) or (c == 0xED and c2 > 0x9F) then
        return false
      end
      i = i + 3
    elseif c >= 0xF0 and c <= 0xF4 then
      local c2, c3, c4 = byte(s, i + 1, i + 3)
      if not c4 or c2 < 0x80 or c2 > 0xBF or c3 < 0x80 or c3 > 0xBF or c4 < 0x80 or c4 > 0xBF
         or (c == 0xF0 and c2 < 0x90) or (c == 0xF4 and c2 > 0x8F) then
        return false
      end
      i = i + 4
    else
      return false
    end
  end
  return true
end

local function secret_name(k)
  return escape((gsub(k, "/", "-")))
end

-- The secret's data for a value.
local function secret_data(v)
  local t = type(v)
  if t == "number" then
    return { value = v, note = NOTE }
  elseif t ~= "string" then
    return nil
  end
  if valid_utf8(v) then
    return { value = v, note = NOTE }
  end
  return { value = encode_base64(v), encoding = "base64", note = NOTE }
end

-- The value of a secret's data: text, or nil when the data holds no value.
local function data_value(data)
  if type(data) ~= "table" then
    return nil
  end
  local v = data.value
  local t = type(v)
  if t == "number" then
    -- numbers are stored as JSON numbers (as the original did); callers get decimal text
    return text(v)
  elseif t ~= "string" then
    return nil
  end
  if data.encoding == "base64" then
    return decode_base64(v)
  end
  return v
end

local function vault_errors(body)
  if type(body) == "table" and type(body.errors) == "table" and #body.errors > 0 then
    return "errors from vault: " .. (json.encode(body.errors) or "?")
  end
  return nil
end

local function read_jwt(path)
  local f, err = io_open(path, "r")
  if not f then
    return nil, "vault: can't read the kubernetes service account token: " .. tostring(err)
  end
  local jwt = f:read("*a")
  f:close()
  jwt = jwt and gsub(jwt, "%s+$", "")
  if not jwt or jwt == "" then
    return nil, "vault: the kubernetes service account token " .. path .. " is empty"
  end
  return jwt
end

local request

-- Kubernetes auth method: POST /v1/auth/<auth_path>/login {role, jwt} -> auth.client_token.
local function login(self)
  local jwt, err = read_jwt(self.jwt_path)
  if not jwt then
    return nil, err
  end
  local res
  res, err = request(self, "POST", "/v1/auth/" .. self.auth_path .. "/login",
    { role = self.auth_role, jwt = jwt }, true)
  if not res then
    return nil, err
  end
  local body = json.decode(res.body or "")
  local token = type(body) == "table" and type(body.auth) == "table" and body.auth.client_token
  if res.status ~= 200 or type(token) ~= "string" then
    return nil, "vault: could not authenticate with kubernetes auth (status "
      .. tostring(res.status) .. (vault_errors(body) and (", " .. vault_errors(body)) or "") .. ")"
  end
  self.token = token
  return token
end

-- One API request. A transport error is retried once; with kubernetes auth a 403 leads to
-- one new login. Returns the response (any status) or nil, err.
request = function(self, method, path, payload, no_auth)
  local headers = {}
  for k, v in pairs(self.headers) do
    headers[k] = v
  end
  local kubernetes = not no_auth and self.auth_method == "kubernetes"
  local relogin = kubernetes
  for _ = 1, 2 do
    if not no_auth then
      if kubernetes and not self.token then
        local _, lerr = login(self)
        if lerr then
          return nil, lerr
        end
      end
      headers["X-Vault-Token"] = self.token
    end
    local res, err = http_api.request(self.transport, method, self.base_url .. path, headers,
      payload, "vault: " .. method, 2)
    if not res then
      -- the original's wording, which its callers match
      local where, cause = match(err, "tls handshake with (%S+) failed: (.*)$")
      if where then
        return nil, "unable to SSL handshake with vault server: " .. cause .. " (" .. where .. ")"
      end
      return nil, err
    end
    if res.status ~= 403 or not relogin then
      return res
    end
    self.token = nil
    relogin = false -- one new login, then the 403 stands
  end
  return nil, "vault: permission denied after a new kubernetes login"
end

-- Request plus status handling: returns decoded body (or true for 204), nil for 404, or
-- nil, err.
local function api(self, method, path, payload, what)
  local res, err = request(self, method, path, payload)
  if not res then
    return nil, err
  end
  local body = json.decode(res.body or "")
  if res.status == 404 then
    return nil, nil, body
  end
  if res.status == 204 then
    return true
  end
  local verr = vault_errors(body)
  if res.status < 200 or res.status >= 300 then
    return nil, "vault: " .. what .. " returned status " .. res.status .. (verr and (": " .. verr) or ""), body
  end
  if verr then
    return nil, "vault: " .. what .. ": " .. verr, body
  end
  if type(body) ~= "table" then
    return nil, "vault: " .. what .. ": unable to decode response body"
  end
  return body
end

-- KV v2 read: returns value (or nil), the current version number (0 when none) and err.
local function read_v2(self, k)
  local body, err, nf = api(self, "GET", self.data_path .. secret_name(k), nil, "read")
  if err then
    return nil, nil, err
  end
  if not body then
    -- 404: no secret, or its current version is deleted (then the metadata says which)
    local meta = type(nf) == "table" and type(nf.data) == "table" and nf.data.metadata
    return nil, type(meta) == "table" and tonumber(meta.version) or 0
  end
  local data = type(body.data) == "table" and body.data or {}
  local meta = type(data.metadata) == "table" and data.metadata or {}
  return data_value(data.data), tonumber(meta.version) or 0
end

local function write_metadata(self, k, ttl)
  local dva = "0s"
  if ttl then
    if ttl < 1 then
      -- Vault counts whole seconds at best
      ttl = 1
    end
    dva = format("%dms", math_floor(ttl * 1000))
  end
  local _, err = api(self, "POST", self.metadata_path .. secret_name(k),
    { delete_version_after = dva }, "metadata write")
  return err
end

-- KV v2 write; cas nil = unconditional. Returns true, false (cas mismatch) or nil, err.
local function write_v2(self, k, data, cas)
  local payload = { data = data }
  if cas then
    payload.options = { cas = cas }
  end
  local res, err = request(self, "POST", self.data_path .. secret_name(k), payload)
  if not res then
    return nil, err
  end
  if res.status >= 200 and res.status < 300 then
    return true
  end
  local body = json.decode(res.body or "")
  local verr = vault_errors(body)
  if cas and res.status == 400 and verr and find(verr, "check-and-set", 1, true) then
    return false
  end
  return nil, "vault: write returned status " .. res.status .. (verr and (": " .. verr) or "")
end

-- KV v1 read: value or nil (expired entries are deleted), err.
local function read_v1(self, k)
  local body, err = api(self, "GET", self.data_path .. secret_name(k), nil, "read")
  if err then
    return nil, err
  end
  if not body then
    return nil
  end
  local data = type(body.data) == "table" and body.data or nil
  local expires = data and tonumber(data.expires_at)
  if expires and expires <= now_ms() then
    local _, derr = api(self, "DELETE", self.data_path .. secret_name(k), nil, "delete")
    if derr then
      return nil, derr
    end
    return nil
  end
  return data_value(data)
end

local function write_v1(self, k, data, ttl)
  if ttl then
    data.expires_at = now_ms() + math_floor(ttl * 1000)
  end
  local _, err = api(self, "POST", self.data_path .. secret_name(k), data, "write")
  return err
end

function _M.new(conf)
  local srv, serr = storage_util.server_conf("vault", conf, 8200)
  if not srv then
    return nil, serr
  end
  conf = srv.conf
  local mount, path = match(srv.kv_path, "^/([^/]+)(.*)$")
  if not mount then
    return nil, "vault: conf.kv_path must start with a mount name"
  end
  local kv_version
  if conf.kv_version ~= nil then
    kv_version = tonumber(conf.kv_version)
    if kv_version ~= 1 and kv_version ~= 2 then
      return nil, "vault: conf.kv_version must be 1 or 2"
    end
  end
  local timeout = tonumber(conf.timeout or 2000)
  if not timeout or timeout < 0 then
    return nil, "vault: conf.timeout must be a non-negative number of milliseconds"
  end

  local auth_method = lower(conf.auth_method or "token")
  local self = {
    auth_method = auth_method,
    -- the configured version; the mount's is asked on first use (new runs in init_by_lua)
    kv_version_conf = kv_version,
    mount = mount,
    headers = {},
  }
  if auth_method == "token" then
    if conf.token ~= nil and type(conf.token) ~= "string" then
      return nil, "vault: conf.token must be a string"
    end
    self.token = conf.token
  elseif auth_method == "kubernetes" then
    self.auth_path = conf.auth_path or "kubernetes"
    self.auth_role = conf.auth_role
    self.jwt_path = conf.jwt_path or "/var/run/secrets/kubernetes.io/serviceaccount/token"
    if type(self.auth_role) ~= "string" or self.auth_role == "" then
      return nil, "vault: kubernetes auth needs conf.auth_role"
    end
    -- fail early on a missing token file; it is read again at each login (tokens rotate)
    local _, jerr = read_jwt(self.jwt_path)
    if jerr then
      return nil, jerr
    end
  else
    return nil, "vault: unknown authentication method " .. auth_method
  end

  if conf.namespace ~= nil then
    if type(conf.namespace) ~= "string" then
      return nil, "vault: conf.namespace must be a string"
    end
    self.headers["X-Vault-Namespace"] = conf.namespace
  end

  local topts = { timeout = math_floor(timeout), max_body = MAX_BODY }
  if conf.https then
    if conf.tls_server_name ~= nil
       and (type(conf.tls_server_name) ~= "string" or conf.tls_server_name == "") then
      return nil, "vault: conf.tls_server_name must be a non-empty string"
    end
    -- the certificate must name it: a DNS name (also the SNI) or an IP literal (its IP SANs)
    local server_name = conf.tls_server_name or srv.host
    topts.server_name = server_name
    self.headers["Host"] = server_name
    topts.ssl_verify = conf.tls_verify ~= false
  end
  self.transport = transport.new(topts)
  self.base_url = srv.origin
  self.mount_e = escape(mount)
  self.path_e = gsub(path, "[^/]+", escape)
  return setmetatable(self, mt)
end

local function set_layout(self, version)
  local mount_e, path_e = self.mount_e, self.path_e
  if version == 2 then
    self.data_path = "/v1/" .. mount_e .. "/data" .. path_e .. "/"
    self.metadata_path = "/v1/" .. mount_e .. "/metadata" .. path_e .. "/"
    self.delete_path = "/v1/" .. mount_e .. "/delete" .. path_e .. "/"
    self.list_path = self.metadata_path
  else
    self.data_path = "/v1/" .. mount_e .. path_e .. "/"
    self.list_path = self.data_path
  end
  self.kv_version = version
end

-- The mount's KV version, asked once (sys/internal/ui/mounts answers any token with a
-- capability on the mount). A KV v1 mount used with the v2 layout would "succeed" while TTLs
-- never expire and delete removes nothing, so a mismatch with conf.kv_version is an error, and
-- without conf.kv_version a mount whose version cannot be told is one too. Returns err or nil.
local function ready(self)
  if self.kv_version then
    return nil
  end
  local res, err = request(self, "GET", "/v1/sys/internal/ui/mounts/" .. self.mount_e)
  if not res then
    return err
  end
  local body = json.decode(res.body or "")
  local data = type(body) == "table" and type(body.data) == "table" and body.data or nil
  local want = self.kv_version_conf
  if res.status == 200 and data then
    local typ = data.type
    if typ ~= "kv" and typ ~= "generic" then
      return "vault: mount " .. self.mount .. " is a " .. tostring(typ)
        .. " secrets engine, not kv"
    end
    local options = type(data.options) == "table" and data.options or {}
    local version = tonumber(options.version) or 1
    if version ~= 1 and version ~= 2 then
      return "vault: mount " .. self.mount .. " has an unknown KV version "
        .. tostring(options.version)
    end
    if want and want ~= version then
      return "vault: mount " .. self.mount .. " is KV version " .. version
        .. ", but conf.kv_version is " .. want
    end
    set_layout(self, version)
    return nil
  end
  if want then
    -- a server without that endpoint, or a token it does not answer: as configured
    set_layout(self, want)
    return nil
  end
  local verr = vault_errors(body) or ""
  local hint = ""
  if find(verr, "preflight capability check", 1, true) then
    hint = " (no mount " .. self.mount .. ", or the token may not use it)"
  end
  return "vault: mount check returned status " .. tostring(res.status)
    .. (verr ~= "" and (": " .. verr) or "") .. hint
end

-- The mount checked and the secret's data for v; nil, err.
local function prepare(self, v)
  local rerr = ready(self)
  if rerr then
    return nil, rerr
  end
  local data = secret_data(v)
  if not data then
    return nil, "vault: value must be a string or a number, got " .. type(v)
  end
  return data
end

function _M.set(self, k, v, ttl)
  local data, perr = prepare(self, v)
  if not data then
    return perr
  end
  if ttl ~= nil and ttl <= 0 then
    return self:delete(k)
  end
  if self.kv_version == 1 then
    return write_v1(self, k, data, ttl)
  end
  local err = write_metadata(self, k, ttl)
  if err then
    return err
  end
  local _
  _, err = write_v2(self, k, data)
  return err
end

-- KV v2: writes `data` as the version after `version` (check-and-set) with `ttl`; nil, or
-- `conflict` when another version came first, or an error.
local function write_over(self, k, data, ttl, version, conflict)
  -- the TTL of the version to write; existing versions keep their own deletion time
  local err = write_metadata(self, k, ttl)
  if err then
    return err
  end
  local ok
  ok, err = write_v2(self, k, data, version)
  if ok == nil then
    return err
  end
  return not ok and conflict or nil
end

function _M.add(self, k, v, ttl)
  local data, perr = prepare(self, v)
  if not data then
    return perr
  end
  if ttl ~= nil and ttl <= 0 then
    return nil
  end
  if self.kv_version == 1 then
    local cur, err = read_v1(self, k)
    if err then
      return err
    end
    if cur ~= nil then
      return "exists"
    end
    return write_v1(self, k, data, ttl)
  end
  local cur, version, err = read_v2(self, k)
  if err then
    return err
  end
  if cur ~= nil then
    return "exists"
  end
  return write_over(self, k, data, ttl, version, "exists")
end

-- Lease operations (docs/STORAGE.md, "Leases"). KV v2: the version whose value was compared is
-- the one written over (`options.cas`) or deleted (`delete` of that version only), so a newer
-- holder's version is never touched. KV v1 has no check-and-set: compare, then write.
-- held_version(self, k, old): the current version (0 on KV v1) while k holds old; nil,
-- "mismatch"; nil, err.
local function held_version(self, k, old)
  local cur, version, err
  if self.kv_version == 1 then
    cur, err = read_v1(self, k)
    version = 0
  else
    cur, version, err = read_v2(self, k)
  end
  if err then
    return nil, err
  end
  if cur == nil or cur ~= text(old) then
    return nil, "mismatch"
  end
  return version
end

function _M.compare_and_set(self, k, old, v, ttl)
  local data, perr = prepare(self, v)
  if not data then
    return perr
  end
  if ttl ~= nil and ttl <= 0 then
    return self:compare_and_delete(k, old)
  end
  local version, err = held_version(self, k, old)
  if not version then
    return err
  end
  if self.kv_version == 1 then
    return write_v1(self, k, data, ttl)
  end
  return write_over(self, k, data, ttl, version, "mismatch")
end

function _M.compare_and_delete(self, k, old)
  local rerr = ready(self)
  if rerr then
    return rerr
  end
  local version, err = held_version(self, k, old)
  if not version then
    return err
  end
  if self.kv_version == 1 then
    local _, derr = api(self, "DELETE", self.data_path .. secret_name(k), nil, "delete")
    return derr
  end
  local _, derr = api(self, "POST", self.delete_path .. secret_name(k),
    { versions = { version } }, "delete")
  return derr
end

function _M.delete(self, k)
  local rerr = ready(self)
  if rerr then
    return rerr
  end
  -- KV v2: deleting the metadata removes every version
  local path = (self.kv_version == 2 and self.metadata_path or self.data_path) .. secret_name(k)
  local _, err = api(self, "DELETE", path, nil, "delete")
  return err
end

function _M.get(self, k)
  local rerr = ready(self)
  if rerr then
    return nil, rerr
  end
  if self.kv_version == 1 then
    local v, err = read_v1(self, k)
    return v, err
  end
  local v, _, err = read_v2(self, k)
  if err then
    return nil, err
  end
  return v, nil
end

function _M.list(self, prefix)
  local rerr = ready(self)
  if rerr then
    return {}, rerr
  end
  prefix = gsub(prefix or "", "/", "-")
  local body, err = api(self, "LIST", self.list_path, nil, "list")
  if err then
    return {}, err
  end
  local keys = body and type(body.data) == "table" and body.data.keys
  if type(keys) ~= "table" then
    return {}, nil
  end
  local plen = #prefix
  local out = {}
  for _, key in ipairs(keys) do
    -- folders end with "/"; they hold no key of ours
    if type(key) == "string" and sub(key, -1) ~= "/" and sub(key, 1, plen) == prefix then
      out[#out + 1] = key
    end
  end
  return out, nil
end

_M._valid_utf8 = valid_utf8

return _M
