//! What serves TLS handshakes inside nginx: the per-worker certificate cache, installing a
//! chain and key on a connection, serving from OpenSSL's certificate callback without Lua, and
//! answering tls-alpn-01 (RFC 8737) on nginx's own listener. Keys and certificates themselves
//! are `crypto`'s.

pub mod certcache;
pub mod compact;
pub mod serve;
pub mod tls_alpn;
pub mod tls_cert;
