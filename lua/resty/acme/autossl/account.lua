-- The ACME account: its key (a file, or the store shared by every node) and the one-time
-- bootstrap of the client (directory, key, registration) before the first order.
local keys = require("resty.acme.autossl.keys")
local state = require("resty.acme.autossl.state")
local util = require("resty.acme.util")

local ngx = ngx
local ngx_sleep = ngx.sleep
local now = state.now
local log = util.log
local error = error
local math_floor = math.floor
local require = require
local tostring = tostring

local _M = { _VERSION = "0.16.0" }

local account_ready = false
-- true while a timer of this worker creates the account key: the others wait for it rather
-- than each creating one (an RSA-4096 key takes seconds of CPU, one at a time per machine)
local creating = false
local CREATE_WAIT = 300

-- create_account_key(): a new RSA 4096 PEM, or nil, err; logs the time spent.
function _M.create_account_key()
  local t = now()
  local pem, err = util.create_pkey(4096, "RSA")
  if not pem then
    return nil, err
  end
  log(ngx.INFO, "account key generated in ", math_floor((now() - t) * 1000) / 1000, "s")
  return pem
end

-- load_account_key(filepath): the PEM of the file; raises "can't open account_key file ..." or
-- "can't read account_key file ..." (COMPAT.md 2.1; init runs in init_by_lua).
function _M.load_account_key(filepath)
  local pem, err, opened = util.read_file(filepath)
  if not pem then
    error(opened and ("can't read account_key file " .. filepath)
      or ("can't open account_key file " .. filepath .. ": " .. err))
  end
  return pem
end

-- load_account_key_storage(): pem, or nil, err. The account key from the store; created (on a
-- native thread) and stored with `add` when absent, so nodes sharing a store agree on one key
-- instead of the last writer winning.
function _M.load_account_key_storage()
  local storage = state.storage
  local pem, err = storage:get(keys.ACCOUNT_KEY)
  if err then
    return nil, "Failed to read account key from storage: " .. err
  end
  if pem then
    return pem
  end
  local generated = state.generated_account_key
  if not generated and creating then
    local deadline = now() + CREATE_WAIT
    while creating and now() < deadline do
      ngx_sleep(0.05)
    end
    -- what the creator stored (or, when it failed, another try of our own)
    return _M.load_account_key_storage()
  end
  if not generated then
    creating = true
    local ok, pem_or_err, gerr = pcall(_M.create_account_key)
    creating = false
    if not ok then
      return nil, "failed to create account key: " .. tostring(pem_or_err)
    end
    if not pem_or_err then
      return nil, "failed to create account key: " .. tostring(gerr)
    end
    generated = pem_or_err
    -- kept: a store that refuses the add now gets the same key on the next try
    state.generated_account_key = generated
  end
  local aerr = storage:add(keys.ACCOUNT_KEY, generated)
  if aerr and aerr ~= "exists" then
    return nil, "failed to save account_key: " .. aerr
  end
  pem, err = storage:get(keys.ACCOUNT_KEY)
  if not pem then
    return nil, "Failed to read account key from storage: " .. tostring(err or "missing after add")
  end
  return pem
end

-- ensure_key(): true once the client holds the account key, or nil, err.
function _M.ensure_key()
  if state.client.account_pkey then
    return true
  end
  local pem, err = _M.load_account_key_storage()
  if not pem then
    return nil, err
  end
  local ok, serr = state.client:set_account_key(pem)
  if not ok then
    return nil, "failed to set account key: " .. tostring(serr)
  end
  return true
end

-- ensure_client(): true once the client knows the directory and the account is registered
-- (once per worker), or nil, err ("error during acme init/login: ..."), and the failed
-- request's error table (its problem type classifies the backoff).
function _M.ensure_client()
  if account_ready then
    return true
  end
  local ok, err = _M.ensure_key()
  if not ok then
    return nil, "error during acme init: " .. err
  end
  local act
  err, act = state.client:init()
  if err then
    return nil, "error during acme init: " .. err, act
  end
  local _, aerr, aact = state.client:new_account()
  if aerr then
    return nil, "error during acme login: " .. aerr, aact
  end
  account_ready = true
  state.client_initialized = true
  require("resty.acme.dns_persist_log").announce(state.client, state.config)
  return true
end

return _M
