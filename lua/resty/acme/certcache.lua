-- The per-worker certificate cache of autossl: one LRU per key type of parsed chains and keys,
-- with resty.lrucache's semantics (TTL per entry, expired entries handed back as stale,
-- ngx.null for "not in the store"), kept in the core (src/tls/certcache.rs) where the native
-- certificate callback can read it (src/tls/serve.rs) and an entry takes about half the
-- memory of a resty.lrucache slot with its cdata.
--
-- get() hands out the entry's handles borrowed: valid until the next change of that cache, so
-- use them before anything that may yield. get_owned() gives references of one's own.
local ffi = require("ffi")
local tls_cert = require("resty.acme.tls_cert")

local ngx = ngx
local ngx_now = ngx.now
local ngx_null = ngx.null
local ffi_gc = ffi.gc
local ffi_new = ffi.new
local ipairs = ipairs
local pcall = pcall
local setmetatable = setmetatable
local error = error
local tostring = tostring

local _M = { _VERSION = "0.16.0" }
local mt = { __index = _M }

local lib = tls_cert.lib

-- A parsed chain and key before it goes into a cache: the chain for ngx.ssl.set_cert, the key
-- for ngx.ssl.set_priv_key, the MD5 of the stored value, and one finalizer for both.
pcall(ffi.cdef, [[
struct resty_acme_certkey { void *cert; void *pkey; unsigned char digest[16]; };
]])
pcall(ffi.cdef, [[
void *resty_acme_cache_new(int capacity);
int resty_acme_cache_get(void *cache, const char *key, size_t len, double now,
                         struct resty_acme_certkey *out);
int resty_acme_cache_set(void *cache, const char *key, size_t len, void *chain, void *pkey,
                         const unsigned char *digest, double expires);
int resty_acme_cache_refresh(void *cache, const char *key, size_t len,
                             const unsigned char *digest, double expires);
int resty_acme_cache_delete(void *cache, const char *key, size_t len);
int resty_acme_cache_get_owned(void *cache, const char *key, size_t len, void **chain,
                               void **pkey);
void resty_acme_serve_set_caches(void **caches, int n);
void resty_acme_serve_alias(const char *name, size_t len, const char *target, size_t tlen,
                            int cap);
]])

local subsystem = tls_cert.subsystem
-- lua-nginx-module's free functions under names of our own (asm labels redirect them to the
-- real symbols): no declaration of ours can take the place of resty.core's, or theirs of ours
local free_cert_name = "ngx_" .. subsystem .. "_lua_ffi_free_cert"
local free_pkey_name = "ngx_" .. subsystem .. "_lua_ffi_free_priv_key"
pcall(ffi.cdef, ([[
void resty_acme_host_free_cert(void *cdata) __asm__("%s");
void resty_acme_host_free_pkey(void *cdata) __asm__("%s");
]]):format(free_cert_name, free_pkey_name))
local free_cert = ffi.C.resty_acme_host_free_cert
local free_pkey = ffi.C.resty_acme_host_free_pkey
local certkey_t = ffi.typeof("struct resty_acme_certkey")
local handles_t = ffi.typeof("void *[2]")

local function free_certkey(e)
  if e.cert ~= nil then
    free_cert(e.cert)
  end
  if e.pkey ~= nil then
    free_pkey(e.pkey)
  end
end

-- An empty certkey that frees what it holds when collected.
function _M.new_certkey()
  return ffi_gc(ffi_new(certkey_t), free_certkey)
end

function _M.new(size)
  if not lib then
    error("the certificate cache needs resty.acme.core through the FFI: " ..
      tostring(tls_cert.native_error))
  end
  return setmetatable({ ptr = lib.resty_acme_cache_new(size), hit = ffi_new(certkey_t) }, mt)
end

-- value (fresh) or nil, stale: as resty.lrucache. A value is the cache's certkey view or
-- ngx.null.
function _M:get(key)
  local hit = self.hit
  local rc = lib.resty_acme_cache_get(self.ptr, key, #key, ngx_now(), hit)
  if rc == 0 then
    return nil
  end
  local v = hit.cert == nil and ngx_null or hit
  if rc == 1 then
    return v
  end
  return nil, v
end

-- entry: a certkey from new_certkey() (the cache takes its chain and key over), or ngx.null.
function _M:set(key, entry, ttl)
  local expires = ngx_now() + ttl
  if entry == ngx_null or entry == nil then
    lib.resty_acme_cache_set(self.ptr, key, #key, nil, nil, nil, expires)
    return true
  end
  if lib.resty_acme_cache_set(self.ptr, key, #key, entry.cert, entry.pkey, entry.digest,
      expires) ~= 0 then
    return nil, "cannot cache an entry without a chain or a key"
  end
  entry.cert = nil
  entry.pkey = nil
  return true
end

-- Another ttl for a positive entry, if there is one parsed from a stored value of `digest`
-- (16 bytes; nil: whatever it was parsed from). Whether there was.
function _M:refresh(key, digest, ttl)
  return lib.resty_acme_cache_refresh(self.ptr, key, #key, digest, ngx_now() + ttl) == 1
end

function _M:delete(key)
  lib.resty_acme_cache_delete(self.ptr, key, #key)
end

-- The chain and key of a positive entry (fresh or stale) as cdata of the caller's own, freed
-- when collected (as ngx.ssl.parse_pem_cert / parse_pem_priv_key return them), or nil.
function _M:get_owned(key)
  local out = ffi_new(handles_t)
  if lib.resty_acme_cache_get_owned(self.ptr, key, #key, out, out + 1) ~= 0 then
    return nil
  end
  return ffi_gc(out[0], free_cert), ffi_gc(out[1], free_pkey)
end

-- The caches the native certificate callback serves from, one per key type in the order they
-- are installed.
function _M.serve_from(list)
  local arr = ffi_new("void *[?]", #list)
  for i, cache in ipairs(list) do
    arr[i - 1] = cache.ptr
  end
  lib.resty_acme_serve_set_caches(arr, #list)
end

-- The native callback serves `name` with the entries of `target` (the wildcard a name was
-- mapped to); at most `cap` names are remembered.
function _M.serve_alias(name, target, cap)
  lib.resty_acme_serve_alias(name, #name, target, #target, cap)
end

return _M
