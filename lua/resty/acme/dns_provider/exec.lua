-- TXT records through an operator's command, the convention of lego's `exec` provider and
-- mod_md's MDChallengeDns01: `<command> add <fqdn> <value>` creates the record,
-- `<command> remove <fqdn> <value>` deletes it (value "" when it is not known). Exit status 0
-- is success. The command runs on a thread of the native core (not in nginx's event loop),
-- with stdin from /dev/null, for at most `timeout` seconds (then its process group is
-- killed); its output (stdout and stderr) is in the error and the log when it fails.
--
-- secret = {
--   command = "/usr/local/bin/dns-hook",  -- or a list { "/usr/local/bin/hook", "--zone", "x" }
--   timeout = 60,                         -- seconds (default 60)
--   nameservers = { "192.0.2.53" },       -- optional: servers the propagation check asks
-- }
-- A string secret is the command.
local core = require("resty.acme.core")
local util = require("resty.acme.util")

local ngx = ngx
local log = util.log
local ipairs = ipairs
local setmetatable = setmetatable
local tonumber = tonumber
local tostring = tostring
local type = type
local concat = table.concat
local sub = string.sub

local _M = { _VERSION = "0.16.0" }
local mt = { __index = _M }

local NAME = "exec"
local MAX_LOGGED = 2000

local function fail(msg)
  return nil, NAME .. ": " .. msg
end

local function clip(output)
  output = (tostring(output or ""):gsub("%s+$", ""))
  if #output > MAX_LOGGED then
    return sub(output, 1, MAX_LOGGED) .. "..."
  end
  return output
end

local function run(self, action, fqdn, value)
  local argv = {}
  for i, a in ipairs(self.command) do
    argv[i] = a
  end
  argv[#argv + 1] = action
  argv[#argv + 1] = fqdn
  argv[#argv + 1] = value or ""
  local what = self.command[1] .. " " .. action .. " " .. fqdn
  local job, err = core.exec_async(argv, self.timeout * 1000)
  if not job then
    return fail(what .. ": " .. tostring(err))
  end
  local res, jerr = util.wait_job(job, 0.02, 0.25)
  if not res then
    return fail(what .. ": " .. tostring(jerr))
  end
  local reason
  if res.timed_out then
    reason = "timed out after " .. self.timeout .. "s (killed)"
  elseif res.code ~= 0 then
    reason = "exited with status " .. tostring(res.code or "unknown")
  end
  if reason then
    local output = clip(res.output)
    log(ngx.WARN, "dns provider exec: ", what, " ", reason, ", output: ", output)
    return fail(what .. " " .. reason .. (output ~= "" and (": " .. output) or ""))
  end
  return true
end

function _M.new(secret)
  local conf = type(secret) == "table" and secret or { command = secret }
  local command = conf.command
  if type(command) == "string" then
    command = { command }
  end
  if type(command) ~= "table" or type(command[1]) ~= "string" or command[1] == "" then
    return fail("command is needed")
  end
  for _, a in ipairs(command) do
    if type(a) ~= "string" then
      return fail("every element of command must be a string")
    end
  end
  local timeout = tonumber(conf.timeout) or 60
  if timeout <= 0 then
    return fail("timeout must be positive")
  end
  return setmetatable({ command = command, timeout = timeout,
                        ns = util.nameserver_list(conf.nameservers) }, mt)
end

function _M:post_txt_record(fqdn, content)
  return run(self, "add", fqdn, content)
end

function _M:delete_txt_record(fqdn, content)
  return run(self, "remove", fqdn, content)
end

function _M:nameservers()
  return self.ns
end

-- For messages: the command line without the record.
function _M:describe()
  return concat(self.command, " ")
end

return _M
