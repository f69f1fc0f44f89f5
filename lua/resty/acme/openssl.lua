-- The subset of lua-resty-openssl that callers of the original use, backed by the native core:
-- pkey.new, :to_PEM, x509.new, :get_lifetime, :get_not_after, digest and hmac.
local core = require("resty.acme.core")

local setmetatable = setmetatable
local getmetatable = getmetatable
local concat = table.concat
local type = type

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

local function unsupported(name)
  return { new = function() return nil, name .. " is not provided by resty.acme.openssl" end }
end

_M.pkey = pkey
_M.x509 = x509
_M.digest = digest
_M.hmac = hmac
_M.name = unsupported("x509.name")
_M.altname = unsupported("x509.altname")
_M.csr = unsupported("x509.csr")

return _M
