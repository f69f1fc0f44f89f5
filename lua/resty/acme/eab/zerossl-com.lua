-- External account binding credentials for ZeroSSL, from the account e-mail (their
-- documented `eab-credentials-email` endpoint). Chosen by the client when the directory's
-- meta.website is https://zerossl.com and no EAB keys are configured.
local transport = require("resty.acme.transport")
local cjson = require("cjson.safe")

local ngx = ngx
local escape_uri = ngx.escape_uri
local tostring = tostring
local type = type

local _M = { _VERSION = "0.16.0" }

local API = "https://api.zerossl.com/acme/eab-credentials-email"

-- handle(account_email) -> eab_kid, eab_hmac_key (base64url) | nil, nil, err
function _M.handle(account_email)
  if type(account_email) ~= "string" or account_email == "" then
    return nil, nil, "zerossl.com requires account_email for external account binding"
  end
  local t = transport.new({})
  local res, err = t:request("POST", _M.api_uri or API,
    { ["content-type"] = "application/x-www-form-urlencoded" },
    "email=" .. escape_uri(account_email))
  if not res then
    return nil, nil, "zerossl.com API request failed: " .. err
  end
  local body = cjson.decode(res.body)
  if type(body) ~= "table" or not body.success then
    return nil, nil, "zerossl.com API error: " .. tostring(res.body):sub(1, 512)
  end
  if not body.eab_kid or not body.eab_hmac_key then
    return nil, nil, "zerossl.com API response missing eab_kid or eab_hmac_key: " .. tostring(res.body):sub(1, 512)
  end
  return body.eab_kid, body.eab_hmac_key
end

return _M
