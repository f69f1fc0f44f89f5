-- The core library (resty.acme.core, src/lua/ffi.rs and friends) as an FFI namespace, for the
-- plain C entry points that Lua calls through LuaJIT's FFI: the same file `require` loaded
-- (dlopen hands back the loaded handle), found the way `require` found it.
--
-- load(symbol): the namespace, or nil, err when the library or `symbol` (one of its exports
-- that the caller needs, already declared with ffi.cdef) cannot be reached.
local ffi = require("ffi")
require("resty.acme.core")

local package = package
local pcall = pcall
local tostring = tostring

local _M = { _VERSION = "0.16.0" }

local lib, lib_err

local function open()
  if lib or lib_err then
    return lib, lib_err
  end
  local searchpath = package.searchpath
  if not searchpath then
    lib_err = "package.searchpath is missing"
    return nil, lib_err
  end
  local path, err = searchpath("resty.acme.core", package.cpath)
  if not path then
    lib_err = "resty.acme.core not found: " .. tostring(err)
    return nil, lib_err
  end
  local ok, l = pcall(ffi.load, path)
  if not ok then
    lib_err = tostring(l)
    return nil, lib_err
  end
  _M.path = path
  lib = l
  return lib
end

function _M.load(symbol)
  local l, err = open()
  if not l then
    return nil, err
  end
  if not pcall(function() return l[symbol] end) then
    return nil, symbol .. " is not exported by " .. tostring(_M.path)
  end
  return l
end

return _M
