//! TSIG (RFC 8945) with HMAC-SHA256 and HMAC-SHA512. hickory-proto encodes the TSIG RR and
//! the "TSIG variables"; the MAC itself is computed with `crypto::digest::hmac` (OpenSSL), as
//! hickory's own signer would pull in ring or aws-lc.
use super::message::{name_text, parse_name};
use super::DnsError;
use crate::crypto::digest;
use base64::Engine;
use hickory_proto::op::Query;
use hickory_proto::rr::rdata::tsig::{make_tsig_record, TsigAlgorithm as HickoryAlgorithm, TSIG};
use hickory_proto::rr::{Name, RData, Record};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};

/// Seconds of clock difference tolerated either way; RFC 8945 §10 recommends 300.
pub const FUDGE: u16 = 300;

/// The MAC algorithms offered (RFC 8945 §6: hmac-sha256 is the recommended one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TsigAlgorithm {
    HmacSha256,
    HmacSha512,
}

impl TsigAlgorithm {
    /// `hmac-sha256` / `hmac-sha512`, case-insensitive, trailing dot allowed.
    pub fn parse(text: &str) -> Result<TsigAlgorithm, DnsError> {
        match text.trim_end_matches('.').to_ascii_lowercase().as_str() {
            "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
            "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
            _ => Err(DnsError::InvalidInput(format!(
                "unsupported tsig algorithm {text:?} (want hmac-sha256 or hmac-sha512)"
            ))),
        }
    }

    /// The algorithm's domain name as sent in the TSIG RDATA (RFC 8945 §6).
    pub fn name(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }

    fn digest(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "sha256",
            TsigAlgorithm::HmacSha512 => "sha512",
        }
    }

    fn mac_len(self) -> usize {
        match self {
            TsigAlgorithm::HmacSha256 => 32,
            TsigAlgorithm::HmacSha512 => 64,
        }
    }

    fn hickory(self) -> HickoryAlgorithm {
        match self {
            TsigAlgorithm::HmacSha256 => HickoryAlgorithm::HmacSha256,
            TsigAlgorithm::HmacSha512 => HickoryAlgorithm::HmacSha512,
        }
    }
}

/// A shared TSIG key: its name, algorithm and secret.
#[derive(Clone)]
pub struct TsigKey {
    name: Name,
    algorithm: TsigAlgorithm,
    secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(
            f,
            "TsigKey({}, {}, secret redacted)",
            name_text(&self.name),
            self.algorithm.name()
        )
    }
}

impl TsigKey {
    /// `secret_b64`: the secret in base64, as in BIND's `key` clause or `tsig-keygen` output.
    pub fn new(name: &str, algorithm: &str, secret_b64: &str) -> Result<TsigKey, DnsError> {
        let name = parse_name(name)?;
        let algorithm = TsigAlgorithm::parse(algorithm)?;
        let compact: String = secret_b64.split_whitespace().collect();
        let secret = base64::engine::general_purpose::STANDARD
            .decode(compact.as_bytes())
            .or_else(|_| {
                base64::engine::general_purpose::STANDARD_NO_PAD.decode(compact.as_bytes())
            })
            .map_err(|_| DnsError::InvalidInput("tsig secret is not valid base64".into()))?;
        if secret.is_empty() {
            return Err(DnsError::InvalidInput("tsig secret is empty".into()));
        }
        Ok(TsigKey {
            name,
            algorithm,
            secret,
        })
    }

    /// The key name, lower case, without the trailing dot.
    pub fn name(&self) -> String {
        name_text(&self.name)
    }

    pub fn algorithm(&self) -> TsigAlgorithm {
        self.algorithm
    }

    fn mac(&self, data: &[u8]) -> Result<Vec<u8>, DnsError> {
        digest::hmac(self.algorithm.digest(), &self.secret, data)
            .map_err(|e| DnsError::Crypto(e.to_string()))
    }
}

/// A signed message and the MAC the reply's MAC is chained to (RFC 8945 §4.3.1).
#[derive(Debug, Clone)]
pub struct Signed {
    pub bytes: Vec<u8>,
    pub mac: Vec<u8>,
}

fn header_u16(bytes: &[u8], at: usize) -> Result<u16, DnsError> {
    match bytes.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(DnsError::Malformed(
            "message shorter than its header".into(),
        )),
    }
}

/// The TSIG variables of RFC 8945 §4.3.3, in canonical form.
fn tsig_variables(tsig: &TSIG, key_name: &Name) -> Result<Vec<u8>, DnsError> {
    let mut buf = Vec::new();
    let mut enc = BinEncoder::new(&mut buf);
    tsig.emit_tsig_for_mac(&mut enc, key_name)
        .map_err(|e| DnsError::Encode(e.to_string()))?;
    Ok(buf)
}

/// Signs an encoded message (RFC 8945 §5.1): the MAC covers the message as it is, then the TSIG
/// variables; the TSIG RR is appended as the last additional record.
pub fn sign(unsigned: &[u8], key: &TsigKey, time: u64) -> Result<Signed, DnsError> {
    let id = header_u16(unsigned, 0)?;
    let arcount = header_u16(unsigned, 10)?;
    let arcount = arcount
        .checked_add(1)
        .ok_or_else(|| DnsError::InvalidInput("additional section is full".into()))?;
    if time >> 48 != 0 {
        return Err(DnsError::InvalidInput(
            "time does not fit in 48 bits".into(),
        ));
    }
    // §4.2: Original ID is the message ID; Error and Other Len are zero in requests.
    let pre = TSIG::new(
        key.algorithm.hickory(),
        time,
        FUDGE,
        Vec::new(),
        id,
        None,
        Vec::new(),
    );
    let mut tbs = unsigned.to_vec();
    tbs.extend_from_slice(&tsig_variables(&pre, &key.name)?);
    let mac = key.mac(&tbs)?;

    let record = make_tsig_record(key.name.clone(), pre.set_mac(mac.clone()));
    let mut rr = Vec::new();
    {
        // A fresh encoder: the RR is written uncompressed.
        let mut enc = BinEncoder::new(&mut rr);
        record
            .emit(&mut enc)
            .map_err(|e| DnsError::Encode(e.to_string()))?;
    }
    let mut bytes = unsigned.to_vec();
    bytes[10..12].copy_from_slice(&arcount.to_be_bytes());
    bytes.extend_from_slice(&rr);
    Ok(Signed { bytes, mac })
}

/// A message split at its TSIG RR: the bytes before it and the RR itself.
pub(crate) struct SplitMessage<'a> {
    pub before_tsig: &'a [u8],
    pub key_name: Name,
    pub tsig: TSIG,
}

/// Finds the TSIG RR, which must be the last record (RFC 8945 §5.1); `None` when unsigned.
pub(crate) fn split_tsig(bytes: &[u8]) -> Result<Option<SplitMessage<'_>>, DnsError> {
    let malformed = |e: &dyn std::fmt::Display| DnsError::Malformed(e.to_string());
    let qd = header_u16(bytes, 4)?;
    let an = header_u16(bytes, 6)?;
    let ns = header_u16(bytes, 8)?;
    let ar = header_u16(bytes, 10)?;
    if ar == 0 {
        return Ok(None);
    }
    let mut dec = BinDecoder::new(bytes);
    // The header was read above; skip its 12 octets.
    for _ in 0..12 {
        dec.pop().map_err(|e| malformed(&e))?;
    }
    for _ in 0..qd {
        Query::read(&mut dec).map_err(|e| malformed(&e))?;
    }
    let before = usize::from(an) + usize::from(ns) + usize::from(ar) - 1;
    for _ in 0..before {
        Record::<RData>::read(&mut dec).map_err(|e| malformed(&e))?;
    }
    let at = bytes.len() - dec.len();
    let last = Record::<RData>::read(&mut dec).map_err(|e| malformed(&e))?;
    if !dec.is_empty() {
        return Err(DnsError::Malformed(
            "trailing bytes after the last record".into(),
        ));
    }
    let name = last.name.clone();
    match last.data {
        RData::TSIG(tsig) => Ok(Some(SplitMessage {
            before_tsig: &bytes[..at],
            key_name: name,
            tsig,
        })),
        _ => Ok(None),
    }
}

/// The data a MAC covers (RFC 8945 §4.3): the prior MAC for a reply (§4.3.1), the message
/// without its TSIG RR, with the original ID and ARCOUNT less one (§4.3.2), then the TSIG
/// variables (§4.3.3).
pub(crate) fn signed_data(
    split: &SplitMessage<'_>,
    prior_mac: Option<&[u8]>,
) -> Result<Vec<u8>, DnsError> {
    let msg = split.before_tsig;
    let mut out = Vec::with_capacity(msg.len() + 128);
    if let Some(mac) = prior_mac {
        let len = u16::try_from(mac.len())
            .map_err(|_| DnsError::InvalidInput("request mac too long".into()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(mac);
    }
    let arcount = header_u16(msg, 10)?
        .checked_sub(1)
        .ok_or_else(|| DnsError::Malformed("additional count is zero".into()))?;
    out.extend_from_slice(&split.tsig.oid.to_be_bytes());
    out.extend_from_slice(&msg[2..10]);
    out.extend_from_slice(&arcount.to_be_bytes());
    out.extend_from_slice(&msg[12..]);
    out.extend_from_slice(&tsig_variables(&split.tsig, &split.key_name)?);
    Ok(out)
}

/// Compares without an early exit, so the time taken does not tell how much of a MAC matched.
fn same_mac(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a reply's TSIG says once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyTsig {
    /// The MAC verified and the time is within the fudge.
    Verified,
    /// The server reported a TSIG error (BADSIG, BADKEY, BADTIME ...) in an unsigned TSIG RR
    /// (RFC 8945 §5.3.2): the reply cannot be authenticated, only reported as a failure.
    ServerError(u16),
    /// No TSIG RR at all.
    Unsigned,
}

/// Checks the TSIG of a reply to a request signed with `key` whose MAC was `request_mac`
/// (RFC 8945 §5.3). `now`: the caller's clock, seconds since the epoch.
pub fn verify_reply(
    bytes: &[u8],
    key: &TsigKey,
    request_mac: &[u8],
    now: u64,
) -> Result<ReplyTsig, DnsError> {
    let Some(split) = split_tsig(bytes)? else {
        return Ok(ReplyTsig::Unsigned);
    };
    let error = split.tsig.error.map(u16::from).unwrap_or(0);
    if split.tsig.mac.is_empty() && error != 0 {
        return Ok(ReplyTsig::ServerError(error));
    }
    if name_text(&split.key_name) != key.name() {
        return Err(DnsError::Tsig(format!(
            "the reply is signed with key {}, not {}",
            name_text(&split.key_name),
            key.name()
        )));
    }
    let alg = split
        .tsig
        .algorithm
        .to_name()
        .to_ascii()
        .to_ascii_lowercase();
    if alg.trim_end_matches('.') != key.algorithm.name() {
        return Err(DnsError::Tsig(format!(
            "the reply uses algorithm {alg}, not {}",
            key.algorithm.name()
        )));
    }
    // §5.2.2.1: truncated MACs are not accepted here.
    if split.tsig.mac.len() != key.algorithm.mac_len() {
        return Err(DnsError::Tsig(format!(
            "the reply's mac has {} octets, want {}",
            split.tsig.mac.len(),
            key.algorithm.mac_len()
        )));
    }
    let expected = key.mac(&signed_data(&split, Some(request_mac))?)?;
    if !same_mac(&expected, &split.tsig.mac) {
        return Err(DnsError::Tsig("the reply's mac does not match".into()));
    }
    // A signed TSIG error (BADTIME carries the server's clock, §5.2.3): report it as such.
    if error != 0 {
        return Ok(ReplyTsig::ServerError(error));
    }
    // §5.2.3: the signature time must be within the fudge of our clock.
    let skew = now.abs_diff(split.tsig.time);
    if skew > u64::from(split.tsig.fudge) {
        return Err(DnsError::Tsig(format!(
            "the reply was signed {skew}s away from this host's clock (fudge {}s)",
            split.tsig.fudge
        )));
    }
    Ok(ReplyTsig::Verified)
}
