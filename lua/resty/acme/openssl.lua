-- The subset of lua-resty-openssl that callers of the original use, backed by the native core:
-- pkey.new, :to_PEM, x509.new, :get_lifetime, :get_not_after, digest, hmac, and x509.name,
-- x509.altname and x509.csr for building a certificate request (what the original's
-- util.create_csr did with them).
local core = require("resty.acme.core")

local setmetatable = setmetatable
local getmetatable = getmetatable
local ipairs = ipairs
local tostring = tostring
local concat = table.concat
local lower = string.lower
local sub = string.sub
local type = type
local encode_base64 = ngx.encode_base64

local _M = { _VERSION = "0.16.0" }

local pkey = {}
local pkey_mt = { __index = pkey }

-- pkey.new(pem) or pkey.new({ type = "RSA"|"EC", bits = n, curve = name }); default RSA 2048.
function pkey.new(arg)
  local key, err
  if type(arg) == "string" then
    key, err = core.pkey_from_pem(arg)
  else
    arg = arg or {}
    local typ = arg.type or "RSA"
    key, err = core.pkey_generate(typ, arg.bits or (typ == "RSA" and 2048 or nil), arg.curve)
  end
  if not key then
    return nil, err
  end
  return setmetatable({ _key = key }, pkey_mt)
end

function pkey.istype(obj)
  return type(obj) == "table" and getmetatable(obj) == pkey_mt
end

function pkey:to_PEM(which)
  if which == "public" or which == "PublicKey" then
    return self._key:public_pem()
  end
  return self._key:to_pem()
end

function pkey:get_key_type()
  return self._key:type()
end

function pkey:sign(data)
  return self._key:sign(data)
end

local x509 = {}
local x509_mt = { __index = x509 }

function x509.new(pem)
  if type(pem) ~= "string" then
    return nil, "x509.new: expected a PEM string"
  end
  local certs, err = core.cert_parse(pem)
  if not certs then
    return nil, err
  end
  return setmetatable({ _info = certs[1], _pem = pem }, x509_mt)
end

function x509:get_lifetime()
  return self._info.not_before, self._info.not_after
end

function x509:get_not_before()
  return self._info.not_before
end

function x509:get_not_after()
  return self._info.not_after
end

function x509:get_serial_number()
  return self._info.serial
end

function x509:info()
  return self._info
end

-- digest.new(alg) / hmac.new(key, alg): objects with :update(s) and :final(s?).
local function accumulator(finish)
  local buf = {}
  return {
    update = function(self, s)
      buf[#buf + 1] = s
      return self
    end,
    final = function(_, s)
      if s then
        buf[#buf + 1] = s
      end
      return finish(concat(buf))
    end,
  }
end

local digest = {}
function digest.new(alg)
  alg = alg or "sha1"
  return accumulator(function(data) return core.digest(alg, data) end)
end

local hmac = {}
function hmac.new(key, alg)
  alg = alg or "sha1"
  return accumulator(function(data) return core.hmac(alg, key, data) end)
end

-- x509.name: name.new():add("CN", "example.com"); entries kept in order.
local name = {}
local name_mt = { __index = name }

function name.new()
  return setmetatable({ _entries = {} }, name_mt)
end

function name.istype(obj)
  return type(obj) == "table" and getmetatable(obj) == name_mt
end

function name:add(field, value)
  if type(field) ~= "string" or type(value) ~= "string" then
    return nil, "x509.name:add: expected a field name and a string value"
  end
  self._entries[#self._entries + 1] = { field, value }
  return self
end

-- The first value of `field`, or nil.
function name:find(field)
  for _, e in ipairs(self._entries) do
    if e[1] == field then
      return { blob = e[2] }
    end
  end
  return nil
end

function name:tostring()
  local parts = {}
  for i, e in ipairs(self._entries) do
    parts[i] = e[1] .. "=" .. e[2]
  end
  return concat(parts, "/")
end

-- x509.altname: altname.new():add("DNS", "example.com"); types DNS/DNSName, IP/IPAddress,
-- email/RFC822Name, URI/UniformResourceIdentifier (any case).
local altname = {}
local altname_mt = { __index = altname }
local ALT_TYPES = {
  dns = "DNS", dnsname = "DNS", ip = "IP", ipaddress = "IP", email = "email",
  rfc822name = "email", rfc822 = "email", uri = "URI", uniformresourceidentifier = "URI",
}

function altname.new()
  return setmetatable({ _entries = {} }, altname_mt)
end

function altname.istype(obj)
  return type(obj) == "table" and getmetatable(obj) == altname_mt
end

function altname:add(typ, value)
  local t = type(typ) == "string" and ALT_TYPES[lower(typ)]
  if not t then
    return nil, "x509.altname:add: unsupported type " .. tostring(typ)
  end
  if type(value) ~= "string" then
    return nil, "x509.altname:add: expected a string value"
  end
  self._entries[#self._entries + 1] = { t, value }
  return self
end

function altname:count()
  return #self._entries
end

-- x509.csr: set_subject_name, set_subject_alt_name, set_pubkey, sign, tostring("DER"|"PEM").
local csr = {}
local csr_mt = { __index = csr }

function csr.new()
  return setmetatable({}, csr_mt)
end

function csr.istype(obj)
  return type(obj) == "table" and getmetatable(obj) == csr_mt
end

function csr:set_subject_name(n)
  if not name.istype(n) then
    return nil, "x509.csr:set_subject_name: expected a resty.acme.openssl.name"
  end
  self._subject = n
  return true
end

function csr:set_subject_alt_name(alt)
  if not altname.istype(alt) then
    return nil, "x509.csr:set_subject_alt_name: expected a resty.acme.openssl.altname"
  end
  self._alt = alt
  return true
end

function csr:set_pubkey(key)
  if not pkey.istype(key) then
    return nil, "x509.csr:set_pubkey: expected a resty.acme.openssl.pkey"
  end
  self._pubkey = key
  return true
end

-- Signs with `key` (its digest: SHA-256, SHA-384 for P-384). The public key set with
-- set_pubkey, when set, must be key's.
function csr:sign(key)
  if not pkey.istype(key) then
    return nil, "x509.csr:sign: expected a resty.acme.openssl.pkey"
  end
  if self._pubkey and self._pubkey:to_PEM("public") ~= key:to_PEM("public") then
    return nil, "x509.csr:sign: the key does not match the public key set with set_pubkey"
  end
  local der, err = core.csr_build(key._key, self._subject and self._subject._entries or {},
                                  self._alt and self._alt._entries or {})
  if not der then
    return nil, "x509.csr:sign: " .. tostring(err)
  end
  self._der = der
  return true
end

function csr:tostring(fmt)
  if not self._der then
    return nil, "x509.csr:tostring: the request is not signed"
  end
  if fmt == "DER" then
    return self._der
  end
  local b64 = encode_base64(self._der)
  local lines = {}
  for i = 1, #b64, 64 do
    lines[#lines + 1] = sub(b64, i, i + 63)
  end
  return "-----BEGIN CERTIFICATE REQUEST-----\n" .. concat(lines, "\n")
    .. "\n-----END CERTIFICATE REQUEST-----\n"
end

function csr:to_PEM()
  return self:tostring("PEM")
end

_M.pkey = pkey
_M.x509 = x509
_M.digest = digest
_M.hmac = hmac
_M.name = name
_M.altname = altname
_M.csr = csr

return _M
