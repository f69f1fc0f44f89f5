-- The second cache level of autossl: a lua_shared_dict that every worker of a node reads, holding
-- each cached certificate in the compact form of src/tls/compact.rs (DER chain, raw key
-- components, the MD5 of the stored value and an expiry). The worker that reads the store first
-- leaves the entry here; a miss of another worker's own cache then costs no storage round trip,
-- no JSON and no PEM: one dict read and a DER load (about 110 µs for a P-256 chain where the
-- store path takes about 500).
--
-- The dict holds private keys: it is memory of the nginx processes, the same trust domain as
-- the workers' own caches (README, "Many names: the shared certificate cache").
local ffi = require("ffi")
local certcache = require("resty.acme.certcache")
local core_ffi = require("resty.acme.core_ffi")
local tls_cert = require("resty.acme.tls_cert")

local ngx = ngx
local ngx_now = ngx.now
local ngx_null = ngx.null
local ffi_new = ffi.new
local ffi_string = ffi.string
local concat = table.concat
local ipairs = ipairs
local pcall = pcall
local setmetatable = setmetatable
local tonumber = tonumber
local tostring = tostring

local _M = { _VERSION = "0.16.0" }
local mt = { __index = _M }

pcall(ffi.cdef, [[
int64_t resty_acme_compact_encode(void *chain, void *pkey, const unsigned char *digest,
                                  double expires, unsigned char *buf, size_t cap,
                                  const char **err);
double resty_acme_compact_header(const char *data, size_t len, unsigned char *digest);
int resty_acme_compact_decode(const char *data, size_t len, struct resty_acme_certkey *out,
                              const char **err);
]])
pcall(ffi.cdef, [[
int resty_acme_serve_set_shared(void *zone, void *get, const char *prefixes, size_t len);
]])

-- lua-nginx-module's shdict functions under names of our own (asm labels, as certcache.lua
-- does for its free functions): the native certificate callback reads the dict through the
-- same function resty.core's shdict:get calls.
local subsystem = tls_cert.subsystem
pcall(ffi.cdef, ([[
void *resty_acme_host_shdict_zone(void *zone_udata) __asm__("ngx_%s_lua_ffi_shdict_udata_to_zone");
int resty_acme_host_shdict_get(void) __asm__("ngx_%s_lua_ffi_shdict_get");
]]):format(subsystem, subsystem))

local lib, load_err = core_ffi.load("resty_acme_compact_decode")
local errmsg = ffi_new("const char *[1]")
local digest_buf = ffi_new("unsigned char[16]")
-- one buffer for every encode, grown when an entry does not fit
local buf_size = 8192
local buf = ffi_new("unsigned char[?]", buf_size)

local function dict_key(typ, domain)
  return typ .. ":" .. domain
end

-- The compact form of a certcache view into `buf` (grown when it does not fit): its length, or
-- nil, err.
local function encode(view, expires)
  for _ = 1, 2 do
    local n = lib.resty_acme_compact_encode(view.cert, view.pkey, view.digest, expires, buf,
      buf_size, errmsg)
    if n < 0 then
      return nil, ffi_string(errmsg[0])
    end
    n = tonumber(n)
    if n <= buf_size then
      return n
    end
    buf_size = n
    buf = ffi_new("unsigned char[?]", buf_size)
  end
  return nil, "the compact entry did not fit its buffer"
end

local function put(self, typ, domain, n, ttl)
  -- the dict's own expiry frees the slot; the entry's (in it) is the exact one
  local ok, err = self.dict:set(dict_key(typ, domain), ffi_string(buf, n), ttl + 1)
  if not ok then
    return nil, "shared_cache " .. self.name .. ": " .. tostring(err)
  end
  return true
end

-- new(name): the cache over lua_shared_dict `name`, or nil, err naming what is missing.
function _M.new(name)
  if not lib then
    return nil, "the shared certificate cache needs resty.acme.core through the FFI: " ..
      tostring(load_err)
  end
  local dict = ngx.shared and ngx.shared[name]
  if not dict then
    return nil, "lua_shared_dict " .. tostring(name) .. " is not defined (shared_cache)"
  end
  return setmetatable({ dict = dict, name = name }, mt)
end

-- The native certificate callback fills this worker's cache misses from the dict: `types` the
-- key types of the caches it serves from, in order. Off with no cache (`sc` nil). true, or
-- nil, err when the host's shdict functions cannot be found (the Lua phase still reads the
-- dict then).
function _M.serve_native(sc, types)
  if not lib then
    return nil, load_err
  end
  if not sc then
    lib.resty_acme_serve_set_shared(nil, nil, nil, 0)
    return true
  end
  local ok, zone, get = pcall(function()
    return ffi.C.resty_acme_host_shdict_zone(sc.dict[1]),
      ffi.cast("void *", ffi.C.resty_acme_host_shdict_get)
  end)
  if not ok then
    return nil, "the host's shdict functions: " .. tostring(zone)
  end
  -- the callback's keys are this module's: the prefix of each type's names
  local prefixes = {}
  for i, typ in ipairs(types) do
    prefixes[i] = dict_key(typ, "")
  end
  local list = concat(prefixes, ",")
  if lib.resty_acme_serve_set_shared(zone, get, list, #list) ~= 0 then
    return nil, "bad key types for the shared cache: " .. list
  end
  return true
end

-- The raw entry of a name within its life: blob, expires, digest (a 16-byte string), or nil.
function _M:peek(typ, domain)
  local blob = self.dict:get(dict_key(typ, domain))
  if not blob then
    return nil
  end
  local expires = lib.resty_acme_compact_header(blob, #blob, digest_buf)
  if expires <= ngx_now() then
    return nil
  end
  return blob, expires, ffi_string(digest_buf, 16)
end

-- The entry `blob` (from peek) loaded as a certkey of the caller's own (for certcache:set), or
-- nil, err.
function _M.load(blob)
  local e = certcache.new_certkey()
  if lib.resty_acme_compact_decode(blob, #blob, e, errmsg) ~= 0 then
    return nil, ffi_string(errmsg[0])
  end
  return e
end

-- Leaves the chain and key `view` (a certcache view: cert, pkey, digest) for `ttl` seconds,
-- replacing what the name had. true | nil, err
function _M:set(typ, domain, view, ttl)
  local n, err = encode(view, ngx_now() + ttl)
  if not n then
    return nil, err
  end
  return put(self, typ, domain, n, ttl)
end

-- For a worker-cache miss, before the store: the name's entry into the worker's certcache
-- `cache` for what is left of the entry's life (a stale worker entry of the same stored value
-- is only given that life again). The cache's view (use it before anything that may yield),
-- or nil[, err].
function _M:fill(cache, typ, domain, had_stale)
  local blob, expires, digest = self:peek(typ, domain)
  if not blob then
    return nil
  end
  local ttl = expires - ngx_now()
  if had_stale and cache:refresh(domain, digest, ttl) then
    return (cache:get(domain))
  end
  local e, err = _M.load(blob)
  if not e then
    return nil, err
  end
  local ok, serr = cache:set(domain, e, ttl)
  if not ok then
    return nil, serr
  end
  return (cache:get(domain))
end

-- After the store filled or refreshed the worker's entry of a name: the same for the node, for
-- `ttl` seconds. true | nil, err
function _M:share(cache, typ, domain, ttl)
  local view = cache:get(domain)
  if not view or view == ngx_null then
    return nil, "no cached entry to share"
  end
  return self:set(typ, domain, view, ttl)
end

function _M:delete(typ, domain)
  self.dict:delete(dict_key(typ, domain))
end

return _M
