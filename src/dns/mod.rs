//! DNS messages for dns-01 (RFC 8555 §8.4): RFC 2136 UPDATE signed with RFC 8945 TSIG, and the
//! queries of the propagation check and zone discovery. hickory-proto encodes and decodes; the
//! TSIG MAC is computed with `crypto::digest::hmac`. No I/O and no clock: Lua moves the bytes
//! over cosockets and passes the time in.

mod error;
mod message;
mod tsig;

#[cfg(test)]
mod wire_tests;

pub use error::DnsError;
pub use message::{
    build_query, build_update, parse_name, parse_reply, random_id, rcode_name, tsig_error_name,
    update_failure, QueryType, Reply, ReplyRecord, TsigSummary, UpdateOp, MAX_UDP_SIZE,
};
pub use tsig::{sign, verify_reply, ReplyTsig, Signed, TsigAlgorithm, TsigKey, FUDGE};

use hickory_proto::rr::RecordType;

/// One exchange: the bytes to send and what a reply must match.
#[derive(Debug)]
pub struct Request {
    id: u16,
    /// The question (for UPDATE: the zone section), lower case, no trailing dot.
    question: (String, RecordType),
    bytes: Vec<u8>,
    update: bool,
    /// The key and the request MAC when the request is signed.
    signer: Option<(TsigKey, Vec<u8>)>,
}

impl Request {
    /// A query with a fresh random ID.
    pub fn query(name: &str, qtype: QueryType) -> Result<Request, DnsError> {
        Request::query_with_id(random_id(), name, qtype)
    }

    /// A query with RD set, for a recursive resolver.
    pub fn recursive_query(name: &str, qtype: QueryType) -> Result<Request, DnsError> {
        let id = random_id();
        let mut r = Request::query_with_id(id, name, qtype)?;
        r.bytes = message::build_query_rd(id, name, qtype, true)?;
        Ok(r)
    }

    pub fn query_with_id(id: u16, name: &str, qtype: QueryType) -> Result<Request, DnsError> {
        let bytes = build_query(id, name, qtype)?;
        let qname = message::name_text(&parse_name(name)?);
        Ok(Request {
            id,
            question: (qname, qtype.record_type()),
            bytes,
            update: false,
            signer: None,
        })
    }

    /// An UPDATE of `zone`, signed with `key` at `now` (seconds since the epoch) when given.
    pub fn update(
        id: u16,
        zone: &str,
        ops: &[UpdateOp],
        key: Option<&TsigKey>,
        now: u64,
    ) -> Result<Request, DnsError> {
        let unsigned = build_update(id, zone, ops)?;
        let (bytes, signer) = match key {
            Some(k) => {
                let signed = sign(&unsigned, k, now)?;
                (signed.bytes, Some((k.clone(), signed.mac)))
            }
            None => (unsigned, None),
        };
        Ok(Request {
            id,
            question: (message::name_text(&parse_name(zone)?), RecordType::SOA),
            bytes,
            update: true,
            signer,
        })
    }

    pub fn id(&self) -> u16 {
        self.id
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether UDP cannot carry the request (RFC 1035 §4.2.1).
    pub fn needs_tcp(&self) -> bool {
        self.bytes.len() > MAX_UDP_SIZE
    }

    /// Checks that `reply` answers this request: a response with the same ID and question
    /// (RFC 5452 §9.1); anything else on the socket is ignored by the caller.
    pub fn accepts(&self, reply: &[u8]) -> Result<Reply, DnsError> {
        let parsed = parse_reply(reply)?;
        if parsed.id != self.id {
            return Err(DnsError::Malformed(format!(
                "reply id {} does not match request id {}",
                parsed.id, self.id
            )));
        }
        if parsed.opcode_update != self.update {
            return Err(DnsError::Malformed("reply opcode does not match".into()));
        }
        if let Some(q) = &parsed.question {
            if *q != self.question {
                return Err(DnsError::Malformed(format!(
                    "reply is for {} {}, not {} {}",
                    q.0, q.1, self.question.0, self.question.1
                )));
            }
        }
        Ok(parsed)
    }

    /// The reply, checked: for a signed UPDATE the TSIG must verify and the RCODE must be
    /// NOERROR, else the error names the RCODE and TSIG error; query replies come back with
    /// whatever RCODE they carry.
    pub fn finish(&self, reply: &[u8], now: u64) -> Result<Reply, DnsError> {
        let parsed = self.accepts(reply)?;
        if !self.update {
            return Ok(parsed);
        }
        let Some((key, mac)) = &self.signer else {
            return match update_failure(parsed.rcode, 0) {
                Some(e) => Err(e),
                None => Ok(parsed),
            };
        };
        match verify_reply(reply, key, mac, now)? {
            ReplyTsig::Verified => match update_failure(parsed.rcode, 0) {
                Some(e) => Err(e),
                None => Ok(parsed),
            },
            ReplyTsig::ServerError(code) => Err(update_failure(parsed.rcode, code).unwrap_or_else(
                || DnsError::Rejected {
                    rcode: parsed.rcode_name(),
                    tsig_error: Some(tsig_error_name(code)),
                    meaning: "the server reported a tsig error".into(),
                },
            )),
            // RFC 8945 §5.3: an unsigned reply to a signed request is not trusted; an error
            // RCODE is still reported as what it says.
            ReplyTsig::Unsigned => match update_failure(parsed.rcode, 0) {
                Some(e) => Err(e),
                None => Err(DnsError::Tsig(
                    "the server answered the signed update with an unsigned NOERROR".into(),
                )),
            },
        }
    }
}
