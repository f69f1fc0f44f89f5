-- What the clients of HTTP/JSON APIs share: the Consul and Vault storage adapters and the HTTP
-- DNS providers. Requests go over the project's cosocket transport (resty.acme.transport).
local transport = require("resty.acme.transport")
local cjson = require("cjson.safe")

local ngx = ngx
local encode_args = ngx.encode_args
local ipairs = ipairs
local tostring = tostring
local type = type
local byte = string.byte
local format = string.format
local gsub = string.gsub
local lower = string.lower
local sub = string.sub

local _M = { _VERSION = "0.16.0" }

local json = cjson.new()

-- RFC 3986 section 2.3 unreserved characters (and ":") stay; every other byte is %XX.
function _M.escape(s)
  return (gsub(s, "[^%w%-%._~:]", function(c)
    return format("%%%02X", byte(c))
  end))
end

-- A response body for an error message: its first 200 bytes, "..." when there are more.
function _M.snippet(body)
  body = tostring(body or "")
  if #body > 200 then
    return sub(body, 1, 200) .. "..."
  end
  return body
end

-- JSON text of a response body: the decoded value, or nil when it is not JSON.
function _M.decode(body)
  return json.decode(body or "")
end

-- One request over `t` (a resty.acme.transport). A table `body` is sent as JSON, with
-- Content-Type: application/json set in `headers`; a string is sent as it is. A transport error
-- is tried again until `tries` attempts (default 1) are spent. Returns res (any status); or nil,
-- "<what> failed: <the last transport error>".
function _M.request(t, method, url, headers, body, what, tries)
  local payload = body
  if type(body) == "table" then
    payload = json.encode(body)
    headers["Content-Type"] = "application/json"
  end
  local res, err
  for _ = 1, tries or 1 do
    res, err = t:request(method, url, headers, payload)
    if res then
      return res
    end
  end
  return nil, what .. " failed: " .. tostring(err)
end

-- The common part of an HTTP DNS provider's new(secret): `secret` is the API token, or a table
-- { token =, api_base =, ssl_verify =, timeout = } that may hold the provider's own keys too.
-- Returns a client { token =, base = (api_base or default_base, no trailing "/"), transport = }
-- and the conf table; or nil, "api token is needed".
-- The transport of an HTTP DNS provider from its conf: TLS verified unless ssl_verify = false,
-- timeout (ms per request) 10000 unless given.
local function provider_transport(conf)
  return transport.new({ ssl_verify = conf.ssl_verify ~= false, timeout = conf.timeout or 10000 })
end
_M.provider_transport = provider_transport

function _M.token_client(secret, default_base)
  local conf = type(secret) == "table" and secret or { token = secret }
  local token = conf.token
  if type(token) ~= "string" or token == "" then
    return nil, "api token is needed"
  end
  local base = conf.api_base or default_base
  return {
    token = token,
    base = (base:gsub("/+$", "")),
    transport = provider_transport(conf),
  }, conf
end

-- A request of a token client to base .. path (?query when given) with the token as a bearer
-- credential, accepting JSON; a table body is sent as JSON. Returns res (any status); or nil,
-- "<method> <path> failed: <transport error>".
function _M.bearer_request(client, method, path, query, body)
  local url = client.base .. path
  if query then
    url = url .. "?" .. encode_args(query)
  end
  return _M.request(client.transport, method, url, {
    ["Authorization"] = "Bearer " .. client.token,
    ["Accept"] = "application/json",
  }, body, method .. " " .. path)
end

-- A domain name lower-cased, without a final dot.
local function strip_dot(name)
  return (lower(name):gsub("%.$", ""))
end
_M.strip_dot = strip_dot

-- Whether the (stripped) domain name `name` is `zone` or below it.
local function in_zone(name, zone)
  return name == zone or sub(name, -(#zone + 1)) == "." .. zone
end
_M.in_zone = in_zone

-- The zone of a DNS provider account for `fqdn`: among `zones` (API items { id =, name = }),
-- the longest name that is fqdn or a parent of it. Returns { id = <text>, name = <stripped> } or
-- nil, then fqdn stripped (see strip_dot).
function _M.longest_zone(zones, fqdn)
  local name = strip_dot(fqdn)
  local best
  for _, z in ipairs(zones) do
    if type(z) == "table" and type(z.name) == "string" and z.id then
      local zn = strip_dot(z.name)
      if in_zone(name, zn) and (not best or #zn > #best.name) then
        best = { id = tostring(z.id), name = zn }
      end
    end
  end
  return best, name
end

-- Whether `r`, an item of a provider's record list, is a TXT record with an id whose name,
-- through `norm`, is `name`: the records delete_txt_record may remove (when their value matches).
function _M.is_txt_named(r, name, norm)
  if type(r) == "table" and r.type == "TXT" and type(r.name) == "string" and norm(r.name) == name
      and r.id then
    return true
  end
  return false
end

return _M
