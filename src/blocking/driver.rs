//! A ureq 3 transport for the sans-I/O core: performs the core's HTTP requests, sleeps, and
//! hands challenges to a [`ChallengePublisher`].
use super::{BlockingError, ChallengePublisher};
use crate::acme::{Action, ChallengeTask, Client, Method, Operation, Request, Response};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use ureq::tls::{PemItem, RootCerts, TlsConfig, TlsProvider};

/// The current time as Unix seconds, the `now` the core wants.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// How the driver talks to the CA.
#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// A PEM file of trusted CA certificates. When set, ONLY these are trusted (e.g. a test CA
    /// such as Pebble's); otherwise the system's trust store is used.
    pub ca_bundle: Option<PathBuf>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Limit for one whole request/response exchange.
    pub request_timeout: Duration,
    /// The `User-Agent` header (RFC 8555 §6.1 asks clients to send one).
    pub user_agent: String,
    /// Print each request and response status to stderr.
    pub verbose: bool,
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            ca_bundle: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            user_agent: format!("lua-resty-acme-rs/{}", env!("CARGO_PKG_VERSION")),
            verbose: false,
        }
    }
}

/// Runs operations of the core over HTTPS with ureq.
pub struct Driver {
    agent: ureq::Agent,
    verbose: bool,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

fn load_roots(path: &PathBuf) -> Result<RootCerts, BlockingError> {
    let pem = std::fs::read(path).map_err(|e| {
        BlockingError::Config(format!("cannot read CA bundle {}: {e}", path.display()))
    })?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(BlockingError::Config(format!(
                    "invalid PEM in CA bundle {}: {e}",
                    path.display()
                )))
            }
        }
    }
    if certs.is_empty() {
        return Err(BlockingError::Config(format!(
            "no certificate found in CA bundle {}",
            path.display()
        )));
    }
    Ok(RootCerts::new_with_certs(&certs))
}

/// `host[:port]` of a URL, for error messages.
fn authority(url: &str) -> String {
    url.parse::<ureq::http::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| url.to_string())
}

/// A transport failure as an operator can act on it.
fn describe(url: &str, err: &ureq::Error) -> String {
    let host = authority(url);
    match err {
        ureq::Error::Io(e) => match e.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                format!("cannot connect to {host}: connection refused (is the CA running?)")
            }
            std::io::ErrorKind::TimedOut => format!("timed out talking to {host}"),
            _ if e.to_string().contains("lookup address") => {
                format!("cannot resolve host {host}: {e}")
            }
            _ => format!("i/o error talking to {host}: {e}"),
        },
        ureq::Error::HostNotFound => format!("cannot resolve host {host}"),
        ureq::Error::Timeout(t) => format!("timed out talking to {host} ({t})"),
        ureq::Error::ConnectionFailed => format!("cannot connect to {host}"),
        ureq::Error::NativeTls(e) => {
            let m = e.to_string();
            if m.contains("certificate verify failed") {
                // OpenSSL appends the verification result in parentheses at the end.
                let reason = m
                    .rfind('(')
                    .map(|i| m[i + 1..].trim_end_matches(')').to_string())
                    .filter(|r| !r.is_empty())
                    .unwrap_or(m.clone());
                format!(
                    "tls certificate of {host} is not trusted: {reason} \
                     (give the CA's root certificate as the trusted CA bundle)"
                )
            } else {
                format!("tls error with {host}: {m}")
            }
        }
        ureq::Error::Tls(m) => format!("tls error with {host}: {m}"),
        ureq::Error::BadUri(m) => format!("invalid url {url}: {m}"),
        other => format!("request to {host} failed: {other}"),
    }
}

impl Driver {
    pub fn new(opts: DriverOptions) -> Result<Driver, BlockingError> {
        let roots = match &opts.ca_bundle {
            Some(p) => load_roots(p)?,
            None => RootCerts::PlatformVerifier,
        };
        let tls = TlsConfig::builder()
            .provider(TlsProvider::NativeTls)
            .root_certs(roots)
            .build();
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
            // The core reads problem documents from 4xx/5xx replies (RFC 8555 §6.7).
            .http_status_as_error(false)
            // ACME requests are signed for one URL: never follow a redirect.
            .max_redirects(0)
            .user_agent(opts.user_agent.as_str())
            .timeout_connect(Some(opts.connect_timeout))
            .timeout_global(Some(opts.request_timeout))
            .build();
        Ok(Driver {
            agent: ureq::Agent::new_with_config(config),
            verbose: opts.verbose,
        })
    }

    /// Performs one request; transport failures come back as text for the core.
    pub fn perform(&self, req: &Request, max_body: usize) -> Result<Response, String> {
        let mut b = ureq::http::Request::builder()
            .method(req.method.as_str())
            .uri(req.url.as_str());
        for (k, v) in &req.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let result = if req.body.is_empty() && req.method != Method::Post {
            b.body(())
                .map_err(|e| format!("invalid request to {}: {e}", req.url))
                .and_then(|r| self.agent.run(r).map_err(|e| describe(&req.url, &e)))
        } else {
            b.body(req.body.clone())
                .map_err(|e| format!("invalid request to {}: {e}", req.url))
                .and_then(|r| self.agent.run(r).map_err(|e| describe(&req.url, &e)))
        };
        let mut resp = result?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = if req.method == Method::Head {
            Vec::new()
        } else {
            let limit = max_body as u64;
            resp.body_mut()
                .with_config()
                .limit(limit.saturating_add(1))
                .read_to_vec()
                .map_err(|e| match e {
                    ureq::Error::BodyExceedsLimit(_) => format!(
                        "response from {} is larger than {max_body} bytes",
                        authority(&req.url)
                    ),
                    other => describe(&req.url, &other),
                })?
        };
        if body.len() > max_body {
            return Err(format!(
                "response from {} is larger than {max_body} bytes",
                authority(&req.url)
            ));
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// Runs `op` to completion: performs its requests, sleeps when asked, publishes and removes
    /// challenges through `publisher`. Challenges still published when the operation ends
    /// (e.g. on failure) are removed before returning.
    pub fn run<T: 'static>(
        &mut self,
        client: &mut Client,
        mut op: Operation<T>,
        publisher: &mut dyn ChallengePublisher,
    ) -> Result<T, BlockingError> {
        let mut published: Vec<ChallengeTask> = Vec::new();
        let result = loop {
            let now = unix_now();
            match op.next_action(client, now) {
                Action::Http(req) => {
                    if self.verbose {
                        eprintln!("> {} {}", req.method.as_str(), req.url);
                    }
                    match self.perform(&req, client.config.max_body) {
                        Ok(resp) => {
                            if self.verbose {
                                eprintln!("< {} ({} bytes)", resp.status, resp.body.len());
                            }
                            op.handle_response(client, resp, unix_now());
                        }
                        Err(e) => {
                            if self.verbose {
                                eprintln!("< {e}");
                            }
                            op.handle_transport_error(client, e);
                        }
                    }
                }
                // Only with `ClientConfig::deferred_signing`: this thread may as well sign.
                Action::Sign(job) => {
                    op.handle_signature(client, job.sign().map_err(|e| e.to_string()))
                }
                Action::Sleep { until } => {
                    let wait = until - unix_now();
                    if wait > 0.0 && wait.is_finite() {
                        std::thread::sleep(Duration::from_secs_f64(wait));
                    }
                }
                Action::Publish(task) => {
                    if self.verbose {
                        eprintln!(
                            "publishing {} for {}",
                            task.kind.as_str(),
                            task.identifier.value()
                        );
                    }
                    let r = publisher.publish(&task);
                    if r.is_ok() {
                        published.push(task);
                    }
                    op.handle_published(client, r);
                }
                Action::Unpublish(task) => {
                    if let Err(e) = publisher.unpublish(&task) {
                        if self.verbose {
                            eprintln!("removing challenge failed: {e}");
                        }
                    }
                    published.retain(|t| t != &task);
                    op.handle_unpublished(client);
                }
                Action::Done(outcome) => break Ok(outcome),
                Action::Failed(e) => break Err(BlockingError::Acme(e)),
            }
        };
        for task in published {
            let _ = publisher.unpublish(&task);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A one-shot HTTP server answering `reply` and returning the request head it received.
    fn one_shot(reply: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/dir", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = vec![0u8; 65536];
            let mut got = Vec::new();
            loop {
                let n = s.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
                if n == 0 || got.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            s.write_all(reply.as_bytes()).unwrap();
            String::from_utf8_lossy(&got).into_owned()
        });
        (url, h)
    }

    fn get(url: &str) -> Request {
        Request {
            method: Method::Get,
            url: url.into(),
            headers: vec![],
            body: vec![],
        }
    }

    #[test]
    fn error_statuses_are_responses_and_user_agent_is_sent() {
        let (url, h) = one_shot(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/problem+json\r\nReplay-Nonce: n1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        );
        let d = Driver::new(DriverOptions::default()).unwrap();
        let r = d.perform(&get(&url), 1024).unwrap();
        assert_eq!(r.status, 400);
        assert_eq!(r.header("replay-nonce"), Some("n1"));
        assert_eq!(r.body, b"{}");
        let head = h.join().unwrap().to_ascii_lowercase();
        assert!(
            head.contains(&format!(
                "user-agent: lua-resty-acme-rs/{}",
                env!("CARGO_PKG_VERSION")
            )),
            "{head}"
        );
    }

    #[test]
    fn redirects_are_not_followed() {
        let (url, h) = one_shot(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        let d = Driver::new(DriverOptions::default()).unwrap();
        let r = d.perform(&get(&url), 1024).unwrap();
        assert_eq!(r.status, 302);
        h.join().unwrap();
    }

    #[test]
    fn body_limit() {
        let (url, h) = one_shot(
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n0123456789",
        );
        let d = Driver::new(DriverOptions::default()).unwrap();
        let e = d.perform(&get(&url), 5).unwrap_err();
        assert!(e.contains("larger than 5 bytes"), "{e}");
        h.join().unwrap();
    }

    #[test]
    fn connection_refused_is_clear() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let d = Driver::new(DriverOptions::default()).unwrap();
        let e = d
            .perform(&get(&format!("https://{addr}/dir")), 1024)
            .unwrap_err();
        assert!(e.starts_with(&format!("cannot connect to {addr}")), "{e}");
    }

    #[test]
    fn bad_ca_bundle_is_a_config_error() {
        let p = std::env::temp_dir().join(format!("acme-rs-nobundle-{}", std::process::id()));
        std::fs::write(&p, "not a pem\n").unwrap();
        let e = Driver::new(DriverOptions {
            ca_bundle: Some(p.clone()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("no certificate found in CA bundle"), "{e}");
        std::fs::remove_file(&p).unwrap();
        let e = Driver::new(DriverOptions {
            ca_bundle: Some(p),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("cannot read CA bundle"), "{e}");
    }
}
