-- Test endpoints for the dns-01 suites: direct calls into the dns providers, the dns-01
-- handler and the DNS client, answered as JSON. Each reads a JSON request body.
local cjson = require("cjson.safe")
local json_t = require("json_t")

local ngx = ngx
local unpack = table.unpack or unpack -- luacheck: ignore

local _M = {}

local read_args = json_t.read_args
local reply = json_t.reply

-- POST /provider {provider, secret, method, args}: new(secret), then handler[method](args...)
function _M.provider()
  local a = read_args()
  local mod = require("resty.acme.dns_provider." .. a.provider)
  if a.api_base_field then
    mod.api_base = a.api_base_field
  end
  local handler, err = mod.new(a.secret)
  if not handler then
    return reply({ new_err = err or "no handler" })
  end
  if not a.method then
    return reply({ ok = true })
  end
  local r1, r2 = handler[a.method](handler, unpack(a.args or {}))
  reply({ ok = r1, err = r2 })
end

-- POST /dns01 {accounts, steps = {{action, token, key_authorization, names}}, options}
function _M.dns01()
  local a = read_args()
  local dns01 = require("resty.acme.challenge.dns-01")
  for k, v in pairs(a.options or {}) do
    dns01[k] = v
  end
  local ok, err = dns01.update_dns_provider_info(a.accounts)
  if not ok then
    return reply({ info_err = err })
  end
  local storage = require("resty.acme.storage.shm").new({ shm_name = "acme" })
  local handler = dns01.new(storage)
  local results = {}
  for i, step in ipairs(a.steps or {}) do
    local t0 = ngx.now()
    local serr
    if step.action == "register" then
      serr = handler:register_challenge(step.token, step.key_authorization, step.names)
    else
      serr = handler:cleanup_challenge(step.token, step.names)
    end
    ngx.update_time()
    results[i] = { err = serr, took = ngx.now() - t0 }
  end
  reply({ results = results, keys = setmetatable(ngx.shared.acme:get_keys(0), cjson.array_mt) })
end

-- POST /query {server, name, qtype, opts}
function _M.query()
  local a = read_args()
  local res, err = require("resty.acme.dns_client").query(a.server, a.name, a.qtype, a.opts)
  reply({ res = res, err = err })
end

-- POST /dns01_value {key_authorization}
function _M.dns01_value()
  local a = read_args()
  reply({ value = require("resty.acme.core").dns01_value(a.key_authorization) })
end

return _M
