-- What the clients of HTTP/JSON APIs share: the Consul and Vault storage adapters and the HTTP
-- DNS providers. Requests go over the project's cosocket transport (resty.acme.transport).
local cjson = require("cjson.safe")

local tostring = tostring
local type = type
local byte = string.byte
local format = string.format
local gsub = string.gsub

local _M = { _VERSION = "0.16.0" }

local json = cjson.new()

-- RFC 3986 section 2.3 unreserved characters (and ":") stay; every other byte is %XX.
function _M.escape(s)
  return (gsub(s, "[^%w%-%._~:]", function(c)
    return format("%%%02X", byte(c))
  end))
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

return _M
