-- Storage key prefixes, named once. The first five are lua-resty-acme's (COMPAT.md 3.5: the
-- redis namespace check refuses them); the others are ours and the original never reads them.
local _M = { _VERSION = "0.16.0" }

_M.UPDATE_LOCK = "update_lock:"         -- update_lock:<domain>: who orders the name now
_M.DOMAIN = "domain:"                   -- domain:<type>:<domain>: the certificate entry
_M.ACCOUNT_KEY = "account_key:"         -- the account key PEM (the whole key)
_M.FAILURE_LOCK = "failure_lock:"       -- failure_lock:<domain>: the original's cooloff
_M.FAILED_ATTEMPTS = "failed_attempts:" -- failed_attempts:<domain>: failures in a row

_M.RESERVED = { _M.UPDATE_LOCK, _M.DOMAIN, _M.ACCOUNT_KEY, _M.FAILURE_LOCK, _M.FAILED_ATTEMPTS }

-- domain(typ, name): the key of the stored entry of name for key type typ.
function _M.domain(typ, name)
  return "domain:" .. typ .. ":" .. name
end

-- parse_domain(key): typ, name of a domain: key, or nil for any other key.
function _M.parse_domain(key)
  return key:match("^domain:([^:]+):(.+)$")
end

return _M
