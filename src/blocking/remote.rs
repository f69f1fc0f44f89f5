//! The storage adapters of the Lua library outside nginx, for the CLI: the file store, Redis
//! (`resty.acme.storage.redis`: `<namespace><key>` as a Redis string, expiry with PX) and etcd
//! (`resty.acme.storage.etcd`: `<key_prefix>/<key>` through the v3 HTTP/JSON gateway, the
//! value as the JSON text of the Lua string) and Consul (`resty.acme.storage.consul`:
//! `<kv_path>/<key with "/" as "-">`, the raw value, expiry as `flags` = Unix ms). A store is
//! named by `--store`: a directory, or `redis://[user:password@]host:port[/db][?namespace=NS]`,
//! `etcd://host:port[?prefix=P]`, `consul://host:port[/kv_path]` (default `/acme`; the token
//! from `$CONSUL_HTTP_TOKEN`), or `vault://host:port[/mount[/path]]` (a KV v2 mount,
//! `resty.acme.storage.vault`'s layout; the token from `$VAULT_TOKEN`, `$VAULT_NAMESPACE`).
use super::store::{CertEntry, FileStore};
use super::BlockingError;
use crate::crypto::tls_client;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn store_err(m: impl Into<String>) -> BlockingError {
    BlockingError::Store(m.into())
}

/// Percent-decoding of a URL component (user, password, namespace).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(v) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `scheme://[userinfo@]hostport[/path][?query]` -> (userinfo, hostport, path, query pairs).
type UrlParts = (Option<String>, String, String, Vec<(String, String)>);

fn split_url(rest: &str) -> UrlParts {
    let (before_q, query) = match rest.split_once('?') {
        Some((a, q)) => (a, q),
        None => (rest, ""),
    };
    let (authority, path) = match before_q.find('/') {
        Some(i) => (&before_q[..i], &before_q[i + 1..]),
        None => (before_q, ""),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_string()), h.to_string()),
        None => (None, authority.to_string()),
    };
    let pairs = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (unescape(k), unescape(v)),
            None => (unescape(p), String::new()),
        })
        .collect();
    (userinfo, hostport, path.to_string(), pairs)
}

/// The agent of an HTTP store: statuses are answers, not errors; 30 s for a whole request.
fn http_agent(non_standard_methods: bool) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .allow_non_standard_methods(non_standard_methods)
        .build();
    ureq::Agent::new_with_config(config)
}

/// One request of an HTTP store -> (status, body text); `what` begins every error message.
fn http_send(
    agent: &ureq::Agent,
    what: &str,
    b: ureq::http::request::Builder,
    payload: String,
) -> Result<(u16, String), BlockingError> {
    let req = b
        .body(payload)
        .map_err(|e| store_err(format!("{what}: {e}")))?;
    let mut resp = agent
        .run(req)
        .map_err(|e| store_err(format!("{what}: {e}")))?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(256 * 1024 * 1024)
        .read_to_string()
        .map_err(|e| store_err(format!("{what}: {e}")))?;
    Ok((status, text))
}

/// The `host:port[/kv_path]` of a Consul or Vault url -> (host:port, kv_path): no userinfo
/// or options (`hint` says where the token goes), `port` when none is given, `acme` when no
/// path is.
fn kv_url(rest: &str, hint: &str, port: u16) -> Result<(String, String), BlockingError> {
    let (userinfo, hostport, path, query) = split_url(rest);
    if userinfo.is_some() || !query.is_empty() {
        return Err(store_err(hint.to_string()));
    }
    let hostport = if hostport.contains(':') {
        hostport
    } else {
        format!("{hostport}:{port}")
    };
    let kv_path = if path.is_empty() {
        "acme".to_string()
    } else {
        path.trim_end_matches('/').to_string()
    };
    Ok((hostport, kv_path))
}

/// A key as Consul and Vault name it: "/" as "-", percent-escaped.
fn kv_name(key: &str) -> String {
    escape(&key.replace('/', "-"))
}

/// A base64 value of `what` (consul, vault) as UTF-8 text.
fn b64_text(what: &str, key: &str, b64: &str) -> Result<Option<String>, BlockingError> {
    let raw = B64
        .decode(b64)
        .map_err(|_| store_err(format!("{what} value of {key:?} is not base64")))?;
    String::from_utf8(raw)
        .map(Some)
        .map_err(|_| store_err(format!("{what} value of {key:?} is not UTF-8 text")))
}

/// A connection a Redis store talks RESP2 over: TCP, TLS over TCP, or a unix socket.
trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// How a Redis store reaches its server (`redis://`, `rediss://`, `redis+unix://`).
#[derive(Clone, Copy, PartialEq)]
enum RedisVia {
    Tcp,
    Tls,
    Unix,
}

/// One Redis server (RESP2 over TCP, TLS or a unix socket).
pub struct RedisStore {
    conn: BufReader<Box<dyn Conn>>,
    namespace: String,
    url: String,
}

enum Reply {
    /// `+OK` and integer replies: only their arrival matters here.
    Status,
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

impl RedisStore {
    fn open(rest: &str, via: RedisVia) -> Result<RedisStore, BlockingError> {
        let (userinfo, hostport, mut path, query) = split_url(rest);
        // redis+unix:///path/to/redis.sock: the socket is the url's path, the database an option
        let sock = format!("/{path}");
        if via == RedisVia::Unix {
            path = String::new();
        }
        let mut namespace = String::new();
        let mut server_name = None;
        let mut ca_file = None;
        for (k, v) in query {
            match k.as_str() {
                "namespace" => namespace = v,
                "db" if via == RedisVia::Unix => path = v,
                "server_name" if via == RedisVia::Tls => server_name = Some(v),
                "ca" if via == RedisVia::Tls => ca_file = Some(v),
                _ => return Err(store_err(format!("redis store: unknown option {k:?}"))),
            }
        }
        let t = Some(Duration::from_secs(10));
        let (url, conn): (String, Box<dyn Conn>) = if via == RedisVia::Unix {
            if !hostport.is_empty() || sock == "/" {
                return Err(store_err(format!(
                    "redis store: redis+unix://{rest}: give the socket as redis+unix:///path/to/redis.sock"
                )));
            }
            let stream = UnixStream::connect(&sock)
                .map_err(|e| store_err(format!("cannot connect to redis socket {sock}: {e}")))?;
            stream
                .set_read_timeout(t)
                .and_then(|_| stream.set_write_timeout(t))
                .map_err(|e| store_err(format!("redis {sock}: {e}")))?;
            (format!("redis+unix://{sock}"), Box::new(stream))
        } else {
            let hostport = if hostport.contains(':') {
                hostport
            } else {
                format!("{hostport}:6379")
            };
            let stream = TcpStream::connect(&hostport)
                .map_err(|e| store_err(format!("cannot connect to redis {hostport}: {e}")))?;
            stream
                .set_read_timeout(t)
                .and_then(|_| stream.set_write_timeout(t))
                .map_err(|e| store_err(format!("redis {hostport}: {e}")))?;
            if via == RedisVia::Tls {
                // the peer must hold a certificate for server_name (by default the host)
                let host = hostport
                    .rsplit_once(':')
                    .map_or(hostport.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = server_name.as_deref().unwrap_or(host);
                let tls = tls_client::connect(stream, name, ca_file.as_deref())
                    .map_err(|e| store_err(format!("redis {hostport}: {e}")))?;
                (format!("rediss://{hostport}/{path}"), Box::new(tls))
            } else {
                (format!("redis://{hostport}/{path}"), Box::new(stream))
            }
        };
        let mut s = RedisStore {
            conn: BufReader::new(conn),
            namespace,
            url,
        };
        if let Some(u) = userinfo {
            let (user, pass) = match u.split_once(':') {
                Some((user, pass)) => (unescape(user), unescape(pass)),
                None => (String::new(), unescape(&u)),
            };
            if user.is_empty() {
                s.command(&[b"AUTH", pass.as_bytes()])?;
            } else {
                s.command(&[b"AUTH", user.as_bytes(), pass.as_bytes()])?;
            }
        }
        if !path.is_empty() {
            let db: u32 = path.parse().map_err(|_| {
                store_err(format!("redis store: database {path:?} is not a number"))
            })?;
            s.command(&[b"SELECT", db.to_string().as_bytes()])?;
        }
        Ok(s)
    }

    fn read_reply(&mut self) -> Result<Reply, BlockingError> {
        let mut line = Vec::new();
        self.conn
            .read_until(b'\n', &mut line)
            .map_err(|e| store_err(format!("redis {}: {e}", self.url)))?;
        if line.len() < 3 || !line.ends_with(b"\r\n") {
            return Err(store_err(format!("redis {}: connection closed", self.url)));
        }
        let text = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
        let num = || {
            text.parse::<i64>()
                .map_err(|_| store_err(format!("redis: malformed reply {text:?}")))
        };
        match line[0] {
            b'+' => Ok(Reply::Status),
            b'-' => Err(store_err(format!("redis {}: {text}", self.url))),
            b':' => num().map(|_| Reply::Status),
            b'$' => {
                let n = num()?;
                if n < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let mut buf = vec![0u8; n as usize + 2];
                self.conn
                    .read_exact(&mut buf)
                    .map_err(|e| store_err(format!("redis {}: {e}", self.url)))?;
                buf.truncate(n as usize);
                Ok(Reply::Bulk(Some(buf)))
            }
            b'*' => {
                let n = num()?;
                let mut items = Vec::new();
                for _ in 0..n.max(0) {
                    items.push(self.read_reply()?);
                }
                Ok(Reply::Array(items))
            }
            _ => Err(store_err(format!("redis: malformed reply {text:?}"))),
        }
    }

    fn command(&mut self, args: &[&[u8]]) -> Result<Reply, BlockingError> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.conn
            .get_mut()
            .write_all(&out)
            .map_err(|e| store_err(format!("redis {}: {e}", self.url)))?;
        self.read_reply()
    }

    fn get(&mut self, key: &str) -> Result<Option<String>, BlockingError> {
        let k = format!("{}{key}", self.namespace);
        match self.command(&[b"GET", k.as_bytes()])? {
            Reply::Bulk(None) => Ok(None),
            Reply::Bulk(Some(v)) => String::from_utf8(v)
                .map(Some)
                .map_err(|_| store_err(format!("redis value of {key:?} is not UTF-8 text"))),
            _ => Err(store_err("redis: unexpected reply to GET")),
        }
    }

    fn set(&mut self, key: &str, value: &str, ttl: Option<f64>) -> Result<(), BlockingError> {
        let k = format!("{}{key}", self.namespace);
        match ttl {
            Some(t) => {
                let ms = ((t * 1000.0) as i64).max(1).to_string();
                self.command(&[b"SET", k.as_bytes(), value.as_bytes(), b"PX", ms.as_bytes()])?
            }
            None => self.command(&[b"SET", k.as_bytes(), value.as_bytes()])?,
        };
        Ok(())
    }

    fn delete(&mut self, key: &str) -> Result<(), BlockingError> {
        let k = format!("{}{key}", self.namespace);
        self.command(&[b"DEL", k.as_bytes()])?;
        Ok(())
    }

    fn list(&mut self, prefix: &str) -> Result<Vec<String>, BlockingError> {
        let full = format!("{}{prefix}", self.namespace);
        let mut pattern = String::new();
        for c in full.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        let mut cursor = "0".to_string();
        let mut out = Vec::new();
        loop {
            let reply = self.command(&[
                b"SCAN",
                cursor.as_bytes(),
                b"MATCH",
                pattern.as_bytes(),
                b"COUNT",
                b"1000",
            ])?;
            let Reply::Array(items) = reply else {
                return Err(store_err("redis: unexpected reply to SCAN"));
            };
            let mut it = items.into_iter();
            cursor = match it.next() {
                Some(Reply::Bulk(Some(c))) => String::from_utf8_lossy(&c).into_owned(),
                _ => return Err(store_err("redis: unexpected reply to SCAN")),
            };
            if let Some(Reply::Array(keys)) = it.next() {
                for k in keys {
                    if let Reply::Bulk(Some(k)) = k {
                        let k = String::from_utf8_lossy(&k).into_owned();
                        if let Some(logical) = k.strip_prefix(&self.namespace) {
                            out.push(logical.to_string());
                        }
                    }
                }
            }
            if cursor == "0" {
                break;
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

/// One etcd server through its v3 HTTP/JSON gateway (plain HTTP).
pub struct EtcdStore {
    agent: ureq::Agent,
    base: String,
    prefix: String,
}

impl EtcdStore {
    fn open(rest: &str) -> Result<EtcdStore, BlockingError> {
        let (userinfo, hostport, _path, query) = split_url(rest);
        if userinfo.is_some() {
            return Err(store_err("etcd store: credentials are not supported"));
        }
        let mut prefix = String::new();
        for (k, v) in query {
            match k.as_str() {
                "prefix" | "key_prefix" => prefix = v,
                _ => return Err(store_err(format!("etcd store: unknown option {k:?}"))),
            }
        }
        Ok(EtcdStore {
            agent: http_agent(false),
            base: format!("http://{hostport}/v3/"),
            prefix,
        })
    }

    fn call(
        &self,
        path: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, BlockingError> {
        let url = format!("{}{path}", self.base);
        let b = ureq::http::Request::builder()
            .method("POST")
            .uri(url.as_str())
            .header("Content-Type", "application/json");
        let (status, text) = http_send(&self.agent, &format!("etcd {url}"), b, body.to_string())?;
        if status != 200 {
            return Err(store_err(format!(
                "etcd {url}: status {status}: {}",
                text.chars().take(200).collect::<String>()
            )));
        }
        serde_json::from_str(&text).map_err(|e| store_err(format!("etcd {url}: {e}")))
    }

    fn full(&self, key: &str) -> String {
        format!("{}/{key}", self.prefix)
    }

    fn range_end(key: &[u8]) -> Vec<u8> {
        let mut k = key.to_vec();
        while let Some(last) = k.pop() {
            if last < 255 {
                k.push(last + 1);
                return k;
            }
        }
        vec![0]
    }

    /// The Lua adapter stores the JSON text of the value; a string is a quoted JSON string.
    fn decode_value(raw: &[u8]) -> Option<String> {
        let text = std::str::from_utf8(raw).ok()?;
        match serde_json::from_str::<serde_json::Value>(text).ok()? {
            serde_json::Value::String(s) => Some(s),
            other => Some(other.to_string()),
        }
    }

    fn get(&self, key: &str) -> Result<Option<String>, BlockingError> {
        let res = self.call(
            "kv/range",
            serde_json::json!({ "key": B64.encode(self.full(key)) }),
        )?;
        let Some(kv) = res["kvs"].as_array().and_then(|a| a.first()) else {
            return Ok(None);
        };
        let raw = B64
            .decode(kv["value"].as_str().unwrap_or(""))
            .map_err(|_| store_err(format!("etcd value of {key:?} is not base64")))?;
        Self::decode_value(&raw)
            .map(Some)
            .ok_or_else(|| store_err(format!("etcd value of {key:?} is not JSON text")))
    }

    fn set(&self, key: &str, value: &str, ttl: Option<f64>) -> Result<(), BlockingError> {
        let mut put = serde_json::json!({
            "key": B64.encode(self.full(key)),
            "value": B64.encode(serde_json::Value::String(value.to_string()).to_string()),
        });
        if let Some(t) = ttl {
            let lease = self.call(
                "lease/grant",
                serde_json::json!({ "TTL": (t.ceil() as i64).max(1) }),
            )?;
            put["lease"] = lease["ID"].clone();
        }
        self.call("kv/put", put)?;
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), BlockingError> {
        self.call(
            "kv/deleterange",
            serde_json::json!({ "key": B64.encode(self.full(key)) }),
        )?;
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, BlockingError> {
        let start = self.full(prefix);
        let res = self.call(
            "kv/range",
            serde_json::json!({
                "key": B64.encode(&start),
                "range_end": B64.encode(Self::range_end(start.as_bytes())),
                "keys_only": true,
            }),
        )?;
        let strip = self.prefix.len() + 1;
        let mut out = Vec::new();
        for kv in res["kvs"].as_array().into_iter().flatten() {
            if let Ok(k) = B64.decode(kv["key"].as_str().unwrap_or("")) {
                if k.len() >= strip {
                    out.push(String::from_utf8_lossy(&k[strip..]).into_owned());
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Percent-encoding as the Lua adapters' `http_api.escape`: all but `[A-Za-z0-9-._~:]`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Consul's KV store over its HTTP API (plain HTTP).
pub struct ConsulStore {
    agent: ureq::Agent,
    base: String,
    kv_prefix: String,
    token: Option<String>,
}

impl ConsulStore {
    fn open(rest: &str) -> Result<ConsulStore, BlockingError> {
        let (hostport, kv_path) = kv_url(
            rest,
            "consul store: give the token in $CONSUL_HTTP_TOKEN, no options in the url",
            8500,
        )?;
        let escaped: Vec<String> = kv_path.split('/').map(escape).collect();
        Ok(ConsulStore {
            agent: http_agent(false),
            base: format!("http://{hostport}/v1/kv/{}/", escaped.join("/")),
            kv_prefix: format!("{kv_path}/"),
            token: std::env::var("CONSUL_HTTP_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        })
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<(u16, String), BlockingError> {
        let url = format!("{}{path}", self.base);
        let mut b = ureq::http::Request::builder()
            .method(method)
            .uri(url.as_str());
        if let Some(t) = &self.token {
            b = b.header("X-Consul-Token", t.as_str());
        }
        let (status, text) = http_send(
            &self.agent,
            &format!("consul {method} {url}"),
            b,
            body.unwrap_or("").to_string(),
        )?;
        if status != 200 && status != 404 {
            return Err(store_err(format!(
                "consul {method} {url}: status {status}: {}",
                text.chars().take(200).collect::<String>()
            )));
        }
        Ok((status, text))
    }

    fn get(&self, key: &str) -> Result<Option<String>, BlockingError> {
        let (status, text) = self.request("GET", &kv_name(key), None)?;
        if status == 404 {
            return Ok(None);
        }
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|_| store_err("consul: unable to decode response body"))?;
        let entry = &v[0];
        let flags = entry["Flags"].as_f64().unwrap_or(0.0);
        if flags > 0.0 && flags <= super::unix_now() * 1000.0 {
            return Ok(None);
        }
        let Some(b64) = entry["Value"].as_str() else {
            return Ok(None);
        };
        b64_text("consul", key, b64)
    }

    fn set(&self, key: &str, value: &str, ttl: Option<f64>) -> Result<(), BlockingError> {
        let mut path = kv_name(key);
        if let Some(t) = ttl {
            path.push_str(&format!(
                "?flags={:.0}",
                ((super::unix_now() + t) * 1000.0).floor()
            ));
        }
        let (status, text) = self.request("PUT", &path, Some(value))?;
        if status != 200 || text.trim() != "true" {
            return Err(store_err(format!("consul: PUT of {key:?} was refused")));
        }
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), BlockingError> {
        self.request("DELETE", &kv_name(key), None)?;
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, BlockingError> {
        let (status, text) = self.request("GET", &format!("{}?keys", kv_name(prefix)), None)?;
        if status == 404 {
            return Ok(Vec::new());
        }
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|_| store_err("consul: unable to decode the key list"))?;
        let mut out = Vec::new();
        for k in v.as_array().into_iter().flatten() {
            if let Some(rest) = k.as_str().and_then(|k| k.strip_prefix(&self.kv_prefix)) {
                // only keys directly under kv_path are the library's
                if !rest.contains('/') {
                    out.push(rest.to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// A Vault KV mount, version 2 or 1 as the mount says (plain HTTP, token auth), in the layout
/// of resty.acme.storage.vault: on v1 the expiry is the secret's `expires_at` (Unix ms).
pub struct VaultStore {
    agent: ureq::Agent,
    origin: String,
    data_path: String,
    metadata_path: String,
    token: Option<String>,
    namespace: Option<String>,
    v1: bool,
}

impl VaultStore {
    fn open(rest: &str) -> Result<VaultStore, BlockingError> {
        let (hostport, kv_path) = kv_url(
            rest,
            "vault store: give the token in $VAULT_TOKEN, no options in the url",
            8200,
        )?;
        let (mount, sub) = match kv_path.split_once('/') {
            Some((m, s)) => (m.to_string(), format!("/{s}")),
            None => (kv_path.clone(), String::new()),
        };
        let sub_e: String = sub.split('/').map(escape).collect::<Vec<_>>().join("/");
        let env = |k: &str| std::env::var(k).ok().filter(|t| !t.is_empty());
        let mount_e = escape(&mount);
        let mut v = VaultStore {
            agent: http_agent(true),
            origin: format!("http://{hostport}"),
            data_path: format!("/v1/{mount_e}/data{sub_e}/"),
            metadata_path: format!("/v1/{mount_e}/metadata{sub_e}/"),
            token: env("VAULT_TOKEN"),
            namespace: env("VAULT_NAMESPACE"),
            v1: false,
        };
        if v.kv_version(&mount)? == 1 {
            v.v1 = true;
            v.data_path = format!("/v1/{mount_e}{sub_e}/");
            v.metadata_path = v.data_path.clone();
        }
        Ok(v)
    }

    /// The mount's KV version, as the Lua adapter asks it: a v1 mount written in the v2 layout
    /// would take every write and never expire or delete anything.
    fn kv_version(&self, mount: &str) -> Result<u8, BlockingError> {
        let path = format!("/v1/sys/internal/ui/mounts/{}", escape(mount));
        let (status, v) = self.request("GET", &path, None)?;
        if status != 200 {
            return Err(store_err(format!(
                "vault mount check {}{path}: status {status} (no mount {mount}, or the token may not use it)",
                self.origin
            )));
        }
        let data = &v["data"];
        let typ = data["type"].as_str().unwrap_or("");
        if typ != "kv" && typ != "generic" {
            return Err(store_err(format!(
                "vault: mount {mount} is a {typ:?} secrets engine, not kv"
            )));
        }
        match data["options"]["version"].as_str().unwrap_or("1") {
            "1" => Ok(1),
            "2" => Ok(2),
            other => Err(store_err(format!(
                "vault: mount {mount} has an unknown KV version {other:?}"
            ))),
        }
    }

    fn now_ms() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), BlockingError> {
        let url = format!("{}{path}", self.origin);
        let mut b = ureq::http::Request::builder()
            .method(method)
            .uri(url.as_str());
        if let Some(t) = &self.token {
            b = b.header("X-Vault-Token", t.as_str());
        }
        if let Some(n) = &self.namespace {
            b = b.header("X-Vault-Namespace", n.as_str());
        }
        let payload = body.map(|v| v.to_string()).unwrap_or_default();
        if !payload.is_empty() {
            b = b.header("Content-Type", "application/json");
        }
        let (status, text) = http_send(&self.agent, &format!("vault {method} {url}"), b, payload)?;
        let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        if status != 404 && !(200..300).contains(&status) {
            return Err(store_err(format!(
                "vault {method} {url}: status {status}: {}",
                v["errors"]
            )));
        }
        Ok((status, v))
    }

    fn get(&self, key: &str) -> Result<Option<String>, BlockingError> {
        let (status, v) =
            self.request("GET", &format!("{}{}", self.data_path, kv_name(key)), None)?;
        if status == 404 {
            return Ok(None);
        }
        let data = if self.v1 {
            &v["data"]
        } else {
            &v["data"]["data"]
        };
        let expires_at = match &data["expires_at"] {
            serde_json::Value::String(t) => t.parse::<f64>().ok(),
            other => other.as_f64(),
        };
        if self.v1 && expires_at.is_some_and(|at| at <= Self::now_ms() as f64) {
            self.delete(key)?;
            return Ok(None);
        }
        let value = match &data["value"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Ok(None),
        };
        if data["encoding"].as_str() == Some("base64") {
            return b64_text("vault", key, &value);
        }
        Ok(Some(value))
    }

    fn set(&self, key: &str, value: &str, ttl: Option<f64>) -> Result<(), BlockingError> {
        let name = kv_name(key);
        if self.v1 {
            let mut data =
                serde_json::json!({ "value": value, "note": "managed by lua-resty-acme" });
            if let Some(t) = ttl {
                data["expires_at"] = (Self::now_ms() + (t.max(1.0) * 1000.0).floor() as i64).into();
            }
            self.request("POST", &format!("{}{name}", self.data_path), Some(data))?;
            return Ok(());
        }
        // a write without TTL clears a TTL an earlier write left in the metadata
        let dva = match ttl {
            Some(t) => format!("{}ms", ((t.max(1.0)) * 1000.0).floor() as i64),
            None => "0s".to_string(),
        };
        self.request(
            "POST",
            &format!("{}{name}", self.metadata_path),
            Some(serde_json::json!({ "delete_version_after": dva })),
        )?;
        self.request(
            "POST",
            &format!("{}{name}", self.data_path),
            Some(serde_json::json!({
                "data": { "value": value, "note": "managed by lua-resty-acme" }
            })),
        )?;
        Ok(())
    }

    fn delete(&self, key: &str) -> Result<(), BlockingError> {
        self.request(
            "DELETE",
            &format!("{}{}", self.metadata_path, kv_name(key)),
            None,
        )?;
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, BlockingError> {
        let prefix = prefix.replace('/', "-");
        let (status, v) = self.request("LIST", &self.metadata_path, None)?;
        if status == 404 {
            return Ok(Vec::new());
        }
        let mut out: Vec<String> = v["data"]["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k.as_str())
            .filter(|k| !k.ends_with('/') && k.starts_with(&prefix))
            .map(str::to_string)
            .collect();
        out.sort();
        Ok(out)
    }
}

/// A store of any adapter the CLI reads and writes.
pub enum AnyStore {
    File(FileStore),
    Redis(Box<RedisStore>),
    Etcd(EtcdStore),
    Consul(ConsulStore),
    Vault(VaultStore),
}

impl AnyStore {
    /// Opens the store `spec` names (see the module documentation). `create`: a file store's
    /// directory is created when missing.
    pub fn open(spec: &str, create: bool) -> Result<AnyStore, BlockingError> {
        for (scheme, via) in [
            ("redis://", RedisVia::Tcp),
            ("rediss://", RedisVia::Tls),
            ("redis+unix://", RedisVia::Unix),
        ] {
            if let Some(rest) = spec.strip_prefix(scheme) {
                return Ok(AnyStore::Redis(Box::new(RedisStore::open(rest, via)?)));
            }
        }
        if let Some(rest) = spec.strip_prefix("etcd://") {
            return Ok(AnyStore::Etcd(EtcdStore::open(rest)?));
        }
        if let Some(rest) = spec.strip_prefix("consul://") {
            return Ok(AnyStore::Consul(ConsulStore::open(rest)?));
        }
        if let Some(rest) = spec.strip_prefix("vault://") {
            return Ok(AnyStore::Vault(VaultStore::open(rest)?));
        }
        if let Some((scheme, _)) = spec.split_once("://") {
            if scheme != "file" {
                return Err(store_err(format!(
                    "store {spec}: {scheme} is not supported here (a directory, redis://, rediss://, redis+unix://, etcd://, consul:// or vault://)"
                )));
            }
        }
        let dir = spec.strip_prefix("file://").unwrap_or(spec);
        Ok(AnyStore::File(if create {
            FileStore::create(dir)?
        } else {
            FileStore::open(dir)?
        }))
    }

    /// What to call the store in messages.
    pub fn describe(&self) -> String {
        match self {
            AnyStore::File(f) => f.dir().display().to_string(),
            AnyStore::Redis(r) => r.url.clone(),
            AnyStore::Etcd(e) => format!("{}kv (prefix {:?})", e.base, e.prefix),
            AnyStore::Consul(c) => c.base.clone(),
            AnyStore::Vault(v) => format!("{}{}", v.origin, v.data_path),
        }
    }

    pub fn get(&mut self, key: &str) -> Result<Option<String>, BlockingError> {
        match self {
            AnyStore::File(f) => f.get(key),
            AnyStore::Redis(r) => r.get(key),
            AnyStore::Etcd(e) => e.get(key),
            AnyStore::Consul(c) => c.get(key),
            AnyStore::Vault(v) => v.get(key),
        }
    }

    pub fn set(&mut self, key: &str, value: &str, ttl: Option<f64>) -> Result<(), BlockingError> {
        match self {
            AnyStore::File(f) => f.set(key, value, ttl),
            AnyStore::Redis(r) => r.set(key, value, ttl),
            AnyStore::Etcd(e) => e.set(key, value, ttl),
            AnyStore::Consul(c) => c.set(key, value, ttl),
            AnyStore::Vault(v) => v.set(key, value, ttl),
        }
    }

    pub fn delete(&mut self, key: &str) -> Result<(), BlockingError> {
        match self {
            AnyStore::File(f) => f.delete(key),
            AnyStore::Redis(r) => r.delete(key),
            AnyStore::Etcd(e) => e.delete(key),
            AnyStore::Consul(c) => c.delete(key),
            AnyStore::Vault(v) => v.delete(key),
        }
    }

    /// Logical keys starting with `prefix`, sorted.
    pub fn list(&mut self, prefix: &str) -> Result<Vec<String>, BlockingError> {
        match self {
            AnyStore::File(f) => f.list(prefix),
            AnyStore::Redis(r) => r.list(prefix),
            AnyStore::Etcd(e) => e.list(prefix),
            AnyStore::Consul(c) => c.list(prefix),
            AnyStore::Vault(v) => v.list(prefix),
        }
    }

    /// The certificate entry `domain:<type>:<name>`.
    pub fn get_cert(
        &mut self,
        name: &str,
        key_type: &str,
    ) -> Result<Option<CertEntry>, BlockingError> {
        let key = CertEntry::store_key(key_type, name);
        match self.get(&key)? {
            None => Ok(None),
            Some(v) => CertEntry::from_json(&v)
                .map(Some)
                .map_err(|m| store_err(format!("malformed certificate entry {key:?}: {m}"))),
        }
    }

    /// Writes the certificate entry under `domain:<type>:<name>` without expiry.
    pub fn set_cert(&mut self, name: &str, entry: &CertEntry) -> Result<(), BlockingError> {
        let key = CertEntry::store_key(&entry.key_type, name);
        self.set(&key, &entry.to_json(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_into_their_parts() {
        let (u, h, p, q) = split_url("user:p%40ss@127.0.0.1:6380/2?namespace=acme%3A");
        assert_eq!(u.as_deref(), Some("user:p%40ss"));
        assert_eq!(h, "127.0.0.1:6380");
        assert_eq!(p, "2");
        assert_eq!(q, vec![("namespace".to_string(), "acme:".to_string())]);
        assert_eq!(unescape("p%40ss"), "p@ss");
        let (u, h, p, q) = split_url("localhost:2379");
        assert!(u.is_none() && p.is_empty() && q.is_empty());
        assert_eq!(h, "localhost:2379");
    }

    #[test]
    fn etcd_values_are_json_text() {
        assert_eq!(
            EtcdStore::decode_value(br#""a\/b""#).as_deref(),
            Some("a/b")
        );
        assert_eq!(EtcdStore::decode_value(b"12").as_deref(), Some("12"));
        assert!(EtcdStore::decode_value(b"{").is_none());
        assert_eq!(EtcdStore::range_end(b"ab"), b"ac".to_vec());
        assert_eq!(EtcdStore::range_end(b"a\xff"), b"b".to_vec());
    }

    #[test]
    fn unknown_schemes_are_refused() {
        assert!(AnyStore::open("s3://x", false).is_err());
        assert_eq!(escape("domain:ecc:a b/c#"), "domain:ecc:a%20b%2Fc%23");
        assert_eq!(kv_name("x/y"), "x-y");
    }

    #[test]
    fn redis_urls_name_their_mistakes_before_connecting() {
        let err = |spec: &str| match AnyStore::open(spec, false) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{spec} opened"),
        };
        // TLS options belong to rediss://, the database of a socket is an option
        assert!(err("redis://127.0.0.1:1?ca=/x.pem").contains("unknown option \"ca\""));
        assert!(err("redis+unix://host/x.sock").contains("redis+unix:///path/to/redis.sock"));
        assert!(err("redis+unix://").contains("redis+unix:///path/to/redis.sock"));
        let e = err("redis+unix:///nonexistent/redis.sock?db=1");
        assert!(
            e.contains("cannot connect to redis socket /nonexistent/redis.sock"),
            "{e}"
        );
    }
}
