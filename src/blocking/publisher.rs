//! Making challenges answerable outside nginx: an http-01 standalone responder (RFC 8555 §8.3)
//! and a dns-01 publisher that runs an operator hook (§8.4).
use super::BlockingError;
use crate::acme::{ChallengeTask, ChallengeType};
use crate::crypto::challenge::dns01_txt_value;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Publishes and removes the proof for a challenge.
pub trait ChallengePublisher {
    /// The challenge types this publisher can answer, most preferred first.
    fn challenge_types(&self) -> Vec<ChallengeType>;
    /// Makes `task` answerable; returns only once the CA may validate it.
    fn publish(&mut self, task: &ChallengeTask) -> Result<(), String>;
    /// Removes what `publish` made (best effort).
    fn unpublish(&mut self, task: &ChallengeTask) -> Result<(), String>;
}

/// For operations that never publish a challenge (revocation, account changes).
#[derive(Debug, Default)]
pub struct NoPublisher;

impl ChallengePublisher for NoPublisher {
    fn challenge_types(&self) -> Vec<ChallengeType> {
        Vec::new()
    }
    fn publish(&mut self, task: &ChallengeTask) -> Result<(), String> {
        Err(format!(
            "no challenge publisher configured for {}",
            task.kind.as_str()
        ))
    }
    fn unpublish(&mut self, _task: &ChallengeTask) -> Result<(), String> {
        Ok(())
    }
}

/// RFC 8555 §8.1: tokens are base64url, i.e. `[A-Za-z0-9_-]+`.
fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

type Tokens = Arc<Mutex<HashMap<String, String>>>;

fn lock(tokens: &Tokens) -> MutexGuard<'_, HashMap<String, String>> {
    // A panic while holding the lock cannot leave the map half-updated: use it anyway.
    tokens.lock().unwrap_or_else(|e| e.into_inner())
}

const CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";
const MAX_REQUEST_HEAD: usize = 8192;

/// Builds the full HTTP/1.1 response for one request head.
fn respond(head: &[u8], tokens: &HashMap<String, String>) -> Vec<u8> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let (status, body): (&str, String) = match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {
            let method = req.method.unwrap_or("");
            let path = req.path.unwrap_or("");
            if method != "GET" && method != "HEAD" {
                ("405 Method Not Allowed", "method not allowed\n".into())
            } else {
                match path.strip_prefix(CHALLENGE_PREFIX) {
                    Some(token) if valid_token(token) => match tokens.get(token) {
                        // §8.3: the body is the key authorization.
                        Some(ka) => ("200 OK", ka.clone()),
                        None => ("404 Not Found", "not found\n".into()),
                    },
                    _ => ("404 Not Found", "not found\n".into()),
                }
            }
        }
        _ => ("400 Bad Request", "bad request\n".into()),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if req.method != Some("HEAD") {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

fn serve_connection(mut stream: TcpStream, tokens: Tokens) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                head.extend_from_slice(&buf[..n]);
                if head.windows(4).any(|w| w == b"\r\n\r\n") || head.len() > MAX_REQUEST_HEAD {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
    let response = respond(&head, &lock(&tokens));
    let _ = stream.write_all(&response);
    let _ = stream.flush();
}

/// A standalone http-01 responder: a background thread serving
/// `GET /.well-known/acme-challenge/<token>` on a TCP address with the key authorization of the
/// published tokens, 404 for anything else. Stops when dropped.
pub struct Http01Responder {
    addr: SocketAddr,
    tokens: Tokens,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Http01Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http01Responder")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Http01Responder {
    /// Binds the address (e.g. `0.0.0.0:80`) and starts serving.
    pub fn bind(
        addr: impl ToSocketAddrs + std::fmt::Display,
    ) -> Result<Http01Responder, BlockingError> {
        let listener = TcpListener::bind(&addr).map_err(|e| {
            BlockingError::Publish(format!("cannot listen on {addr} for http-01: {e}"))
        })?;
        let local = listener
            .local_addr()
            .map_err(|e| BlockingError::Publish(format!("http-01 listener: {e}")))?;
        // Non-blocking accept lets the thread notice `stop` without a wake-up connection.
        listener
            .set_nonblocking(true)
            .map_err(|e| BlockingError::Publish(format!("http-01 listener: {e}")))?;
        let tokens: Tokens = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (tokens.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("http-01".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let t = t.clone();
                            // One thread per connection: a stalled client cannot block the CA.
                            let _ = std::thread::Builder::new()
                                .name("http-01-conn".into())
                                .spawn(move || serve_connection(stream, t));
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
            .map_err(|e| BlockingError::Publish(format!("cannot start http-01 thread: {e}")))?;
        Ok(Http01Responder {
            addr: local,
            tokens,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `key_authorization` for `token`.
    pub fn insert(&self, token: &str, key_authorization: &str) -> Result<(), String> {
        if !valid_token(token) {
            return Err(format!(
                "invalid http-01 token {token:?}: expected base64url characters"
            ));
        }
        lock(&self.tokens).insert(token.to_string(), key_authorization.to_string());
        Ok(())
    }

    pub fn remove(&self, token: &str) {
        lock(&self.tokens).remove(token);
    }
}

impl Drop for Http01Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl ChallengePublisher for Http01Responder {
    fn challenge_types(&self) -> Vec<ChallengeType> {
        vec![ChallengeType::Http01]
    }
    fn publish(&mut self, task: &ChallengeTask) -> Result<(), String> {
        if task.kind != ChallengeType::Http01 {
            return Err(format!(
                "the http-01 responder cannot publish {}",
                task.kind.as_str()
            ));
        }
        self.insert(&task.token, &task.key_authorization)
    }
    fn unpublish(&mut self, task: &ChallengeTask) -> Result<(), String> {
        self.remove(&task.token);
        Ok(())
    }
}

/// dns-01 through an operator hook: `<hook> add <fqdn> <txt>` to publish and
/// `<hook> del <fqdn> <txt>` to remove, where `fqdn` is `_acme-challenge.<name>` (RFC 8555 §8.4;
/// a wildcard's `*.` stripped) and `txt` the base64url SHA-256 of the key authorization. The hook
/// is run directly (no shell); it must exit 0 only once the record is served. An optional delay
/// after a successful `add` leaves time for propagation.
#[derive(Debug, Clone)]
pub struct DnsHookPublisher {
    hook: PathBuf,
    delay: Duration,
}

impl DnsHookPublisher {
    pub fn new(hook: impl Into<PathBuf>, delay: Duration) -> DnsHookPublisher {
        DnsHookPublisher {
            hook: hook.into(),
            delay,
        }
    }

    /// The record name and TXT value for a dns-01 task.
    pub fn record(task: &ChallengeTask) -> (String, String) {
        let value = task.identifier.value();
        let name = value.trim_end_matches('.');
        let name = name.strip_prefix("*.").unwrap_or(name);
        (
            format!("_acme-challenge.{name}"),
            dns01_txt_value(&task.key_authorization),
        )
    }

    fn run(&self, verb: &str, fqdn: &str, value: &str) -> Result<(), String> {
        let out = Command::new(&self.hook)
            .args([verb, fqdn, value])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run dns hook {}: {e}", self.hook.display()))?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr = stderr.trim();
        let tail: String = stderr
            .chars()
            .rev()
            .take(400)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        Err(format!(
            "dns hook {} {verb} {fqdn} failed ({}){}{}",
            self.hook.display(),
            out.status,
            if tail.is_empty() { "" } else { ": " },
            tail
        ))
    }
}

impl ChallengePublisher for DnsHookPublisher {
    fn challenge_types(&self) -> Vec<ChallengeType> {
        vec![ChallengeType::Dns01]
    }
    fn publish(&mut self, task: &ChallengeTask) -> Result<(), String> {
        if task.kind != ChallengeType::Dns01 {
            return Err(format!(
                "the dns hook cannot publish {}",
                task.kind.as_str()
            ));
        }
        let (fqdn, value) = Self::record(task);
        self.run("add", &fqdn, &value)?;
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        Ok(())
    }
    fn unpublish(&mut self, task: &ChallengeTask) -> Result<(), String> {
        let (fqdn, value) = Self::record(task);
        self.run("del", &fqdn, &value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme::Identifier;

    fn get(addr: SocketAddr, raw: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    fn task(kind: ChallengeType, name: &str, wildcard: bool) -> ChallengeTask {
        ChallengeTask {
            kind,
            identifier: Identifier::dns(name),
            wildcard,
            token: "tok_EN-1".into(),
            key_authorization: "tok_EN-1.thumb".into(),
            url: "https://ca/chall/1".into(),
            authz_url: "https://ca/authz/1".into(),
            issuer_domain_names: Vec::new(),
            account_uri: None,
        }
    }

    #[test]
    fn token_charset() {
        assert!(valid_token("abcXYZ019-_"));
        for bad in ["", "a/b", "a.b", "a%2Fb", "..", "a b", "tök", "a?x=1"] {
            assert!(!valid_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn respond_without_socket() {
        let mut m = HashMap::new();
        m.insert("tok".to_string(), "tok.thumb".to_string());
        let ok = respond(
            b"GET /.well-known/acme-challenge/tok HTTP/1.1\r\nHost: x\r\n\r\n",
            &m,
        );
        let ok = String::from_utf8(ok).unwrap();
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(ok.ends_with("\r\n\r\ntok.thumb"));
        let head = respond(b"HEAD /.well-known/acme-challenge/tok HTTP/1.1\r\n\r\n", &m);
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"));
        for (req, status) in [
            (
                "GET /.well-known/acme-challenge/other HTTP/1.1\r\n\r\n",
                "404",
            ),
            (
                "GET /.well-known/acme-challenge/tok.x HTTP/1.1\r\n\r\n",
                "404",
            ),
            (
                "GET /.well-known/acme-challenge/tok?x=1 HTTP/1.1\r\n\r\n",
                "404",
            ),
            ("GET /.well-known/acme-challenge/ HTTP/1.1\r\n\r\n", "404"),
            ("GET /tok HTTP/1.1\r\n\r\n", "404"),
            (
                "POST /.well-known/acme-challenge/tok HTTP/1.1\r\n\r\n",
                "405",
            ),
            ("garbage\r\n\r\n", "400"),
        ] {
            let r = String::from_utf8(respond(req.as_bytes(), &m)).unwrap();
            assert!(
                r.starts_with(&format!("HTTP/1.1 {status} ")),
                "{req:?} -> {r}"
            );
        }
    }

    #[test]
    fn responder_serves_published_tokens() {
        let mut r = Http01Responder::bind("127.0.0.1:0").unwrap();
        let addr = r.local_addr();
        let t = task(ChallengeType::Http01, "example.com", false);
        let path = "/.well-known/acme-challenge/tok_EN-1";
        let req = format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert!(get(addr, &req).starts_with("HTTP/1.1 404 "));
        r.publish(&t).unwrap();
        let resp = get(addr, &req);
        assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
        assert!(resp.ends_with("\r\n\r\ntok_EN-1.thumb"));
        r.unpublish(&t).unwrap();
        assert!(get(addr, &req).starts_with("HTTP/1.1 404 "));
        assert!(r.insert("../etc", "x").is_err());
        assert!(r
            .publish(&task(ChallengeType::Dns01, "example.com", false))
            .is_err());
        drop(r);
        // The listener is closed once the responder is dropped.
        assert!(TcpStream::connect(addr).is_err());
    }

    #[test]
    fn bind_error_is_clear() {
        let r = Http01Responder::bind("127.0.0.1:0").unwrap();
        let addr = r.local_addr();
        let err = Http01Responder::bind(addr).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("cannot listen on {addr} for http-01")),
            "{err}"
        );
    }

    #[test]
    fn dns_record_names() {
        let (fqdn, _) = DnsHookPublisher::record(&task(ChallengeType::Dns01, "example.com", true));
        assert_eq!(fqdn, "_acme-challenge.example.com");
        let (fqdn, _) =
            DnsHookPublisher::record(&task(ChallengeType::Dns01, "*.a.example.com", true));
        assert_eq!(fqdn, "_acme-challenge.a.example.com");
    }

    #[test]
    fn dns_hook_runs_and_reports_failures() {
        let dir = std::env::temp_dir().join(format!("acme-rs-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let hook = dir.join("hook.sh");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\necho \"$1 $2 $3\" >> {}\n[ \"$1\" = add ] || {{ echo 'del broke' >&2; exit 3; }}\n",
                log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut p = DnsHookPublisher::new(&hook, Duration::ZERO);
        let t = task(ChallengeType::Dns01, "example.com", false);
        p.publish(&t).unwrap();
        let err = p.unpublish(&t).unwrap_err();
        assert!(
            err.contains("del _acme-challenge.example.com failed"),
            "{err}"
        );
        assert!(err.ends_with("del broke"), "{err}");
        let lines = std::fs::read_to_string(&log).unwrap();
        assert!(
            lines.starts_with("add _acme-challenge.example.com "),
            "{lines}"
        );
        let missing = DnsHookPublisher::new(dir.join("nope"), Duration::ZERO)
            .publish(&t)
            .unwrap_err();
        assert!(missing.starts_with("cannot run dns hook"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
