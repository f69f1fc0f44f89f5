-- The core's one host-name rule (src/hostname.rs): lower-case LDH labels of 1..63 bytes, at
-- most 253 in all, no trailing dot, a last label that is not all digits (no IP literals, no
-- wildcards). Checked through the FFI so that the handshake's trace stays compiled; where the
-- core's symbol cannot be reached, through the Lua C API.
local ffi = require("ffi")
local core = require("resty.acme.core")
local core_ffi = require("resty.acme.core_ffi")

local pcall = pcall
local type = type

local _M = { _VERSION = "0.16.0" }

pcall(ffi.cdef, [[
int resty_acme_hostname_valid(const char *name, size_t len);
]])

local lib = core_ffi.load("resty_acme_hostname_valid")

-- valid(name): whether name is a host name a certificate may be ordered and served for.
if lib then
  function _M.valid(name)
    return type(name) == "string" and lib.resty_acme_hostname_valid(name, #name) == 1
  end
else
  local hostname_valid = core.hostname_valid
  function _M.valid(name)
    return type(name) == "string" and hostname_valid(name)
  end
end

return _M
