-- Which names autossl serves and orders: the host-name rule a server name must pass, and the
-- allow-list (domain_whitelist, its wildcard entries, or domain_whitelist_callback).
local hostname = require("resty.acme.hostname")
local state = require("resty.acme.autossl.state")

local ipairs = ipairs
local type = type
local find = string.find
local lower = string.lower
local sub = string.sub

local _M = { _VERSION = "0.16.0" }

local whitelist_set = nil     -- exact names from domain_whitelist
local wildcard_suffixes = nil -- ".example.com" from "*.example.com" entries
local wildcard_names = nil    -- "*.example.com", same index: returned without a concatenation

-- valid_sni(name): whether name is a host name as a certificate can name it (true or false,
-- never raises): the core's one rule (resty.acme.hostname). Anything else is never looked up
-- or ordered.
_M.valid_sni = hostname.valid

-- init(conf): the allow-list of conf.domain_whitelist, in sets of our own (the user's table is
-- not modified). Never raises: entries that are not strings are ignored, as the original does.
function _M.init(conf)
  whitelist_set, wildcard_suffixes, wildcard_names = {}, {}, {}
  if type(conf.domain_whitelist) == "table" then
    for _, entry in ipairs(conf.domain_whitelist) do
    if type(entry) == "string" then
      local e = lower(entry)
      if sub(e, 1, 1) == "*" then
        wildcard_suffixes[#wildcard_suffixes + 1] = sub(e, 2)
        wildcard_names[#wildcard_names + 1] = e
      else
        whitelist_set[e] = true
      end
    end
  end
end
end

-- allowed(domain, is_new_cert_needed, ctx): the name to use (domain, or the "*.suffix" entry
-- that matched) or false; raises only what domain_whitelist_callback raises.
-- ctx (beyond the original): { renewal =, client_addr =, server_port =, sni = } handed to the
-- callback as its third argument.
function _M.allowed(domain, is_new_cert_needed, ctx)
  local conf = state.config
  local cb = conf.domain_whitelist_callback
  if cb then
    if cb(domain, is_new_cert_needed, ctx or { renewal = false }) then
      return domain
    end
    return false
  end
  local list = conf.domain_whitelist
  if not list then
    return domain
  end
  -- indexed, not only iterated: a metatable may decide (the original's own tests do that)
  if whitelist_set[domain] or list[domain] then
    return domain
  end
  local dlen = #domain
  for i, suffix in ipairs(wildcard_suffixes) do
    local from = dlen - #suffix + 1
    -- a plain find where the suffix would start: no substring per entry and handshake
    if from > 1 and find(domain, suffix, from, true) then
      return wildcard_names[i]
    end
  end
  return false
end

return _M
