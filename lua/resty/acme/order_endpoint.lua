-- An order endpoint for load balancers (the HAProxy Lua ACME client's use), content phase:
--
--   location = /acme/order {
--     content_by_lua_block { require("resty.acme.order_endpoint").serve({ token = "..." }) }
--   }
--
-- POST a JSON body { "names": [...], "account_key": PEM, "domain_key": PEM, "key_type":
-- "rsa"|"ecc" } or a multipart/form-data body with the same fields (names: repeated, or
-- separated by commas or spaces). Only the names are required: without a domain key one of
-- key_type (default "rsa", 4096 bits; "ecc": P-256) is generated; without an account key the
-- order runs on autossl's own account. The certificate is ordered through autossl's client
-- configuration (CA, challenges, storage, so nginx's http-01 location answers the CA) and
-- answered as a PEM bundle: the full chain, then the domain key. Nothing is stored, and the
-- key is given to this caller only (never logged).
--
-- opts: { token = "..." } or { token_env = "VAR" } requires `Authorization: Bearer <token>`
-- (as resty.acme.admin); { allow_any_name = true }
-- orders names outside autossl's allow-list (other load balancers' names); { max_names = n }
-- (default 100). Mount it on a private port (allow/deny): every request is a CA order.
local client = require("resty.acme.client")
local metrics = require("resty.acme.metrics")
local util = require("resty.acme.util")
local hostname = require("resty.acme.hostname")
local cjson = require("cjson.safe")

local ngx = ngx
local ngx_req = ngx.req
local ngx_now = ngx.now
local ngx_update_time = ngx.update_time
local log = util.log
local valid_host = hostname.valid
local io_open = io.open
local find = string.find
local gmatch = string.gmatch
local lower = string.lower
local match = string.match
local sub = string.sub
local math_floor = math.floor
local ipairs = ipairs
local pairs = pairs
local tostring = tostring
local type = type
local unpack = unpack

local _M = { _VERSION = "0.1.0" }

local json = cjson.new()

local MAX_BODY = 1024 * 1024

local function now()
  ngx_update_time()
  return ngx_now()
end

local function fail(status, msg)
  metrics.add('acme_endpoint_orders_total{result="' .. (status >= 500 and "failure" or "refused") .. '"}')
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.say(json.encode({ error = msg }))
  return ngx.exit(status)
end

local function read_body()
  ngx_req.read_body()
  local body = ngx_req.get_body_data()
  if body then
    return body
  end
  local path = ngx_req.get_body_file()
  if not path then
    return ""
  end
  local f, err = io_open(path, "rb")
  if not f then
    return nil, "cannot read the request body: " .. tostring(err)
  end
  body = f:read(MAX_BODY + 1)
  f:close()
  return body or ""
end

-- multipart/form-data (RFC 7578): name -> list of values.
local function parse_multipart(body, content_type)
  local boundary = match(content_type, 'boundary="([^"]+)"') or match(content_type, "boundary=([^;%s]+)")
  if not boundary then
    return nil, "multipart body without a boundary"
  end
  local fields = {}
  local delim = "--" .. boundary
  local pos = find(body, delim, 1, true)
  if not pos then
    return nil, "multipart body without its boundary"
  end
  pos = pos + #delim
  while true do
    if sub(body, pos, pos + 1) == "--" then
      break -- the closing delimiter
    end
    local hstart = find(body, "\n", pos, true)
    if not hstart then
      return nil, "truncated multipart body"
    end
    local hend, hend2 = find(body, "\r?\n\r?\n", hstart + 1)
    if not hend then
      return nil, "multipart part without headers"
    end
    local headers = sub(body, hstart + 1, hend - 1)
    local next_delim = find(body, "\r\n" .. delim, hend2 + 1, true)
    local vend = next_delim
    if not next_delim then
      next_delim = find(body, "\n" .. delim, hend2 + 1, true)
      vend = next_delim
      if not next_delim then
        return nil, "multipart part without an end"
      end
    end
    local value = sub(body, hend2 + 1, vend - 1)
    local name = match(headers, '[Nn]ame="([^"]*)"')
    if name then
      local list = fields[name] or {}
      list[#list + 1] = value
      fields[name] = list
    end
    pos = find(body, delim, next_delim, true) + #delim
  end
  return fields
end

local function split_names(text, out)
  for n in gmatch(text, "[^%s,]+") do
    out[#out + 1] = lower(n)
  end
end

-- The request as { names =, account_key =, domain_key =, key_type = }.
local function parse_request(body, content_type)
  local req = { names = {} }
  if find(content_type, "multipart/form-data", 1, true) then
    local fields, err = parse_multipart(body, content_type)
    if not fields then
      return nil, err
    end
    for _, v in ipairs(fields.names or fields.name or fields.domains or {}) do
      split_names(v, req.names)
    end
    req.account_key = fields.account_key and fields.account_key[1]
    req.domain_key = fields.domain_key and fields.domain_key[1]
    req.key_type = fields.key_type and match(fields.key_type[1], "^%s*(%S+)")
  else
    local t = json.decode(body)
    if type(t) ~= "table" then
      return nil, "the body is neither JSON nor multipart/form-data"
    end
    local names = t.names
    if type(names) == "string" then
      split_names(names, req.names)
    elseif type(names) == "table" then
      for _, n in ipairs(names) do
        if type(n) ~= "string" then
          return nil, "names must be strings"
        end
        req.names[#req.names + 1] = lower(n)
      end
    end
    req.account_key = type(t.account_key) == "string" and t.account_key or nil
    req.domain_key = type(t.domain_key) == "string" and t.domain_key or nil
    req.key_type = type(t.key_type) == "string" and t.key_type or nil
  end
  if req.account_key == "" then
    req.account_key = nil
  end
  if req.domain_key == "" then
    req.domain_key = nil
  end
  return req
end

-- A client on autossl's configuration with the caller's account key.
local function client_for(autossl, account_key)
  if not account_key then
    local ok, err = autossl._ensure_client()
    if not ok then
      return nil, err
    end
    return autossl.client
  end
  local conf = {}
  for k, v in pairs(autossl.client.conf) do
    conf[k] = v
  end
  conf.account_key = account_key
  conf.account_kid = nil
  return client.new(conf)
end

function _M.serve(opts)
  opts = opts or {}
  local autossl = require("resty.acme.autossl")
  local ok, status, aerr = require("resty.acme.admin").authorize(opts, "acme-order")
  if not ok then
    return fail(status, aerr)
  end
  if ngx_req.get_method() ~= "POST" then
    return fail(405, "POST a JSON or multipart/form-data body")
  end
  if not autossl.client or not autossl.storage then
    return fail(503, "autossl is not initialized in this worker")
  end
  local body, berr = read_body()
  if not body then
    return fail(500, berr)
  end
  if #body > MAX_BODY then
    return fail(413, "request body too large")
  end
  local req, perr = parse_request(body, ngx_req.get_headers()["content-type"] or "")
  if not req then
    return fail(400, perr)
  end
  local max = opts.max_names or 100
  if #req.names == 0 then
    return fail(400, "names are required")
  end
  if #req.names > max then
    return fail(400, "at most " .. max .. " names")
  end
  for _, n in ipairs(req.names) do
    local bare = sub(n, 1, 2) == "*." and sub(n, 3) or n
    if not valid_host(bare) then
      return fail(400, "not a valid host name: " .. sub(n, 1, 64))
    end
    if not opts.allow_any_name and not autossl.is_domain_whitelisted(n, true, { renewal = false, endpoint = true }) then
      return fail(403, "name not allowed: " .. n)
    end
  end
  local key_type = req.key_type or "rsa"
  local domain_key = req.domain_key
  if domain_key then
    if not require("resty.acme.core").pkey_from_pem(domain_key) then
      return fail(400, "domain_key is not a supported private key")
    end
  else
    local kerr
    if key_type == "rsa" then
      domain_key, kerr = util.create_pkey(4096, "RSA")
    elseif key_type == "ecc" then
      domain_key, kerr = util.create_pkey(nil, "EC", "prime256v1")
    else
      return fail(400, "key_type must be rsa or ecc")
    end
    if not domain_key then
      return fail(500, "cannot generate the domain key: " .. tostring(kerr))
    end
  end
  local c, cerr = client_for(autossl, req.account_key)
  if not c then
    return fail(req.account_key and 400 or 502, "account: " .. tostring(cerr))
  end
  local t0 = now()
  local args = {}
  for i, n in ipairs(req.names) do
    args[i] = n
  end
  local cert, oerr = c:order_certificate(domain_key, unpack(args))
  if not cert then
    log(ngx.ERR, "order endpoint: order for ", req.names[1], " (", #req.names, " names) failed: ", oerr)
    return fail(502, "order failed: " .. tostring(oerr))
  end
  log(ngx.INFO, "order endpoint: issued ", req.names[1], " (", #req.names, " names) in ",
    math_floor((now() - t0) * 1000) / 1000, "s")
  metrics.add('acme_endpoint_orders_total{result="success"}')
  metrics.observe("acme_issue_duration_seconds", 'type="endpoint"', now() - t0)
  ngx.header["Content-Type"] = "application/x-pem-file"
  ngx.header["Cache-Control"] = "no-store"
  if sub(cert, -1) ~= "\n" then
    cert = cert .. "\n"
  end
  ngx.print(cert, domain_key, sub(domain_key, -1) == "\n" and "" or "\n")
  return ngx.exit(ngx.HTTP_OK)
end

_M._parse_multipart = parse_multipart

return _M
