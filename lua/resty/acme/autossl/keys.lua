-- Storage key prefixes, named once (docs/FORMAT.md has the values behind them). The first five
-- are lua-resty-acme's (COMPAT.md 3.5: the redis namespace check refuses them); the others are
-- ours and the original never reads them. Requires nothing: any module may use it.
local _M = { _VERSION = "0.16.0" }

-- the original's
_M.UPDATE_LOCK = "update_lock:"         -- <domain>: who orders the name now (a token, with TTL)
_M.DOMAIN = "domain:"                   -- <type>:<domain>: the certificate entry (JSON)
_M.ACCOUNT_KEY = "account_key:"         -- the whole key: the account key PEM
_M.FAILURE_LOCK = "failure_lock:"       -- <domain>: the original's cooloff deadline
_M.FAILED_ATTEMPTS = "failed_attempts:" -- <domain>: failures in a row

_M.RESERVED = { _M.UPDATE_LOCK, _M.DOMAIN, _M.ACCOUNT_KEY, _M.FAILURE_LOCK, _M.FAILED_ATTEMPTS }

-- resty.acme.backoff: <type>:<domain>[@<issuer>], the retry state by cause
_M.BACKOFF = "backoff:"
-- resty.acme.renewal: <sha256 fingerprint>, the CA's renewal window and who asks for it
_M.ARI_WINDOW = "ari_window:"
_M.ARI_QUERY_LOCK = "ari_query_lock:"
-- resty.acme.ondemand: <domain>, the admission, the new-name budgets, the last order error
_M.ONDEMAND_ADMITTED = "ondemand:admitted:"
_M.ONDEMAND_BUDGET = "ondemand:budget:"
_M.ONDEMAND_LAST_ERROR = "ondemand:last_error:"
-- resty.acme.budget: <ca>, the CA's order budget and the queue of names waiting for it
_M.ORDER_BUDGET = "order_budget:"
_M.ORDER_BUDGET_LOCK = "order_budget_lock:"
_M.ORDER_QUEUE = "order_queue:"
_M.ORDER_QUEUE_WAITING = "order_queue_waiting:"
_M.ORDER_QUEUE_LOCK = "order_queue_lock:"
-- resty.acme.dns_persist_log: the whole key, the dns-persist-01 records to publish
_M.DNS_PERSIST_RECORDS = "dns-persist-records"

-- Shared-dict keys (not storage), in the dicts ask_shm and metrics_shm; "acme" by default,
-- the shm adapter's dict too, so they must not collide with the prefixes above.
_M.ASK = "acme_ask:"
_M.ASK_LOCK = "acme_ask_lock:"
_M.METRICS = "acme_metrics:"

-- domain(typ, name): the key of the stored entry of name for key type typ.
function _M.domain(typ, name)
  return _M.DOMAIN .. typ .. ":" .. name
end

local DOMAIN_PATTERN = "^" .. _M.DOMAIN .. "([^:]+):(.+)$"

-- parse_domain(key): typ, name of a domain: key, or nil for any other key.
function _M.parse_domain(key)
  return key:match(DOMAIN_PATTERN)
end

return _M
