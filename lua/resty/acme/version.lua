-- Version of the Lua side of lua-resty-acme-rs (placeholder until the real modules land).
local _M = { _VERSION = "0.1.0" }

return _M
