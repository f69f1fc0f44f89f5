-- Which names autossl serves and orders: the host-name rule a server name must pass, and the
-- allow-list (domain_whitelist, its wildcard entries, or domain_whitelist_callback).
local state = require("resty.acme.autossl.state")

local ipairs = ipairs
local type = type
local byte = string.byte
local find = string.find
local lower = string.lower
local sub = string.sub

local _M = { _VERSION = "0.16.0" }

local whitelist_set = nil     -- exact names from domain_whitelist
local wildcard_suffixes = nil -- ".example.com" from "*.example.com" entries
local wildcard_names = nil    -- "*.example.com", same index: returned without a concatenation

-- valid_sni(name): whether name is a host name as a certificate can name it (true or false,
-- never raises for a string): LDH labels of 1..63, at most 253 bytes, no trailing dot, not an
-- IP literal. Anything else is never looked up or ordered.
function _M.valid_sni(name)
  local len = #name
  if len == 0 or len > 253 then
    return false
  end
  local label = 0         -- length of the current label
  local all_digits = true -- the current label is all digits
  for i = 1, len do
    local c = byte(name, i)
    if c == 46 then -- "."
      if label == 0 or byte(name, i - 1) == 45 then
        return false
      end
      label = 0
      all_digits = true
    elseif (c >= 97 and c <= 122) or (c >= 48 and c <= 57) or c == 45 then
      if label == 0 and c == 45 then
        return false
      end
      if c < 48 or c > 57 then
        all_digits = false
      end
      label = label + 1
      if label > 63 then
        return false
      end
    else
      return false
    end
  end
  -- a last label of only digits is an IPv4 literal, not a host name
  return label > 0 and byte(name, len) ~= 45 and not all_digits
end

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
