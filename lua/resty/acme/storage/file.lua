-- One file per key in a directory, in the original's format (`<base64 key>` holding
-- `<expiry>::<value>`). The native core writes atomically (temp file, fsync, rename) with mode
-- 0600 and names files so that no key can leave the directory.
local core = require("resty.acme.core")

local ngx = ngx
local ngx_now = ngx.now
local os_getenv = os.getenv
local setmetatable = setmetatable
local tostring = tostring
local type = type

local _M = { _VERSION = "0.16.0" }
local mt = { __index = _M }

function _M.new(conf)
  local dir = type(conf) == "table" and conf.dir or os_getenv("TMPDIR") or "/tmp"
  if type(dir) ~= "string" or dir == "" then
    return nil, "conf.dir must be a non-empty string"
  end
  return setmetatable({ dir = dir, store = core.file_store(dir) }, mt)
end

-- Values are strings; the original also stores numbers (counters) as their decimal text.
local function text(v)
  if type(v) == "number" then
    return tostring(v)
  end
  return v
end

function _M.set(self, k, v, ttl)
  local ok, err = self.store:set(k, text(v), ttl, ngx_now())
  if not ok then
    return "file storage: " .. err
  end
  return nil
end

function _M.add(self, k, v, ttl)
  local ok, err = self.store:add(k, text(v), ttl, ngx_now())
  if not ok then
    if err == "exists" then
      return "exists"
    end
    return "file storage: " .. err
  end
  return nil
end

function _M.delete(self, k)
  local ok, err = self.store:delete(k)
  if not ok then
    return "file storage: " .. err
  end
  return nil
end

-- Lease operations (docs/STORAGE.md, "Leases"): under the directory lock `add` takes too.
function _M.compare_and_set(self, k, old, v, ttl)
  local ok, err = self.store:compare_and_set(k, text(old), text(v), ttl, ngx_now())
  if ok == nil then
    return "file storage: " .. err
  end
  return not ok and "mismatch" or nil
end

function _M.compare_and_delete(self, k, old)
  local ok, err = self.store:compare_and_delete(k, text(old), ngx_now())
  if ok == nil then
    return "file storage: " .. err
  end
  return not ok and "mismatch" or nil
end

function _M.get(self, k)
  local v, err = self.store:get(k, ngx_now())
  if err then
    return nil, "file storage: " .. err
  end
  return v, nil
end

function _M.list(self, prefix)
  local keys, err = self.store:list(prefix or "")
  if not keys then
    return {}, "file storage: " .. err
  end
  return keys, nil
end

return _M
