-- The stored certificate entry (domain:<type>:<name>, JSON { domain, pkey, cert, type,
-- updated }): reading it, checking it, and parsing it into what ngx.ssl installs.
local certcache = require("resty.acme.certcache")
local core = require("resty.acme.core")
local keys = require("resty.acme.autossl.keys")
local state = require("resty.acme.autossl.state")
local tls_cert = require("resty.acme.tls_cert")
local ssl = require("ngx.ssl")
local cjson = require("cjson.safe")
local ffi = require("ffi")

local error = error
local tostring = tostring
local type = type

local _M = { _VERSION = "0.16.0" }

local json = cjson.new()

-- parse(value): the decoded entry with string cert and pkey, or nil, err naming what is wrong.
function _M.parse(value)
  if type(value) ~= "string" then
    return nil, "stored value is not a string"
  end
  local entry = json.decode(value)
  if type(entry) ~= "table" then
    return nil, "stored value is not JSON"
  end
  if type(entry.cert) ~= "string" or type(entry.pkey) ~= "string" then
    return nil, "stored entry has no cert or pkey"
  end
  return entry
end

-- get_certkey(domain, typ): the decoded entry as the original returns it (no check of its
-- fields), nil, nil when absent, nil, err when the store fails or the value is not JSON.
-- Raises "domain must be a string" on misuse (COMPAT.md 2.1).
function _M.get_certkey(domain, typ)
  if type(domain) ~= "string" then
    error("domain must be a string")
  end
  local value, err = state.storage:get(keys.domain(typ or "rsa", domain))
  if err then
    return nil, err
  end
  if not value then
    return nil, nil
  end
  local entry = json.decode(value)
  if type(entry) ~= "table" then
    return nil, "malformed stored entry for " .. domain
  end
  return entry, nil
end

-- certkey(cert_pem, pkey_pem, digest): the entry parsed into what ngx.ssl installs (a
-- certcache entry; digest: the MD5 of the stored value), or nil, err. Once per cache fill
-- (OpenSSL 3.0 spends about 0.5 ms of CPU on a chain and its key). The chain comes from the
-- core: the leaf parsed, the intermediates shared with every other chain of the same CA (a
-- parsed certificate takes about 5 KiB); what the core cannot read (e.g. TRUSTED CERTIFICATE
-- blocks) goes through ngx.ssl.
function _M.certkey(cert_pem, pkey_pem, digest)
  local e = certcache.new_certkey()
  local chain, err = core.cert_chain(cert_pem)
  if chain then
    e.cert = chain
  else
    local cert = ssl.parse_pem_cert(cert_pem)
    if not cert then
      return nil, "failed to parse certificate: " .. tostring(err)
    end
    e.cert = ffi.gc(cert, nil)
  end
  local pkey, kerr = ssl.parse_pem_priv_key(pkey_pem)
  if not pkey then
    return nil, "failed to parse private key: " .. tostring(kerr)
  end
  e.pkey = ffi.gc(pkey, nil)
  -- once per fill: a key of another certificate would fail every handshake of the name
  local shared, checked = tls_cert.share_leaf_key(e.cert, e.pkey)
  if not shared then
    return nil, "the stored private key does not belong to the stored certificate"
  end
  e.pkey = shared
  if not checked and tls_cert.leaf_matches_key(e.cert, e.pkey) == false then
    return nil, "the stored private key does not belong to the stored certificate"
  end
  ffi.copy(e.digest, digest, 16)
  return e
end

return _M
