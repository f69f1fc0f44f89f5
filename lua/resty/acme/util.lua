-- Helpers with the original's names: base64url, keys, CSR, thumbprint, chain checks, logging.
local core = require("resty.acme.core")

local raw_log = require("ngx.errlog").raw_log

local ngx = ngx
local ngx_sleep = ngx.sleep
local io_open = io.open
local get_phase = ngx.get_phase
local debug_getinfo = debug.getinfo
local select = select
local tostring = tostring
local type = type
local concat = table.concat

local _M = { _VERSION = "0.16.0" }

-- Phases where ngx.sleep yields, so heavy crypto can run on a Rust thread meanwhile.
local yieldable_phases = {
  rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}

local function can_yield()
  return yieldable_phases[get_phase()] == true
end

-- Returns the core key object of a pkey argument: our openssl.pkey wrapper, a core key, or PEM.
local function core_key(pkey)
  if type(pkey) == "table" and pkey._key then
    return pkey._key
  elseif type(pkey) == "userdata" then
    return pkey
  elseif type(pkey) == "string" then
    return core.pkey_from_pem(pkey)
  end
  return nil, "expected a private key, got " .. type(pkey)
end
_M.core_key = core_key

function _M.encode_base64url(s)
  return core.b64url(s)
end

function _M.decode_base64url(s)
  if type(s) ~= "string" then
    return nil
  end
  return core.b64url_decode(s)
end

-- Waits for a job running on a Rust thread (core.pkey_generate_async, core.csr_async, a
-- signature): polls every `wait` seconds, the pause doubling up to `max_wait`. Where the phase
-- cannot yield, blocks until the thread is done. Returns the job's result, or nil, err.
local function wait_job(job, wait, max_wait)
  if not can_yield() then
    return job:wait()
  end
  while true do
    local res, err = job:poll()
    if res ~= false then
      return res, err
    end
    ngx_sleep(wait)
    if wait < max_wait then
      wait = wait * 2
    end
  end
end
_M.wait_job = wait_job

-- Generates a key and returns a core key object. Off the event loop where the phase allows:
-- an RSA-4096 key costs about a second of CPU that would otherwise stall every handshake.
function _M.generate_key(bits, typ, curve)
  if not can_yield() then
    return core.pkey_generate(typ, bits, curve)
  end
  -- RSA keys wait for the machine-wide slot on their thread (src/cpu_slot.rs)
  local job, err = core.pkey_generate_async(typ, bits, curve)
  if not job then
    return nil, err
  end
  return wait_job(job, 0.002, 0.05)
end

-- The DER CSR for a core key and a list of names. An RSA key signs on a thread where the phase
-- allows (RSA-4096: about 3 ms of the event loop otherwise); an EC one here (tens of µs).
function _M.csr_der(key, names)
  if key:type() ~= "rsa" or not can_yield() then
    return core.csr(key, names)
  end
  local job, err = core.csr_async(key, names)
  if not job then
    return nil, err
  end
  return wait_job(job, 0.002, 0.002)
end

-- create_pkey(bits?, typ?, curve?) -> PKCS#8 PEM, as the original (default RSA 4096).
function _M.create_pkey(bits, typ, curve)
  local key, err = _M.generate_key(bits or 4096, typ or "RSA", curve)
  if not key then
    return nil, err
  end
  return key:to_pem()
end

-- create_csr(pkey, name, ...) -> DER
function _M.create_csr(pkey, ...)
  local key, err = core_key(pkey)
  if not key then
    return nil, err
  end
  return core.csr(key, { ... })
end

function _M.thumbprint(pkey)
  local key, err = core_key(pkey)
  if not key then
    return nil, err
  end
  return key:thumbprint()
end

-- true when the issuer CN of the last certificate of the chain is `name`.
function _M.check_chain_root_issuer(chain_pem, name)
  local cn, err = core.cert_root_issuer_cn(chain_pem or "")
  if err or not chain_pem or chain_pem == "" then
    return false, "cert not found in PEM chain"
  end
  if cn == name then
    return true
  end
  return false, "current chain root issuer common name is \"" .. tostring(cn) .. "\""
end

-- log(level, ...): "[acme] <file>:<line>: " then the arguments, like the original.
function _M.log(level, ...)
  local info = debug_getinfo(2, "Sl")
  local src = info and info.short_src and info.short_src:match("[^/]*$") or "?"
  local n = select("#", ...)
  local parts = { "[acme] ", src, ":", tostring(info and info.currentline or 0), ": " }
  for i = 1, n do
    parts[#parts + 1] = tostring((select(i, ...)))
  end
  -- raw_log: nginx would otherwise add its own "[lua] file:line:" prefix, twice the location
  return raw_log(level, concat(parts))
end

_M.can_yield = can_yield

-- read_file(path): the whole file, or nil, err, opened (false: it could not be opened and err
-- is why; true: it was empty or unreadable). Callers word the error as their config key needs.
function _M.read_file(path)
  local f, err = io_open(path, "r")
  if not f then
    return nil, tostring(err), false
  end
  local data = f:read("*a")
  f:close()
  if not data or data == "" then
    return nil, "empty or unreadable", true
  end
  return data
end

-- A dns provider's `nameservers` setting as a list: one server given as a string becomes
-- { server }; anything else is returned as it is.
function _M.nameserver_list(ns)
  if type(ns) == "string" then
    return { ns }
  end
  return ns
end

return _M
