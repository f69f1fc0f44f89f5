-- DNS over cosockets for dns-01: one request/reply exchange over UDP, or TCP when the request
-- is too large for a datagram or the reply comes back truncated (RFC 1035 §4.2, RFC 7766); TXT
-- lookups for the propagation check and SOA lookups for zone discovery. resty.acme.core (Rust,
-- hickory-proto) builds every message and checks every reply; Lua only moves the bytes.
local core = require("resty.acme.core")
local util = require("resty.acme.util")

local ngx = ngx
local udp = ngx.socket.udp
local tcp = ngx.socket.tcp
local ngx_time = ngx.time
local log = util.log
local byte = string.byte
local char = string.char
local find = string.find
local match = string.match
local math_floor = math.floor
local ipairs = ipairs
local io_open = io.open
local tonumber = tonumber
local tostring = tostring
local type = type

local _M = { _VERSION = "0.16.0" }

local DEFAULT_TIMEOUT = 2000 -- ms, per try
local DEFAULT_RETRIES = 2    -- UDP retransmissions after the first try
local MAX_STRAY = 16         -- datagrams that are not the reply, ignored per try

-- "host", "host:port", "[v6]" or "[v6]:port" -> host for the cosocket API, port, label.
local function parse_server(server)
  if type(server) ~= "string" or server == "" then
    return nil, "dns server must be a non-empty string, got " .. tostring(server)
  end
  local host, port = match(server, "^%[([^%]]+)%]:(%d+)$")
  if not host then
    host = match(server, "^%[([^%]]+)%]$")
  end
  if not host then
    local h, p = match(server, "^([^:]+):(%d+)$")
    if h then
      host, port = h, p
    else
      host = server
    end
  end
  port = tonumber(port or 53)
  if not port or port < 1 or port > 65535 then
    return nil, "invalid port in dns server " .. server
  end
  if find(host, ":", 1, true) then
    host = "[" .. host .. "]" -- IPv6 literal, as nginx's URL parser wants it
  end
  return host, port
end
_M.parse_server = parse_server

local function opt(opts, name, default)
  local v = opts and opts[name]
  if v == nil then
    return default
  end
  return v
end

local function exchange_tcp(server, host, port, req, timeout)
  local sock, err = tcp()
  if not sock then
    return nil, "failed to create tcp socket: " .. tostring(err)
  end
  sock:settimeouts(timeout, timeout, timeout)
  local ok
  ok, err = sock:connect(host, port)
  if not ok then
    return nil, "tcp connect to " .. server .. " failed: " .. tostring(err)
  end
  -- RFC 1035 §4.2.2: a two-octet length, then the message.
  local payload = req:bytes()
  local n = #payload
  ok, err = sock:send(char(math_floor(n / 256), n % 256) .. payload)
  if not ok then
    sock:close()
    return nil, "tcp send to " .. server .. " failed: " .. tostring(err)
  end
  local len_bytes
  len_bytes, err = sock:receive(2)
  if not len_bytes then
    sock:close()
    return nil, "no reply from " .. server .. " over tcp: " .. tostring(err)
  end
  local len = byte(len_bytes, 1) * 256 + byte(len_bytes, 2)
  local data
  data, err = sock:receive(len)
  sock:close()
  if not data then
    return nil, "truncated reply from " .. server .. " over tcp: " .. tostring(err)
  end
  local accepted, aerr = req:accepts(data)
  if not accepted then
    return nil, "bad reply from " .. server .. " over tcp: " .. tostring(aerr)
  end
  return data
end

-- Returns data, truncated or nil, err.
local function exchange_udp(server, host, port, req, timeout, retries)
  local sock, err = udp()
  if not sock then
    return nil, "failed to create udp socket: " .. tostring(err)
  end
  sock:settimeout(timeout)
  local ok
  ok, err = sock:setpeername(host, port)
  if not ok then
    return nil, "udp setpeername " .. server .. " failed: " .. tostring(err)
  end
  local payload = req:bytes()
  local lasterr = "timeout"
  for _ = 0, retries do
    ok, err = sock:send(payload)
    if not ok then
      sock:close()
      return nil, "udp send to " .. server .. " failed: " .. tostring(err)
    end
    for _ = 1, MAX_STRAY do
      local data, rerr = sock:receive()
      if not data then
        lasterr = tostring(rerr)
        break
      end
      local accepted, truncated = req:accepts(data)
      if accepted then
        sock:close()
        return data, truncated
      end
      -- not ours (late reply to an earlier try, or forged): keep listening (RFC 5452 §9.1)
      log(ngx.DEBUG, "ignoring datagram from ", server, ": ", truncated)
    end
  end
  sock:close()
  return nil, "no reply from " .. server .. " over udp after " .. (retries + 1) .. " tries: " .. lasterr
end

-- exchange(server, req, opts?): reply bytes or nil, err. req: a request from core.dns_query or
-- core.dns_update. opts: timeout (ms per try, 2000), retries (UDP retransmissions, 2),
-- tcp (true: TCP only).
function _M.exchange(server, req, opts)
  local host, port = parse_server(server)
  if not host then
    return nil, port
  end
  local timeout = opt(opts, "timeout", DEFAULT_TIMEOUT)
  if opt(opts, "tcp", false) or req:needs_tcp() then
    return exchange_tcp(server, host, port, req, timeout)
  end
  local data, truncated = exchange_udp(server, host, port, req, timeout, opt(opts, "retries", DEFAULT_RETRIES))
  if not data then
    return nil, truncated
  end
  if truncated then
    log(ngx.DEBUG, "reply from ", server, " truncated, retrying over tcp")
    return exchange_tcp(server, host, port, req, timeout)
  end
  return data
end

-- query(server, name, qtype, opts?): reply table (see core.dns_query) or nil, err.
function _M.query(server, name, qtype, opts)
  local req, err = core.dns_query(name, qtype, opts and opts.recursive or false)
  if not req then
    return nil, err
  end
  local data
  data, err = _M.exchange(server, req, opts)
  if not data then
    return nil, err
  end
  return req:finish(data, ngx_time())
end

-- txt(server, name, opts?): list of TXT values at name ({} when none) or nil, err.
function _M.txt(server, name, opts)
  local reply, err = _M.query(server, name, "TXT", opts)
  if not reply then
    return nil, err
  end
  if reply.rcode == "NOERROR" or reply.rcode == "NXDOMAIN" then
    return reply.txt
  end
  return nil, server .. " answered " .. reply.rcode .. " for TXT " .. name
end

-- find_zone(server, name, opts?): the zone holding name, from the SOA an authoritative server
-- returns for it (in the answer at the apex, in the authority section below it), or nil, err.
function _M.find_zone(server, name, opts)
  local reply, err = _M.query(server, name, "SOA", opts)
  if not reply then
    return nil, err
  end
  if (reply.rcode == "NOERROR" or reply.rcode == "NXDOMAIN") and reply.zone then
    local zone = reply.zone
    local lname = name:lower():gsub("%.$", "")
    if lname == zone or lname:sub(-(#zone + 1)) == "." .. zone then
      return zone
    end
    return nil, server .. " named zone " .. zone .. ", which does not contain " .. name
  end
  return nil, server .. " did not name a zone for " .. name .. " (" .. reply.rcode
    .. (reply.authoritative and "" or ", not authoritative") .. ")"
end

-- The first nameserver of /etc/resolv.conf (the system's resolver), or nil.
function _M.system_resolver()
  local f = io_open("/etc/resolv.conf", "r")
  if not f then
    return nil
  end
  local found
  for line in f:lines() do
    local addr = match(line, "^%s*nameserver%s+([^%s#;]+)")
    if addr then
      found = find(addr, ":", 1, true) and ("[" .. addr .. "]") or addr
      break
    end
  end
  f:close()
  return found
end

-- authoritative_servers(name, resolver, opts?): the servers of the zone holding `name` as
-- { "ip:port", ... } (port opts.port, default 53), and the zone; or nil, err (and true when
-- the resolver gave no reply at all). The zone is the
-- owner of the SOA the resolver (asked with RD set) returns for name, its servers the NS
-- records of the zone, each host's addresses asked from the same resolver (a host without an
-- A record is kept as a name: cosockets then resolve it through nginx's `resolver`).
function _M.authoritative_servers(name, resolver, opts)
  opts = opts or {}
  local q = { timeout = opts.timeout or 2000, retries = opts.retries or 1, recursive = true }
  local port = tonumber(opts.port) or 53
  local reply, err = _M.query(resolver, name, "SOA", q)
  if not reply then
    return nil, "SOA query for " .. name .. " at " .. resolver .. ": " .. tostring(err), true
  end
  local zone = reply.zone
  if not zone then
    return nil, resolver .. " named no zone for " .. name .. " (" .. tostring(reply.rcode) .. ")"
  end
  reply, err = _M.query(resolver, zone, "NS", q)
  if not reply then
    return nil, "NS query for " .. zone .. " at " .. resolver .. ": " .. tostring(err)
  end
  local servers = {}
  for _, rr in ipairs(reply.answers or {}) do
    if rr.type == "NS" and type(rr.data) == "string" then
      local host = rr.data:gsub("%.$", "")
      local a = _M.query(resolver, host, "A", q)
      local added = false
      for _, arr in ipairs(a and a.answers or {}) do
        if arr.type == "A" then
          servers[#servers + 1] = arr.data .. ":" .. port
          added = true
        end
      end
      if not added then
        servers[#servers + 1] = host .. ":" .. port
      end
    end
  end
  if #servers == 0 then
    return nil, resolver .. " returned no NS records for zone " .. zone
  end
  return servers, zone
end

return _M
