-- HTTP(S) transport for talking to the ACME CA from inside nginx.
--
-- Lua only moves bytes over ngx.socket.tcp cosockets; resty.acme.core (Rust) splits the URL,
-- encodes the request and parses the response. Connections are kept in the cosocket pool
-- named after scheme, host, port and the TLS verification setting.
--
-- Every TLS connection verifies the peer: the chain against lua_ssl_trusted_certificate and the
-- name, a DNS name by nginx (X509_check_host on the certificate's DNS SANs), an IP literal here
-- after the handshake against the certificate's iPAddress SANs (nginx's check never looks at
-- them). `ssl_verify = false` is the only way out, and says so in the error log.

local core = require("resty.acme.core")
local ffi = require("ffi")
local core_ffi = require("resty.acme.core_ffi")

local ngx = ngx
local tcp = ngx.socket.tcp
local get_phase = ngx.get_phase
local type = type
local error = error
local tostring = tostring
local setmetatable = setmetatable
local pairs = pairs
local str_lower = string.lower
local ngx_log = ngx.log
local INFO = ngx.INFO
local WARN = ngx.WARN
local math_floor = math.floor
local find = string.find
local match = string.match
local pcall = pcall

local http_target = core.http_target
local http_request = core.http_request
local http_parser = core.http_parser

local _M = { _VERSION = "0.1.0" }
local mt = { __index = _M }

local READ_SIZE = 65536

-- src/lua/peer.rs; another module may have declared it already, which is fine.
pcall(ffi.cdef, [[
int resty_acme_session_peer_ip_matches(void *session, const char *host, size_t len);
]])

local core_lib_err

-- The core library as an FFI namespace (resty.acme.core_ffi), once it is needed.
local peer_lib
local function core_lib()
  if not peer_lib and not core_lib_err then
    peer_lib, core_lib_err = core_ffi.load("resty_acme_session_peer_ip_matches")
  end
  return peer_lib, core_lib_err
end

-- Whether a host or server name is an IP literal (IPv4 dotted quad, or IPv6 with or without
-- brackets) rather than a DNS name.
local function is_ip_literal(name)
  return find(name, ":", 1, true) ~= nil or match(name, "^%d+%.%d+%.%d+%.%d+$") ~= nil
end
_M.is_ip_literal = is_ip_literal

-- TLS handshake on the cosocket `sock` that checks the peer's name. `name` is the name to
-- verify the certificate against (and the SNI when it is a DNS name: none for IP literals,
-- RFC 6066 section 3); `verify` false skips every check. Returns true or nil, err with
-- lua-nginx-module's wording ("certificate host mismatch" for a wrong name).
local function handshake(sock, name, verify)
  local ip = name ~= nil and is_ip_literal(name)
  if not verify then
    return sock:sslhandshake(false, (not ip) and name or nil, false)
  end
  if not ip then
    return sock:sslhandshake(false, name, true)
  end
  -- nginx verifies the chain; the address is checked on the session's peer certificate.
  -- lua-resty-core 0.1.25 raises (an assertion in its sslhandshake) instead of returning the
  -- error when a handshake asked for its session fails verification at once.
  local ok, sess, err = pcall(sock.sslhandshake, sock, true, nil, true)
  if not ok then
    return nil, "certificate verify failed (nginx's error log names the cause)"
  end
  if not sess then
    return nil, err
  end
  -- http (lua-resty-core's FFI sslhandshake) returns the SSL_SESSION* as cdata; stream-lua's
  -- C sslhandshake a full userdata whose payload is that pointer
  local session
  if type(sess) == "cdata" then
    session = sess
  elseif type(sess) == "userdata" then
    session = ffi.cast("void **", sess)[0]
  end
  if session == nil then
    return nil, "certificate host mismatch (no tls session to check " .. name .. " on)"
  end
  local lib, lerr = core_lib()
  if not lib then
    return nil, "certificate host mismatch (cannot check " .. name .. ": " .. lerr .. ")"
  end
  if lib.resty_acme_session_peer_ip_matches(session, name, #name) ~= 1 then
    return nil, "certificate host mismatch"
  end
  return true
end

function _M.tls_handshake(sock, name, verify)
  local ok, err = handshake(sock, name, verify)
  if not ok then
    return nil, err
  end
  -- When the handshake completes asynchronously, lua-nginx-module 0.10.23 can report a
  -- failed certificate verification as success after closing the socket (it logs "lua ssl
  -- certificate verify error"): a closed socket here means exactly that.
  if not sock:getreusedtimes() then
    return nil, "certificate verification failed (an issuer not in " ..
      "lua_ssl_trusted_certificate, or a host mismatch: nginx's error log names which)"
  end
  return true
end

local warned_noverify = {}

-- Logs, once per process and `who`, that TLS certificates are not verified (ssl_verify or
-- tls_verify = false: the only way to turn the checks off).
function _M.warn_noverify(who)
  if warned_noverify[who] then
    return
  end
  warned_noverify[who] = true
  ngx_log(WARN, who, ": TLS certificate verification is disabled ",
          "(ssl_verify/tls_verify = false): any server can pose as the configured one")
end

-- Phases where cosockets cannot be used (lua-nginx-module docs, "Cosockets Not Available
-- Everywhere").
local NO_COSOCKET = {
  init = true,
  init_worker = true,
  set = true,
  log = true,
  header_filter = true,
  body_filter = true,
  balancer = true,
  exit_worker = true,
  ssl_session_store = true,
}

local DEFAULTS = {
  timeout = 10000,
  keepalive_timeout = 60000,
  keepalive_pool = 16,
  max_body = 1024 * 1024,
}

local function non_negative_int(opts, name)
  local v = opts[name]
  if v == nil then
    return DEFAULTS[name]
  end
  if type(v) ~= "number" or v < 0 or v ~= math_floor(v) then
    error("transport option " .. name .. " must be a non-negative integer, got "
          .. tostring(v), 3)
  end
  return v
end

local function pool_name(self, target)
  return "resty.acme:" .. target.scheme .. ":" .. target.host_port .. ":"
         .. (self.ssl_verify and "verify" or "noverify")
         .. (self.server_name and (":" .. self.server_name) or "")
end

-- One exchange on one connection. Returns res; or nil, err, retry where retry is true when a
-- connection taken from the keepalive pool failed before any response byte arrived (the
-- server most likely closed it while it was idle), so the request can be sent again.
local function exchange(self, target, pool, req, is_head)
  local where = target.host_port
  local sock, err = tcp()
  if not sock then
    return nil, "failed to create socket: " .. tostring(err)
  end
  local t = self.timeout
  sock:settimeouts(t, t, t)

  local ok
  ok, err = sock:connect(target.connect_host, target.port,
                         { pool = pool, pool_size = self.keepalive_pool })
  if not ok then
    return nil, "failed to connect to " .. where .. ": " .. tostring(err)
  end
  local reused = (sock:getreusedtimes() or 0) > 0

  if target.scheme == "https" and not reused then
    -- The certificate must name server_name, by default the URL's host (an IP literal
    -- against its IP SANs); the chain is verified with lua_ssl_trusted_certificate.
    ok, err = _M.tls_handshake(sock, self.server_name or target.host, self.ssl_verify)
    if not ok then
      sock:close()
      return nil, "tls handshake with " .. where .. " failed: " .. tostring(err)
    end
  end

  local sent
  sent, err = sock:send(req)
  if not sent then
    sock:close()
    if reused then
      return nil, "failed to send request to " .. where .. ": " .. tostring(err), true
    end
    if err == "timeout" then
      return nil, "timeout sending request to " .. where
    end
    return nil, "failed to send request to " .. where .. ": " .. tostring(err)
  end

  local parser = http_parser(is_head, self.max_body)
  local got_any = false
  while true do
    local data, rerr = sock:receiveany(READ_SIZE)
    if not data then
      if rerr == "closed" then
        local eof_ok, perr = parser:eof()
        if eof_ok then
          break
        end
        sock:close()
        if reused and not got_any then
          return nil, "connection to " .. where .. " closed before the response", true
        end
        return nil, "invalid response from " .. where .. ": " .. tostring(perr)
      end
      sock:close()
      if rerr == "timeout" then
        return nil, "timeout reading response from " .. where
      end
      if reused and not got_any then
        return nil, "failed to read response from " .. where .. ": " .. tostring(rerr), true
      end
      return nil, "failed to read response from " .. where .. ": " .. tostring(rerr)
    end
    got_any = true
    local done, perr = parser:feed(data)
    if done == nil then
      sock:close()
      return nil, "invalid response from " .. where .. ": " .. tostring(perr)
    end
    if done then
      break
    end
  end

  if self.keepalive and parser:keepalive() then
    local kok = sock:setkeepalive(self.keepalive_timeout, self.keepalive_pool)
    if not kok then
      sock:close()
    end
  else
    sock:close()
  end

  local status, headers, body, header_list = parser:response()
  return { status = status, headers = headers, body = body, header_list = header_list }
end

-- opts: timeout (ms, for connect, send and each read; 10000; 0 = nginx's lua_socket_*_timeout),
-- keepalive_timeout (ms; 60000; 0 = no idle timeout),
-- keepalive_pool (16), ssl_verify (true), max_body (bytes; 1 MiB), keepalive (true; false
-- sends "Connection: close" and never pools), server_name (the name the certificate is
-- verified against, and the TLS SNI when it is a DNS name; default the URL's host; an IP
-- literal is checked against the certificate's IP SANs).
function _M.new(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("transport options must be a table", 2)
  end
  opts = opts or {}
  local self = {
    timeout = non_negative_int(opts, "timeout"),
    keepalive_timeout = non_negative_int(opts, "keepalive_timeout"),
    keepalive_pool = non_negative_int(opts, "keepalive_pool"),
    max_body = non_negative_int(opts, "max_body"),
    ssl_verify = opts.ssl_verify ~= false,
    keepalive = opts.keepalive ~= false,
    server_name = opts.server_name,
  }
  if self.server_name ~= nil and (type(self.server_name) ~= "string" or self.server_name == "") then
    error("transport option server_name must be a non-empty string", 2)
  end
  if self.keepalive_pool < 1 then
    error("transport option keepalive_pool must be at least 1", 2)
  end
  if not self.ssl_verify then
    -- once per process: DNS providers make a transport per use
    _M.warn_noverify("resty.acme.transport")
  end
  return setmetatable(self, mt)
end

-- Performs one request. headers: name -> string (or array of strings); body: string or nil.
-- Returns res = { status, headers, body, header_list } or nil, err. res.headers maps
-- lower-cased names to values (repeated fields joined with ", ") and looks names up
-- case-insensitively; res.header_list is an array of { name, value } in received order.
function _M:request(method, url, headers, body)
  if type(method) ~= "string" or type(url) ~= "string" then
    error("transport:request(method, url, headers, body): method and url must be strings", 2)
  end
  if headers ~= nil and type(headers) ~= "table" then
    error("transport:request: headers must be a table", 2)
  end
  if body ~= nil and type(body) ~= "string" then
    error("transport:request: body must be a string", 2)
  end

  local phase = get_phase()
  if NO_COSOCKET[phase] then
    return nil, "cosockets are not available in the " .. phase .. " phase; run this from a "
                .. "timer, or content/access/ssl_cert phase"
  end

  local target, err = http_target(url)
  if not target then
    return nil, err
  end
  if not self.keepalive then
    local h = { Connection = "close" }
    for k, v in pairs(headers or {}) do
      if type(k) ~= "string" or str_lower(k) ~= "connection" then
        h[k] = v
      end
    end
    headers = h
  end
  local req
  req, err = http_request(method, url, headers, body)
  if not req then
    return nil, err
  end

  local pool = pool_name(self, target)
  local is_head = method == "HEAD"
  -- A stale pooled connection fails without a response byte; retry on the next one, at most
  -- as many times as the pool can hold, after which connect opens a fresh connection. A
  -- failure on a fresh connection is never retried.
  local res, retry
  for _ = 1, self.keepalive_pool + 1 do
    res, err, retry = exchange(self, target, pool, req, is_head)
    if res or not retry then
      break
    end
    ngx_log(INFO, "resty.acme.transport: retrying on a new connection: ", err)
  end
  if not res then
    return nil, err
  end
  return res
end

return _M
