//! A verifying TLS client over a connected socket, for the CLI's stores that speak TLS
//! themselves (Redis): the peer's chain against a CA file (or the system's roots) and its name
//! (host name or IP address) against `server_name`.

use super::CryptoError;
use openssl::ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode};
use std::io::{Read, Write};

/// Runs the handshake on `stream`; `ca_file` replaces the system's roots when given.
pub fn connect<S: Read + Write + std::fmt::Debug>(
    stream: S,
    server_name: &str,
    ca_file: Option<&str>,
) -> Result<SslStream<S>, CryptoError> {
    let mut b = SslConnector::builder(SslMethod::tls_client())?;
    if let Some(ca) = ca_file {
        b.set_ca_file(ca)
            .map_err(|e| CryptoError::InvalidInput(format!("cannot load CA file {ca}: {e}")))?;
    }
    b.set_verify(SslVerifyMode::PEER);
    let connector = b.build();
    // IP addresses are checked against IP SANs (and sent without SNI) by the connector itself
    connector
        .connect(server_name, stream)
        .map_err(|e| CryptoError::Openssl(format!("tls handshake with {server_name}: {e}")))
}
