//! Queries (RFC 1035 §4.1), UPDATE messages (RFC 2136 §2) and reply decoding.
use super::DnsError;
use hickory_proto::op::{Message, MessageType, OpCode, Query, UpdateMessage};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use serde::Serialize;

/// The largest message sent over UDP without EDNS (RFC 1035 §4.2.1); larger ones go over TCP.
pub const MAX_UDP_SIZE: usize = 512;

/// A character-string holds at most 255 octets (RFC 1035 §3.3).
const MAX_CHARACTER_STRING: usize = 255;

/// Parses a presentation-format name (`_acme-challenge.example.com`, trailing dot optional).
pub fn parse_name(text: &str) -> Result<Name, DnsError> {
    if text.is_empty() || text == "." {
        return Err(DnsError::InvalidName("empty name".into()));
    }
    if !text.is_ascii() || text.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(DnsError::InvalidName(format!(
            "{:?} has non-ascii, blank or control characters",
            text
        )));
    }
    let mut name =
        Name::from_ascii(text).map_err(|e| DnsError::InvalidName(format!("{text:?}: {e}")))?;
    if name.num_labels() == 0 {
        return Err(DnsError::InvalidName(format!("{text:?} has no labels")));
    }
    name.set_fqdn(true);
    Ok(name)
}

/// Presentation form without the trailing dot, lower case (names compare case-insensitively,
/// RFC 4343).
pub fn name_text(name: &Name) -> String {
    let mut s = name.to_lowercase().to_ascii();
    if s.len() > 1 && s.ends_with('.') {
        s.pop();
    }
    s
}

/// The record types this module asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueryType {
    Txt,
    Soa,
    Ns,
    A,
}

impl QueryType {
    pub fn parse(text: &str) -> Option<QueryType> {
        match text.to_ascii_uppercase().as_str() {
            "TXT" => Some(QueryType::Txt),
            "SOA" => Some(QueryType::Soa),
            "NS" => Some(QueryType::Ns),
            "A" => Some(QueryType::A),
            _ => None,
        }
    }

    pub fn record_type(self) -> RecordType {
        match self {
            QueryType::Txt => RecordType::TXT,
            QueryType::Soa => RecordType::SOA,
            QueryType::Ns => RecordType::NS,
            QueryType::A => RecordType::A,
        }
    }
}

/// A fresh message ID from hickory's generator (OS-seeded); an unpredictable ID is part of
/// what protects a UDP exchange against forged replies (RFC 5452 §4.3).
pub fn random_id() -> u16 {
    Message::query().metadata.id
}

fn encode(message: &Message) -> Result<Vec<u8>, DnsError> {
    message
        .to_vec()
        .map_err(|e| DnsError::Encode(e.to_string()))
}

/// A standard query for `name`/`qtype`, class IN. RD is clear: the servers asked are the
/// zone's authoritative ones, not resolvers (RFC 1035 §4.1.1).
pub fn build_query(id: u16, name: &str, qtype: QueryType) -> Result<Vec<u8>, DnsError> {
    build_query_rd(id, name, qtype, false)
}

/// A query with RD set as asked: set for a recursive resolver (finding a zone's SOA and NS
/// before its authoritative servers are asked), clear for those servers.
pub fn build_query_rd(
    id: u16,
    name: &str,
    qtype: QueryType,
    recursion_desired: bool,
) -> Result<Vec<u8>, DnsError> {
    let name = parse_name(name)?;
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = recursion_desired;
    message.add_query(Query::query(name, qtype.record_type()));
    encode(&message)
}

/// One change of an UPDATE message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpdateOp {
    /// RFC 2136 §2.5.1: add a TXT RR to the RRset (a duplicate is ignored by the server).
    AddTxt {
        name: String,
        value: String,
        ttl: u32,
    },
    /// RFC 2136 §2.5.4: delete the TXT RR with exactly this RDATA (class NONE, TTL 0).
    DeleteTxt { name: String, value: String },
    /// RFC 2136 §2.5.2: delete the whole TXT RRset of the name (class ANY, no RDATA).
    DeleteTxtRrset { name: String },
}

/// TXT RDATA for `value`: one character-string, split in 255-octet pieces when longer
/// (RFC 1035 §3.3.14; RFC 8555 §8.4 values are 43 octets).
fn txt_rdata(value: &str) -> Result<TXT, DnsError> {
    if value.is_empty() {
        return Err(DnsError::InvalidInput("empty TXT value".into()));
    }
    let pieces: Vec<&[u8]> = value.as_bytes().chunks(MAX_CHARACTER_STRING).collect();
    Ok(TXT::from_bytes(pieces))
}

fn checked_name(text: &str, zone: &Name) -> Result<Name, DnsError> {
    let name = parse_name(text)?;
    // RFC 2136 §3.4.1.3: every update RR must be in the zone, or the server says NOTZONE.
    if !zone.zone_of(&name) {
        return Err(DnsError::InvalidInput(format!(
            "{} is not within zone {}",
            name_text(&name),
            name_text(zone)
        )));
    }
    Ok(name)
}

/// An UPDATE message for `zone` (RFC 2136 §2): the zone section names the zone with type SOA,
/// no prerequisites, the changes in the update section.
pub fn build_update(id: u16, zone: &str, ops: &[UpdateOp]) -> Result<Vec<u8>, DnsError> {
    let zone = parse_name(zone)?;
    if ops.is_empty() {
        return Err(DnsError::InvalidInput(
            "an update needs at least one change".into(),
        ));
    }
    let mut message = Message::new(id, MessageType::Query, OpCode::Update);
    message.metadata.recursion_desired = false;
    let mut zone_query = Query::query(zone.clone(), RecordType::SOA);
    zone_query.set_query_class(DNSClass::IN);
    message.add_zone(zone_query);
    for op in ops {
        let record = match op {
            UpdateOp::AddTxt { name, value, ttl } => {
                let name = checked_name(name, &zone)?;
                let mut r = Record::from_rdata(name, *ttl, RData::TXT(txt_rdata(value)?));
                r.dns_class = DNSClass::IN;
                r
            }
            UpdateOp::DeleteTxt { name, value } => {
                let name = checked_name(name, &zone)?;
                let mut r = Record::from_rdata(name, 0, RData::TXT(txt_rdata(value)?));
                r.dns_class = DNSClass::NONE;
                r
            }
            UpdateOp::DeleteTxtRrset { name } => {
                let name = checked_name(name, &zone)?;
                let mut r = Record::update0(name, 0, RecordType::TXT).into_record_of_rdata();
                r.dns_class = DNSClass::ANY;
                r
            }
        };
        message.add_update(record);
    }
    encode(&message)
}

/// The mnemonic of a header RCODE (RFC 1035 §4.1.1, RFC 2136 §2.2).
pub fn rcode_name(rcode: u16) -> String {
    match rcode {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        6 => "YXDOMAIN".into(),
        7 => "YXRRSET".into(),
        8 => "NXRRSET".into(),
        9 => "NOTAUTH".into(),
        10 => "NOTZONE".into(),
        other => format!("RCODE{other}"),
    }
}

/// The mnemonic of a TSIG error (RFC 8945 §3).
pub fn tsig_error_name(code: u16) -> String {
    match code {
        16 => "BADSIG".into(),
        17 => "BADKEY".into(),
        18 => "BADTIME".into(),
        22 => "BADTRUNC".into(),
        other => format!("TSIG error {other}"),
    }
}

/// One resource record of a reply, in presentation-like form (serialized as the Lua entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplyRecord {
    /// Owner name, lower case, no trailing dot.
    pub name: String,
    /// `TXT`, `SOA`, ...
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: u32,
    /// TXT: the character-strings joined (RFC 8555 §8.4 compares the joined value); SOA: the
    /// MNAME; NS: the host; A/AAAA: the address; other types: hickory's presentation form.
    pub data: String,
}

/// What the TSIG RR of a reply says (RFC 8945 §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsigSummary {
    pub key_name: String,
    /// TSIG error; 0 when none.
    pub error: u16,
    pub mac_len: usize,
}

/// A decoded reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub id: u16,
    /// The 4-bit header RCODE (no EDNS is sent, so no extended RCODE comes back).
    pub rcode: u16,
    pub opcode_update: bool,
    pub truncated: bool,
    pub authoritative: bool,
    /// The question (or, for UPDATE, the zone section) echoed back.
    pub question: Option<(String, RecordType)>,
    pub answers: Vec<ReplyRecord>,
    pub authorities: Vec<ReplyRecord>,
    pub tsig: Option<TsigSummary>,
}

impl Reply {
    pub fn rcode_name(&self) -> String {
        rcode_name(self.rcode)
    }

    /// The zone cut this reply names: the owner of an SOA in the answer (the name is the apex)
    /// or in the authority section (negative answers, RFC 2308 §3).
    pub fn soa_owner(&self) -> Option<&str> {
        self.answers
            .iter()
            .chain(self.authorities.iter())
            .find(|r| r.rtype == "SOA")
            .map(|r| r.name.as_str())
    }

    /// TXT values at `name` in the answer section.
    pub fn txt_values(&self, name: &str) -> Vec<String> {
        let want = name.trim_end_matches('.').to_ascii_lowercase();
        self.answers
            .iter()
            .filter(|r| r.rtype == "TXT" && r.name == want)
            .map(|r| r.data.clone())
            .collect()
    }
}

fn record_summary(record: &Record) -> ReplyRecord {
    let data = match &record.data {
        RData::TXT(txt) => {
            let mut joined = Vec::new();
            for piece in txt.txt_data.iter() {
                joined.extend_from_slice(piece);
            }
            String::from_utf8_lossy(&joined).into_owned()
        }
        RData::SOA(soa) => name_text(&soa.mname),
        RData::NS(ns) => name_text(&ns.0),
        other => other.to_string(),
    };
    ReplyRecord {
        name: name_text(&record.name),
        rtype: record.record_type().to_string(),
        ttl: record.ttl,
        data,
    }
}

/// Decodes a reply. Only checks that it is a well-formed response; matching it to a request
/// and verifying its TSIG are the caller's (see `Request`).
pub fn parse_reply(bytes: &[u8]) -> Result<Reply, DnsError> {
    let message = Message::from_vec(bytes).map_err(|e| DnsError::Malformed(e.to_string()))?;
    let meta = &message.metadata;
    if meta.message_type != MessageType::Response {
        return Err(DnsError::Malformed(
            "the message is a query, not a response".into(),
        ));
    }
    let mut tsig = None;
    let mut additionals = message.additionals.iter().peekable();
    while let Some(r) = additionals.next() {
        if let RData::TSIG(t) = &r.data {
            // RFC 8945 §5.1: the TSIG RR is the last record of the additional section.
            if additionals.peek().is_some() {
                return Err(DnsError::Malformed(
                    "TSIG record is not the last record".into(),
                ));
            }
            tsig = Some(TsigSummary {
                key_name: name_text(&r.name),
                error: t.error.map(u16::from).unwrap_or(0),
                mac_len: t.mac.len(),
            });
        }
    }
    Ok(Reply {
        id: meta.id,
        rcode: u16::from(meta.response_code) & 0x000f,
        opcode_update: meta.op_code == OpCode::Update,
        truncated: meta.truncation,
        authoritative: meta.authoritative,
        question: message
            .queries
            .first()
            .map(|q| (name_text(q.name()), q.query_type())),
        answers: message.answers.iter().map(record_summary).collect(),
        authorities: message.authorities.iter().map(record_summary).collect(),
        tsig,
    })
}

/// The operator's reading of an UPDATE reply's RCODE and TSIG error (RFC 2136 §2.2,
/// RFC 8945 §5.3.2); `None` for NOERROR.
pub fn update_failure(rcode: u16, tsig_error: u16) -> Option<DnsError> {
    let tsig = (tsig_error != 0).then(|| tsig_error_name(tsig_error));
    let meaning = match (rcode, tsig_error) {
        (0, 0) => return None,
        (_, 16) => "the server rejected the TSIG signature: wrong secret or algorithm for the key",
        (_, 17) => "the server does not know this TSIG key name with this algorithm",
        (_, 18) => "the clocks of this host and the server differ by more than the TSIG fudge",
        (9, _) => "the server is not authoritative for the zone or does not accept this key for it",
        (5, _) => {
            "the server refused the update: check allow-update / update-policy for the key and zone"
        }
        (2, _) => "the server failed to apply the update",
        (10, _) => "the record name is not within the zone",
        (1, _) => "the server could not parse the update",
        (4, _) => "the server does not implement dynamic updates",
        (3, _) | (6, _) | (7, _) | (8, _) => "an update prerequisite was not met",
        _ => "the update failed",
    };
    Some(DnsError::Rejected {
        rcode: rcode_name(rcode),
        tsig_error: tsig,
        meaning: meaning.into(),
    })
}
