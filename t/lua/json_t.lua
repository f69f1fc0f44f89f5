-- The JSON request and reply of the test endpoints (acme_t, dns_t).
local cjson = require("cjson.safe")

local ngx = ngx
local type = type

local _M = {}

-- The request body decoded as a JSON object; {} when there is none or it is not an object.
function _M.read_args()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  local args = body and cjson.decode(body) or {}
  if type(args) ~= "table" then
    args = {}
  end
  return args
end

function _M.reply(res)
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(res))
end

return _M
