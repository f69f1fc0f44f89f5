//! All cryptography of the library; with `tls` (serving handshakes) the only user of the
//! `openssl` crate.
//!
//! Keys, JWK/JWS (RFC 7515/7638, RFC 8555 §6.2), EAB (RFC 8555 §7.3.4), CSRs, certificate
//! parsing, chains for `ngx.ssl.set_cert` with shared intermediates, and the challenge
//! artefacts (key authorization, dns-01 digest, RFC 8737 certificate).

pub mod cert;
pub mod chain;
pub mod challenge;
pub mod csr;
pub mod digest;
pub mod encoding;
mod error;
pub mod jws;
pub mod key;
pub mod leaf;
pub mod peer;
pub mod tls_client;

pub use error::CryptoError;
pub use key::{KeyType, PrivateKey};
