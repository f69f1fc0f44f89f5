-- luacheck configuration (Debian package lua-check): OpenResty code under lua/.
std = "ngx_lua"
max_line_length = 120
codes = true

-- Tests and examples may define throw-away globals; library code may not.
exclude_files = { "build/**", "target/**" }
-- newer lua-nginx-module APIs missing from luacheck's ngx_lua std
read_globals = {
  ngx = { fields = { "run_worker_thread" } },
}
