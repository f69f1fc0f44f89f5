-- ACME v2 (RFC 8555) client with lua-resty-acme's API. The protocol runs in the native core as a
-- state machine; this module performs what the core asks for: HTTPS exchanges over cosockets,
-- sleeps, and publishing challenges through the challenge handlers.
local core = require("resty.acme.core")
local util = require("resty.acme.util")
local transport = require("resty.acme.transport")
local openssl = require("resty.acme.openssl")
local cjson = require("cjson.safe")

local ngx = ngx
local ngx_now = ngx.now
local ngx_sleep = ngx.sleep
local ngx_update_time = ngx.update_time
local ngx_exit = ngx.exit
local log = util.log
local ipairs = ipairs
local pcall = pcall
local require = require
local select = select
local setmetatable = setmetatable
local tostring = tostring
local type = type
local find = string.find
local gsub = string.gsub
local lower = string.lower
local concat = table.concat
local match = string.match
local sub = string.sub

local _M = { _VERSION = "0.16.0" }
local mt = { __index = _M }

local persist_record -- defined below

local default_config = {
  api_uri = "https://acme-v02.api.letsencrypt.org/directory",
  account_email = nil,
  account_key = nil,
  account_kid = nil,
  eab_kid = nil,
  eab_hmac_key = nil,
  eab_handler = nil,
  storage_adapter = "shm",
  storage_config = { shm_name = "acme" },
  enabled_challenge_handlers = { "http-01" },
  preferred_chain = nil,
  challenge_start_callback = nil,
  -- Beyond the original: function(type, name, token, key_authorization) -> ok, err, called
  -- after a challenge is published and before the CA is asked to validate it.
  challenge_preflight = nil,
  dns_provider_accounts = {},
  -- Beyond the original: dns-persist-01 (see challenge/dns-persist-01.lua).
  dns_persist = nil,
  -- Beyond the original: transport and protocol tuning.
  ssl_verify = true,
  timeout = 10000,
  poll_timeout = 120,
  bad_nonce_retries = 5,
  profile = nil,
}

local json = cjson.new()
local json_encode
if json.encode_escape_forward_slash then
  json.encode_escape_forward_slash(false) -- ZeroSSL refuses "\/" in JWS payloads
  json_encode = json.encode
else
  -- Debian's cjson cannot turn slash escaping off. cjson escapes every "/" and writes a
  -- backslash as "\\", so each "\/" in its output is an escaped slash.
  json_encode = function(v)
    local text, err = json.encode(v)
    if not text then
      return nil, err
    end
    return (gsub(text, "\\/", "/"))
  end
end

local function now()
  ngx_update_time()
  return ngx_now()
end

local function adapter_module(name)
  if not find(name, ".", 1, true) then
    return "resty.acme.storage." .. name
  end
  return name
end

-- The name a challenge is registered under: this authorization's only (the original passed
-- every name of the order, so entries of other names were overwritten).
local function authz_name(act)
  return act.wildcard and ("*." .. act.identifier) or act.identifier
end

-- The dns-persist-01 record a name needs with this account and CA, or nil, err.
persist_record = function(self, name, issuers, account_url)
  local conf = self.conf.dns_persist or {}
  local issuer = conf.issuer
  if not issuer then
    local meta = self.directory and self.directory.meta
    local caa = type(meta) == "table" and meta.caaIdentities
    issuer = type(issuers) == "table" and issuers[1] or (type(caa) == "table" and caa[1])
  end
  if not issuer then
    return nil, "the CA names no issuer domain name (directory meta.caaIdentities); set dns_persist.issuer"
  end
  account_url = account_url or self.account_kid
  if not account_url then
    return nil, "the account URL is not known yet"
  end
  return require("resty.acme.challenge.dns-persist-01").record_for(conf, name, issuer, account_url)
end

-- Publishes one challenge through its handler.
local function publish(self, act)
  local handler = self.challenge_handlers[act.type]
  if not handler then
    return false, "challenge handler " .. act.type .. " is not enabled"
  end
  local name = authz_name(act)
  act.account_url = self.account_kid
  local err = handler:register_challenge(act.token, act.key_authorization, { name }, act)
  if err then
    return false, "error registering challenge: " .. tostring(err)
  end
  if act.type == "dns-persist-01" then
    -- named in the error should the CA not accept the record
    local rec = persist_record(self, name, act.issuer_domain_names, act.account_uri)
    if rec then
      self.persist_expected[#self.persist_expected + 1] = rec
    end
  end
  local cb = self.conf.challenge_start_callback
  if cb then
    while not cb(act.type, act.token) do
      ngx_sleep(1)
    end
  end
  -- Beyond the original: a failing pre-flight check ends the order before the CA is asked to
  -- validate (its failed-validation budget is spared).
  local preflight = self.conf.challenge_preflight
  if preflight then
    local ok, perr = preflight(act.type, act.identifier, act.token, act.key_authorization)
    if not ok then
      return false, perr
    end
  end
  return true
end

local function unpublish(self, act)
  local handler = self.challenge_handlers[act.type]
  if not handler then
    return
  end
  local name = authz_name(act)
  local err = handler:cleanup_challenge(act.token, { name })
  if err then
    log(ngx.WARN, "error cleaning up ", act.type, " challenge for ", name, ": ", err)
  end
end

-- Drives one core operation to its end. Returns the "done" action table, or nil, err, action.
local function run(self, op)
  while true do
    local act = op:next(now())
    local kind = act.kind
    if kind == "http" then
      local res, err = self.transport:request(act.method, act.url, act.headers, act.body)
      if res then
        op:response(res.status, res.headers, res.body, now())
      else
        op:transport_error(err)
      end
    elseif kind == "sign" then
      -- an RSA signature computed on a Rust thread (about 3 ms for RSA-4096)
      op:signature(util.wait_job(act.job, 0.002, 0.002))
    elseif kind == "sleep" then
      local delay = act["until"] - now()
      if delay > 0 then
        ngx_sleep(delay)
      end
    elseif kind == "publish" then
      local ok, err = publish(self, act)
      op:published(ok, err)
    elseif kind == "unpublish" then
      unpublish(self, act)
      op:unpublished()
    elseif kind == "done" then
      return act
    else
      return nil, act.err, act
    end
  end
end

local function decode_body(headers, body)
  local ct = headers and (headers["content-type"] or headers["Content-Type"]) or ""
  if find(ct, "json", 1, true) then
    local decoded = json.decode(body)
    if decoded ~= nil then
      return decoded
    end
  end
  return body
end

function _M.new(conf)
  conf = setmetatable(conf or {}, { __index = default_config })

  local self = setmetatable({
    conf = conf,
    directory = nil,
    account_pkey = nil,
    account_thumbprint = nil,
    account_kid = conf.account_kid,
    eab_required = false,
    eab_kid = conf.eab_kid,
    eab_hmac_key = nil,
    eab_handler = conf.eab_handler,
    challenge_handlers = {},
    persist_expected = {},
  }, mt)

  if conf.eab_hmac_key then
    local key = util.decode_base64url(conf.eab_hmac_key)
    if not key then
      return nil, "eab_hmac_key is not valid base64url"
    end
    self.eab_hmac_key = key
  end

  local core_client, err = core.client_new({
    directory_url = conf.api_uri,
    poll_timeout = conf.poll_timeout,
    bad_nonce_retries = conf.bad_nonce_retries,
    -- signatures come back as "sign" actions: RSA ones are made on a thread (see run)
    deferred_signing = true,
  })
  if not core_client then
    return nil, err
  end
  self.core = core_client
  if conf.account_kid then
    core_client:set_account_url(conf.account_kid)
  end

  self.transport = transport.new({
    ssl_verify = conf.ssl_verify,
    timeout = conf.timeout,
  })

  local storage_adapter = adapter_module(conf.storage_adapter)
  local storagemod = require(storage_adapter)
  local storage, serr = storagemod.new(conf.storage_config)
  if serr then
    return nil, serr
  end
  self.storage = storage

  if not conf.enabled_challenge_handlers or #conf.enabled_challenge_handlers == 0 then
    return nil, "at least one challenge handler is needed"
  end
  for _, name in ipairs(conf.enabled_challenge_handlers) do
    local handler = require("resty.acme.challenge." .. name)
    self.challenge_handlers[name] = handler.new(self.storage, conf.dns_persist)
    if (name == "dns-01" or name == "dns-persist-01") and handler.update_dns_provider_info then
      local ok, derr = handler.update_dns_provider_info(conf.dns_provider_accounts)
      if not ok then
        return nil, derr
      end
    end
  end

  if conf.account_key then
    local ok, kerr = self:set_account_key(conf.account_key)
    if not ok then
      return nil, kerr
    end
  end

  return self
end

-- set_account_key(pem): true, nil | false, err (callable as client.set_account_key(self, pem)).
function _M.set_account_key(self, account_key)
  local pkey, err = openssl.pkey.new(account_key)
  if not pkey then
    return false, "failed to load account key: " .. tostring(err)
  end
  local thumbprint, terr = pkey._key:thumbprint()
  if not thumbprint then
    return false, "failed to calculate thumbprint: " .. tostring(terr)
  end
  local ok, serr = self.core:set_account_key(pkey._key)
  if not ok then
    return false, serr
  end
  self.account_pkey = pkey
  self.account_thumbprint = thumbprint
  return true, nil
end

-- Fetches the directory unless it is known; returns err (and the error table) or nil.
local function ensure_directory(self)
  if not self.directory then
    return self:init()
  end
  return nil
end

-- Finds resty.acme.eab.<host of meta.website with dots as dashes>, as the original does.
local function eab_handler_for(website)
  local host = website and match(website, "^%a+://([^/:]+)")
  if not host then
    return nil
  end
  local name = "resty.acme.eab." .. gsub(lower(host), "%.", "-")
  local ok, mod = pcall(require, name)
  if ok and type(mod) == "table" and mod.handle then
    log(ngx.INFO, "external account binding handler ", name, " is used")
    return mod.handle
  end
  return nil
end

-- init(): fetches the directory. Returns err or nil; beyond the original, the failed
-- operation's error table after err (for resty.acme.backoff).
function _M:init()
  local op = self.core:op_directory()
  local _, err, act = run(self, op)
  if err then
    if act and act.category == "transport" then
      return "acme directory request failed: " .. err, act
    end
    return err, act
  end
  local directory = cjson.decode(self.core:directory() or "")
  if type(directory) ~= "table" then
    return "acme directory listing response malformed"
  end
  self.directory = directory

  local meta = directory.meta
  if type(meta) == "table" and meta.externalAccountRequired then
    self.eab_required = true
    if not self.eab_handler and not (self.eab_kid and self.eab_hmac_key) then
      self.eab_handler = eab_handler_for(meta.website)
      if not self.eab_handler then
        return "CA requires external account binding, but neither eab_kid/eab_hmac_key nor an " ..
          "eab_handler is configured, and no resty.acme.eab module matches " .. tostring(meta.website)
      end
    end
  end
  return nil
end

-- new_account(): kid, nil | nil, err, error table (of the failed request, when one failed)
function _M:new_account()
  if self.account_kid then
    return self.account_kid
  end
  if not self.account_pkey then
    return nil, "failed to create account: account key is not set"
  end
  local derr, dact = ensure_directory(self)
  if derr then
    return nil, "failed to create account: " .. derr, dact
  end

  local eab_kid, eab_key = self.eab_kid, self.eab_hmac_key
  if self.eab_required and not (eab_kid and eab_key) then
    if not self.eab_handler then
      return nil, "failed to create account: eab_handler undefined while EAB is required by CA"
    end
    local kid, key_b64, err = self.eab_handler(self.conf.account_email)
    if err or not kid or not key_b64 then
      return nil, "failed to create account: eab_handler returned an error: " .. tostring(err)
    end
    eab_key = util.decode_base64url(key_b64)
    if not eab_key then
      return nil, "failed to create account: eab_handler returned a key that is not base64url"
    end
    eab_kid = kid
  end

  local contact
  if self.conf.account_email then
    contact = { "mailto:" .. self.conf.account_email }
  end
  local op, operr = self.core:op_new_account({
    contact = contact,
    tos_agreed = true,
    eab_kid = eab_kid,
    eab_hmac_key = eab_key,
  })
  if not op then
    return nil, "failed to create account: " .. operr
  end
  local res, err, act = run(self, op)
  if not res then
    return nil, "failed to create account: " .. err, act
  end
  self.account_kid = res.url
  return res.url
end

-- new_nonce(): nonce | nil, err
function _M:new_nonce()
  local res, err = run(self, self.core:op_new_nonce())
  if not res then
    return nil, "failed to fetch new nonce: " .. err
  end
  return res.nonce
end

-- jws(url, payload, nonce): flattened JWS JSON text | nil, err
function _M:jws(url, payload, nonce)
  if not self.account_pkey then
    return nil, "account key does not specified"
  end
  if not url then
    return nil, "url is not defined"
  end
  if not nonce then
    local err
    nonce, err = self:new_nonce()
    if not nonce then
      return nil, "can't get new nonce from acme server: " .. err
    end
  end
  local text
  if payload ~= nil then
    text = json_encode(payload)
  end
  -- newAccount is signed with the key itself (§6.2); everything else with the account URL.
  local kid = self.account_kid
  if self.directory and url == self.directory.newAccount then
    kid = nil
  end
  return core.jws(self.account_pkey._key, url, nonce, kid, text)
end

-- post(url, payload, headers, nonce): body, headers, err. The body is decoded JSON when the
-- response is JSON; a problem document becomes err (its detail, or its type).
function _M:post(url, payload, _, nonce)
  local derr = ensure_directory(self)
  if derr then
    return nil, nil, derr
  end
  local text
  if payload ~= nil then
    text = json_encode(payload)
  end
  local res, err, act = run(self, self.core:op_post(url, text, nonce))
  if not res then
    if act and act.problem_type then
      return nil, nil, act.problem_detail or act.problem_type
    end
    return nil, nil, err
  end
  local body = decode_body(res.headers, res.body)
  if type(body) == "table" and res.headers["content-type"]
      and find(res.headers["content-type"], "problem", 1, true) then
    return nil, res.headers, body.detail or body.type
  end
  return body, res.headers, nil
end

-- new_order(name, ...): body, headers, err
function _M:new_order(...)
  local derr = ensure_directory(self)
  if derr then
    return nil, nil, derr
  end
  local identifiers = {}
  for i = 1, select("#", ...) do
    local value = select(i, ...)
    local norm, kind = core.identifier_parse(value)
    if not norm then
      return nil, nil, "failed to create new order: " .. kind
    end
    identifiers[i] = { type = kind, value = norm }
  end
  return self:post(self.directory.newOrder, { identifiers = identifiers })
end

-- finalize(finalize_url, order_url, csr_der): pem chain | nil, err. The core posts the CSR,
-- polls the order (Retry-After, up to the client's poll timeout) and downloads the chain, as
-- order_certificate does.
function _M:finalize(finalize_url, order_url, csr)
  local derr = ensure_directory(self)
  if derr then
    return nil, derr
  end
  local res, err = run(self, self.core:op_finalize(finalize_url, order_url, csr))
  if not res then
    return nil, "error checking finalize: " .. err
  end
  return res.pem
end

local function challenge_types(self)
  local types = {}
  for _, name in ipairs(self.conf.enabled_challenge_handlers) do
    types[#types + 1] = name
  end
  return types
end

-- dns-persist-01 is chosen for a name only when its record is in place (or will be
-- published, or cannot be checked), unless no other enabled type could serve the name: then
-- it is kept, and its handler's error names the record. Returns the list for the core's
-- persist_names, or nil (every name).
local function persist_names(self, names)
  local enabled = self.conf.enabled_challenge_handlers
  local has = {}
  for _, t in ipairs(enabled) do
    has[t] = true
  end
  if not has["dns-persist-01"] or #enabled < 2 then
    return nil
  end
  local conf = self.conf.dns_persist or {}
  local meta = self.directory and self.directory.meta
  local caa = type(meta) == "table" and meta.caaIdentities
  local issuer = conf.issuer or (type(caa) == "table" and caa[1])
  if not issuer or not self.account_kid then
    return nil
  end
  local persist = require("resty.acme.challenge.dns-persist-01")
  local out = {}
  for _, name in ipairs(names) do
    local wildcard = sub(name, 1, 2) == "*."
    local other = has["dns-01"] or (not wildcard and (has["http-01"] or has["tls-alpn-01"]))
    local ok, why = true, nil
    if other then
      ok, why = persist.eligible(conf, name, issuer, self.account_kid)
    end
    if ok then
      out[#out + 1] = name
    else
      log(ngx.INFO, "dns-persist-01 is not used for ", name, ": the record is not in place (",
        why, ")")
    end
  end
  return out
end

local function ensure_account(self)
  local derr, dact = ensure_directory(self)
  if derr then
    return nil, derr, dact
  end
  if not self.account_kid then
    local _, err, act = self:new_account()
    if err then
      return nil, err, act
    end
  end
  return true
end

-- renewal_info(cert_pem): { start =, ["end"] =, explanation_url =, retry_after = } | nil, err
-- RFC 9773 §4.2: the CA's suggested renewal window for a certificate it issued. Returns
-- nil, nil when the CA does not offer renewal information.
function _M:renewal_info(cert_pem)
  local derr = ensure_directory(self)
  if derr then
    return nil, derr
  end
  if not self.directory.renewalInfo then
    return nil, nil
  end
  local cert_id, err = core.ari_cert_id(cert_pem or "")
  if not cert_id then
    return nil, "cannot compute the ARI certificate id: " .. err
  end
  local res, rerr = run(self, self.core:op_renewal_info(cert_id))
  if not res then
    return nil, "renewal information: " .. rerr
  end
  res.cert_id = cert_id
  return res
end

-- Whether a failed order was refused for its `replaces` field: alreadyReplaced (409), or the
-- 403 unauthorized / 400 malformed a CA answers when the certificate is another account's or
-- another CA's (an account or CA change since it was issued).
local function replacement_refused(act)
  if type(act) ~= "table" or act.category ~= "problem" then
    return false
  end
  local ptype = act.problem_type or ""
  if find(ptype, "alreadyReplaced", 1, true) then
    return true
  end
  return (act.status == 403 and find(ptype, "unauthorized", 1, true) ~= nil)
    or (act.status == 400 and find(ptype, "malformed", 1, true) ~= nil)
end

-- order_certificate(domain_key_pem, name, ..., opts?): pem chain | nil, err. A trailing table
-- holds options beyond the original: `replaces` (RFC 9773 §5, the ARI id of the certificate
-- this one replaces).
function _M:order_certificate(domain_key, ...)
  local names = { ... }
  local opts = {}
  if type(names[#names]) == "table" then
    opts = names[#names]
    names[#names] = nil
  end
  if #names == 0 then
    return nil, "at least one domain name is needed"
  end
  local key, err = util.core_key(domain_key)
  if not key then
    return nil, "failed to load domain pkey: " .. tostring(err)
  end
  local csr, cerr = util.csr_der(key, names)
  if not csr then
    return nil, "failed to create csr: " .. cerr
  end
  local ok, aerr, aact = ensure_account(self)
  if not ok then
    return nil, aerr, aact
  end
  local profile = opts.profile or self.conf.profile
  if profile then
    local pok, perr = self.core:check_profile(profile)
    if not pok then
      return nil, perr
    end
  end
  local pnames = persist_names(self, names)
  local op, operr = self.core:op_order({
    identifiers = names,
    challenge_types = challenge_types(self),
    csr = csr,
    preferred_chain = self.conf.preferred_chain,
    profile = profile,
    replaces = opts.replaces,
    persist_names = pnames,
  })
  if not op then
    return nil, operr
  end
  self.persist_expected = {}
  local res, rerr, act = run(self, op)
  if not res and opts.replaces and replacement_refused(act) then
    -- RFC 9773 §5: the CA would not take this order as the replacement (already replaced,
    -- another account, another CA): the certificate is still needed, so order it once more
    -- as a plain order.
    log(ngx.WARN, "the CA refused the order as a replacement of ", opts.replaces, " (",
      act.status or "?", " ", act.problem_type or "?", ": ", act.problem_detail or rerr,
      "), ordering without replaces")
    op, operr = self.core:op_order({
      identifiers = names,
      challenge_types = challenge_types(self),
      csr = csr,
      preferred_chain = self.conf.preferred_chain,
      profile = profile,
      persist_names = pnames,
    })
    if not op then
      return nil, operr
    end
    res, rerr, act = run(self, op)
  end
  if not res then
    -- the CA refused it (the handler's own errors already name the record)
    local by_ca = not (type(act) == "table" and act.category == "publish")
    if by_ca and #self.persist_expected > 0 and find(rerr, "dns-persist-01", 1, true) then
      local want = {}
      for _, rec in ipairs(self.persist_expected) do
        want[#want + 1] = rec.name .. ' TXT "' .. rec.value .. '"'
      end
      rerr = rerr .. " (the CA checks the dns-persist-01 record: expected " .. concat(want, ", ") .. ")"
    end
    -- beyond the original: the failed operation's error table (category, problem_type,
    -- status, retry_after) for resty.acme.backoff
    return nil, rerr, act
  end
  return res.pem
end

-- dns_persist_record(name): { name =, value = } | nil, err. The TXT record that authorizes
-- this account at this CA for `name` through dns-persist-01 (the issuer domain name is
-- dns_persist.issuer or the directory's first meta.caaIdentities entry).
function _M:dns_persist_record(name)
  local ok, err = ensure_account(self)
  if not ok then
    return nil, err
  end
  return persist_record(self, name)
end

-- revoke_certificate(cert_pem, opts?): true | nil, err. opts.reason (RFC 5280 code);
-- opts.key: the certificate's private key PEM, to revoke without the account (§7.6).
function _M:revoke_certificate(cert_pem, opts)
  opts = opts or {}
  local der, err = core.cert_leaf_der(cert_pem or "")
  if not der then
    return nil, "failed to revoke certificate: " .. err
  end
  local cert_key
  if opts.key then
    cert_key, err = util.core_key(opts.key)
    if not cert_key then
      return nil, "failed to revoke certificate: " .. tostring(err)
    end
  else
    local ok, aerr = ensure_account(self)
    if not ok then
      return nil, "failed to revoke certificate: " .. aerr
    end
  end
  local op, operr = self.core:op_revoke(der, opts.reason, cert_key)
  if not op then
    return nil, "failed to revoke certificate: " .. operr
  end
  local res, rerr = run(self, op)
  if not res then
    return nil, "failed to revoke certificate: " .. rerr
  end
  return true
end

-- rollover_account_key(new_key_pem): true | nil, err (§7.3.5). On success the client signs
-- with the new key.
function _M:rollover_account_key(new_key)
  local pkey, err = openssl.pkey.new(new_key)
  if not pkey then
    return nil, "failed to load new account key: " .. tostring(err)
  end
  local ok, aerr = ensure_account(self)
  if not ok then
    return nil, "failed to roll over account key: " .. aerr
  end
  local op, operr = self.core:op_key_change(pkey._key)
  if not op then
    return nil, "failed to roll over account key: " .. operr
  end
  local res, rerr = run(self, op)
  if not res then
    return nil, "failed to roll over account key: " .. rerr
  end
  self.account_pkey = pkey
  self.account_thumbprint = pkey._key:thumbprint()
  return true
end

-- deactivate_account(): true | nil, err (§7.3.6)
function _M:deactivate_account()
  local ok, aerr = ensure_account(self)
  if not ok then
    return nil, "failed to deactivate account: " .. aerr
  end
  local res, err = run(self, self.core:op_deactivate())
  if not res then
    return nil, "failed to deactivate account: " .. err
  end
  self.account_kid = nil
  self.core:set_account_url(nil)
  return true
end

local function serve_challenge(self, typ)
  local handler = self.challenge_handlers[typ]
  if not handler then
    log(ngx.ERR, typ, " handler is not enabled")
    return ngx_exit(500)
  end
  return handler:serve_challenge()
end

function _M:serve_http_challenge()
  return serve_challenge(self, "http-01")
end

function _M:serve_tls_alpn_challenge()
  return serve_challenge(self, "tls-alpn-01")
end

return _M
