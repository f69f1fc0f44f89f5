-- Test endpoints for the end-to-end suites: each runs a client call in a timer (as real users
-- do) and answers with JSON. Configured from init_by_lua with acme_t.setup(conf).
local cjson = require("cjson.safe")
local json_t = require("json_t")

local ngx = ngx
local ipairs = ipairs
local pairs = pairs
local loadstring = loadstring
local pcall = pcall
local setmetatable = setmetatable
local type = type

local _M = {}

local read_args = json_t.read_args
local reply = json_t.reply

local base_conf = {}
local shared_client

function _M.setup(conf)
  base_conf = conf
end

local function merged(overrides)
  local conf = {}
  for k, v in pairs(base_conf) do
    conf[k] = v
  end
  for k, v in pairs(overrides or {}) do
    conf[k] = v
  end
  return conf
end

-- The client used to serve challenges (created lazily: client.new runs in any phase).
function _M.client()
  if not shared_client then
    local c, err = require("resty.acme.client").new(merged())
    if not c then
      ngx.log(ngx.ERR, "acme_t: client.new failed: ", err)
      return ngx.exit(500)
    end
    shared_client = c
  end
  return shared_client
end

-- Runs fn in a timer and waits for it: the client must work from timers.
local function in_timer(fn, arg)
  local result
  local ok, err = ngx.timer.at(0, function(premature)
    if premature then
      result = { err = "premature" }
      return
    end
    local pok, res = pcall(fn, arg)
    if not pok then
      result = { err = "lua error: " .. tostring(res) }
    else
      result = res
    end
  end)
  if not ok then
    return { err = "timer: " .. err }
  end
  while not result do
    ngx.sleep(0.05)
  end
  return result
end

local function new_client(args)
  local conf = merged(args.conf)
  if args.account_key_type or (not conf.account_key and not conf.account_kid) then
    conf.account_key = require("resty.acme.util").create_pkey(args.account_key_bits or 2048,
      args.account_key_type or "RSA", args.account_key_curve)
  end
  local c, err = require("resty.acme.client").new(conf)
  if not c then
    return nil, "client.new: " .. tostring(err)
  end
  return c
end

local function login(c)
  local err = c:init()
  if err then
    return nil, "init: " .. err
  end
  local kid, aerr = c:new_account()
  if not kid then
    return nil, "new_account: " .. tostring(aerr)
  end
  return kid
end

-- A control endpoint: fn(client, args, kid) runs in a timer with a fresh client, logged in
-- first when `must_login` or args.login; a failing setup answers { err = ... }.
local function endpoint(must_login, fn)
  return function()
    reply(in_timer(function(args)
      local c, err = new_client(args)
      if not c then
        return { err = err }
      end
      local kid
      if must_login or args.login then
        kid, err = login(c)
        if not kid then
          return { err = err }
        end
      end
      return fn(c, args, kid)
    end, read_args()))
  end
end

-- POST /order {names, key_type, key_bits, curve, conf, account_key_type}
_M.order = endpoint(true, function(c, args, kid)
  local key, err = require("resty.acme.util").create_pkey(args.key_bits, args.key_type or "RSA",
                                                          args.curve)
  if not key then
    return { err = "create_pkey: " .. tostring(err) }
  end
  local cert
  cert, err = c:order_certificate(key, (table.unpack or unpack)(args.names))
  if not cert then
    return { err = err }
  end
  return { cert = cert, key = key, kid = kid, account_key = c.conf.account_key }
end)

-- POST /finalize {names}: the original's step-by-step API, as Kong-style callers use it:
-- new_order, every http-01 challenge answered by hand, then finalize(finalize, order, csr).
_M.finalize = endpoint(true, function(c, args)
  local util = require("resty.acme.util")
  local unpack = table.unpack or unpack
  local order, headers, err = c:new_order(unpack(args.names))
  if not order then
    return { err = "new_order: " .. tostring(err) }
  end
  local handler = c.challenge_handlers["http-01"]
  for _, url in ipairs(order.authorizations) do
    local authz, _, aerr = c:post(url)
    if not authz then
      return { err = "authz: " .. tostring(aerr) }
    end
    for _, ch in ipairs(authz.challenges) do
      if ch.type == "http-01" then
        handler:register_challenge(ch.token, ch.token .. "." .. c.account_thumbprint,
          { authz.identifier.value })
        local _, _, serr = c:post(ch.url, {})
        if serr then
          return { err = "challenge start: " .. serr }
        end
      end
    end
  end
  local order_url = headers.location
  for _ = 1, 100 do
    local o = c:post(order_url)
    if type(o) == "table" and o.status ~= "pending" then
      break
    end
    ngx.sleep(0.2)
  end
  local key = util.create_pkey(2048, "RSA")
  local csr, cerr = util.create_csr(key, unpack(args.names))
  if not csr then
    return { err = "csr: " .. tostring(cerr) }
  end
  local pem, ferr = c:finalize(order.finalize, order_url, args.csr_override or csr)
  return { cert = pem, key = key, err = ferr }
end)

-- POST /revoke {cert, key?, reason?, conf}
_M.revoke = endpoint(false, function(c, args)
  local ok, rerr = c:revoke_certificate(args.cert, { reason = args.reason, key = args.key })
  return { ok = ok, err = rerr }
end)

-- POST /rollover {conf, new_key} -> then tries to use the old key again
_M.rollover = endpoint(true, function(c, args, kid)
  local ok, rerr = c:rollover_account_key(args.new_key)
  if not ok then
    return { err = rerr }
  end
  -- the old key must now be refused
  local old = require("resty.acme.client").new(merged(args.conf))
  old:init()
  local okid, oerr = old:new_account()
  return { ok = true, kid = kid, old_kid = okid, old_err = oerr }
end)

-- POST /call {method, args, conf, login?}: a raw client API call, for the API-shape tests.
_M.call = endpoint(false, function(c, args)
  local r1, r2, r3 = c[args.method](c, (table.unpack or unpack)(args.args or {}))
  return { r1 = r1, r2 = r2, r3 = r3 }
end)

-- POST /eval: runs the Lua chunk in the body (in this content handler) and answers with the
-- JSON of the table it returns, or {error = message} when it raises.
function _M.eval()
  ngx.req.read_body()
  local chunk, err = loadstring(ngx.req.get_body_data() or "", "=eval")
  if not chunk then
    return reply({ error = "syntax: " .. err })
  end
  local ok, res = pcall(chunk)
  if not ok then
    return reply({ error = tostring(res) })
  end
  reply(res)
end

-- POST /keys: every key in the shm storage
function _M.keys()
  local keys = ngx.shared.acme:get_keys(0)
  reply({ keys = setmetatable(keys, cjson.array_mt) })
end

setmetatable(_M, { __index = function(_, k) error("acme_t: no function " .. k, 2) end })

return _M
