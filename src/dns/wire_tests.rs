//! Vectors captured from BIND 9.18 (Debian 12): `nsupdate -y hmac-<alg>:acme-key.:<secret>`
//! sending `update add _acme-challenge.example.test. 60 TXT "abc...EFG"` for zone example.test,
//! and `named`'s replies (a NOERROR signed with the key, and a NOTAUTH/BADSIG to a wrong secret).
use super::tsig::{signed_data, split_tsig};
use super::*;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{SOA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

const SECRET_256: &str = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=";
const SECRET_512: &str =
    "YW5vdGhlci1zZWNyZXQtZm9yLWhtYWMtc2hhNTEyLXRlc3QtdmVjdG9yLTAxMjM0NTY3ODlhYmNkZWZnaGlq";
const VALUE: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

/// nsupdate, hmac-sha256, id 0x077a, time 0x6b06def0.
const NSUPDATE_256: &str = "077a28000001000000010001076578616d706c65047465737400000600010f5f61636d652d6368616c6c656e6765c00c001000010000003c002c2b6162636465666768696a6b6c6d6e6f707172737475767778797a30313233343536373839414243444546470861636d652d6b65790000fa00ff00000000003d0b686d61632d7368613235360000006b06def0012c0020ffc559f1e7271392b64099ec172c84d897abfee8de52550ac186b9c1461e22a1077a00000000";
/// nsupdate, hmac-sha512, id 0x9bd2, time 0x6b06def2.
const NSUPDATE_512: &str = "9bd228000001000000010001076578616d706c65047465737400000600010f5f61636d652d6368616c6c656e6765c00c001000010000003c002c2b6162636465666768696a6b6c6d6e6f707172737475767778797a30313233343536373839414243444546470861636d652d6b65790000fa00ff00000000005d0b686d61632d7368613531320000006b06def2012c004021868f7bf324b85da74c3e97ed5941c1b6b28e8b1555f64f2b6c59211d5a2a8cbd0209884c512db9aad90f063ef5f487b9d823522360514a9bd93a90468d2e7a9bd200000000";
/// A request (id 0xa3d0, time 0x6b06defb) and named's signed NOERROR reply.
const EXCHANGE_REQ: &str = "a3d028000001000000010001076578616d706c65047465737400000600010f5f61636d652d6368616c6c656e6765c00c001000010000003c002c2b6162636465666768696a6b6c6d6e6f707172737475767778797a30313233343536373839414243444546470861636d652d6b65790000fa00ff00000000003d0b686d61632d7368613235360000006b06defb012c002057b036f7aec234885aacc35b1d6d5bb4476dc25e18686d208ca966825dbe1d36a3d000000000";
const EXCHANGE_REPLY: &str = "a3d0a8000001000000000001076578616d706c65047465737400000600010861636d652d6b65790000fa00ff00000000003d0b686d61632d7368613235360000006b06defb012c00201fbf6ca0f83f3bb6762d90178cc65a2cb19669720b0613814cbcb094c7ff09cca3d000000000";
/// named's unsigned NOTAUTH reply with TSIG error BADSIG (id 0x9ddc, time 0x6b06defc) to an
/// update signed with the wrong secret.
const BADSIG_REPLY: &str = "9ddca8090001000000000001076578616d706c65047465737400000600010861636d652d6b65790000fa00ff00000000001d0b686d61632d7368613235360000006b06defc012c00009ddc00100000";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn key256() -> TsigKey {
    TsigKey::new("acme-key.", "hmac-sha256", SECRET_256).unwrap()
}

fn add_op() -> UpdateOp {
    UpdateOp::AddTxt {
        name: "_acme-challenge.example.test".into(),
        value: VALUE.into(),
        ttl: 60,
    }
}

#[test]
fn tsig_mac_matches_nsupdate_sha256_and_sha512() {
    for (pkt, alg, secret) in [
        (NSUPDATE_256, "hmac-sha256", SECRET_256),
        (NSUPDATE_512, "hmac-sha512", SECRET_512),
    ] {
        let bytes = unhex(pkt);
        let key = TsigKey::new("acme-key", alg, secret).unwrap();
        let split = split_tsig(&bytes).unwrap().unwrap();
        let tbs = signed_data(&split, None).unwrap();
        let mac = crate::crypto::digest::hmac(&alg[5..], &base64_decode(secret), &tbs).unwrap();
        assert_eq!(mac, split.tsig.mac, "{alg}");
        assert_eq!(key.name(), "acme-key");
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

#[test]
fn signing_reproduces_nsupdate_bytes() {
    for (pkt, alg, secret, id, time) in [
        (NSUPDATE_256, "hmac-sha256", SECRET_256, 0x077a, 0x6b06def0),
        (NSUPDATE_512, "hmac-sha512", SECRET_512, 0x9bd2, 0x6b06def2),
    ] {
        let key = TsigKey::new("acme-key.", alg, secret).unwrap();
        let req = Request::update(id, "example.test", &[add_op()], Some(&key), time).unwrap();
        assert_eq!(hex(req.bytes()), pkt, "{alg}");
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn signed_reply_from_named_verifies() {
    let key = key256();
    let req = Request::update(0xa3d0, "example.test", &[add_op()], Some(&key), 0x6b06defb).unwrap();
    assert_eq!(hex(req.bytes()), EXCHANGE_REQ);
    let reply = unhex(EXCHANGE_REPLY);
    let ok = req.finish(&reply, 0x6b06defb + 10).unwrap();
    assert_eq!(ok.rcode_name(), "NOERROR");
    assert_eq!(ok.tsig.as_ref().unwrap().key_name, "acme-key");
    assert!(ok.opcode_update);

    // the reply's MAC chains to the request MAC (RFC 8945 §4.3.1)
    let req_bytes = unhex(EXCHANGE_REQ);
    let split = split_tsig(&req_bytes).unwrap().unwrap();
    assert_eq!(
        verify_reply(&reply, &key, &split.tsig.mac, 0x6b06defb).unwrap(),
        ReplyTsig::Verified
    );
    let err = verify_reply(&reply, &key, &[0u8; 32], 0x6b06defb).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");

    // clock skew beyond the fudge
    let err = req.finish(&reply, 0x6b06defb + 301).unwrap_err();
    assert!(err.to_string().contains("fudge 300s"), "{err}");

    // a flipped bit in the reply header
    let mut bad = reply.clone();
    bad[3] ^= 0x80;
    assert!(matches!(
        req.finish(&bad, 0x6b06defb),
        Err(DnsError::Tsig(_))
    ));

    // the same reply checked with another secret
    let other = TsigKey::new("acme-key.", "hmac-sha256", "d3JvbmdzZWNyZXQ=").unwrap();
    let req2 = Request::update(
        0xa3d0,
        "example.test",
        &[add_op()],
        Some(&other),
        0x6b06defb,
    )
    .unwrap();
    assert!(matches!(
        req2.finish(&reply, 0x6b06defb),
        Err(DnsError::Tsig(_))
    ));

    // stripping the TSIG RR from a NOERROR reply makes it untrusted
    let mut unsigned = reply[..split_tsig(&reply).unwrap().unwrap().before_tsig.len()].to_vec();
    unsigned[11] = 0;
    let err = req.finish(&unsigned, 0x6b06defb).unwrap_err();
    assert!(err.to_string().contains("unsigned NOERROR"), "{err}");
}

#[test]
fn badsig_reply_is_reported_with_rcode_and_tsig_error() {
    let wrong = TsigKey::new("acme-key.", "hmac-sha256", "d3JvbmdzZWNyZXQ=").unwrap();
    let op = UpdateOp::AddTxt {
        name: "_acme-challenge.example.test".into(),
        value: "x".into(),
        ttl: 60,
    };
    let req = Request::update(0x9ddc, "example.test", &[op], Some(&wrong), 0x6b06defc).unwrap();
    let reply = unhex(BADSIG_REPLY);
    let parsed = parse_reply(&reply).unwrap();
    assert_eq!(parsed.rcode_name(), "NOTAUTH");
    assert_eq!(parsed.tsig.as_ref().unwrap().error, 16);
    let err = req.finish(&reply, 0x6b06defc).unwrap_err();
    match &err {
        DnsError::Rejected {
            rcode, tsig_error, ..
        } => {
            assert_eq!(rcode, "NOTAUTH");
            assert_eq!(tsig_error.as_deref(), Some("BADSIG"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().starts_with("NOTAUTH/BADSIG: "), "{err}");
    // the reply id must match the request
    let req2 = Request::update(0x1234, "example.test", &[add_op()], Some(&wrong), 1).unwrap();
    assert!(matches!(req2.accepts(&reply), Err(DnsError::Malformed(_))));
}

#[test]
fn update_message_structure() {
    let ops = [
        add_op(),
        UpdateOp::DeleteTxt {
            name: "_acme-challenge.example.test.".into(),
            value: VALUE.into(),
        },
        UpdateOp::DeleteTxtRrset {
            name: "_ACME-challenge.Example.Test".into(),
        },
    ];
    let bytes = build_update(7, "example.test.", &ops).unwrap();
    let m = Message::from_vec(&bytes).unwrap();
    assert_eq!(m.metadata.id, 7);
    assert_eq!(m.metadata.op_code, OpCode::Update);
    assert_eq!(m.metadata.message_type, MessageType::Query);
    assert!(!m.metadata.recursion_desired);
    // zone section: the zone, class IN, type SOA (RFC 2136 §2.3)
    assert_eq!(m.queries.len(), 1);
    assert_eq!(m.queries[0].query_type(), RecordType::SOA);
    assert_eq!(m.queries[0].query_class(), DNSClass::IN);
    assert_eq!(m.queries[0].name().to_ascii(), "example.test.");
    assert!(m.answers.is_empty(), "no prerequisites");
    let u = &m.authorities;
    assert_eq!(u.len(), 3);
    // §2.5.1 add: class IN, the TTL, the TXT RDATA
    assert_eq!(u[0].dns_class, DNSClass::IN);
    assert_eq!(u[0].ttl, 60);
    assert!(matches!(&u[0].data, RData::TXT(t) if t.txt_data[0].as_ref() == VALUE.as_bytes()));
    // §2.5.4 delete an RR: class NONE, TTL 0, same RDATA
    assert_eq!(u[1].dns_class, DNSClass::NONE);
    assert_eq!(u[1].ttl, 0);
    assert!(matches!(&u[1].data, RData::TXT(_)));
    // §2.5.2 delete an RRset: class ANY, TTL 0, type TXT, no RDATA
    assert_eq!(u[2].dns_class, DNSClass::ANY);
    assert_eq!(u[2].ttl, 0);
    assert_eq!(u[2].record_type(), RecordType::TXT);
    assert!(matches!(u[2].data, RData::Update0(RecordType::TXT)));

    // a long value is split in 255-octet character-strings
    let long = "v".repeat(300);
    let bytes = build_update(
        8,
        "example.test",
        &[UpdateOp::AddTxt {
            name: "a.example.test".into(),
            value: long.clone(),
            ttl: 1,
        }],
    )
    .unwrap();
    let m = Message::from_vec(&bytes).unwrap();
    let RData::TXT(t) = &m.authorities[0].data else {
        panic!("not TXT")
    };
    assert_eq!(t.txt_data.len(), 2);
    assert_eq!(t.txt_data[0].len(), 255);
}

#[test]
fn update_input_is_checked() {
    let e = build_update(1, "example.test", &[]).unwrap_err();
    assert!(e.to_string().contains("at least one change"));
    let e = build_update(
        1,
        "example.test",
        &[UpdateOp::DeleteTxtRrset {
            name: "_acme-challenge.example.org".into(),
        }],
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid input: _acme-challenge.example.org is not within zone example.test"
    );
    assert!(build_update(
        1,
        "example.test",
        &[UpdateOp::AddTxt {
            name: "a.example.test".into(),
            value: String::new(),
            ttl: 1
        }]
    )
    .is_err());
    assert!(parse_name("").is_err());
    assert!(parse_name(".").is_err());
    assert!(parse_name("a b.example").is_err());
    assert!(parse_name("é.example").is_err());
    assert!(parse_name(&format!("{}.example", "a".repeat(64))).is_err());
}

#[test]
fn keys_and_algorithms() {
    let k = key256();
    assert_eq!(k.algorithm(), TsigAlgorithm::HmacSha256);
    let dbg = format!("{k:?}");
    assert!(dbg.contains("redacted") && !dbg.contains(SECRET_256) && !dbg.contains("115, 101"));
    assert_eq!(
        TsigAlgorithm::parse("HMAC-SHA512.").unwrap(),
        TsigAlgorithm::HmacSha512
    );
    let e = TsigKey::new("k", "hmac-md5", SECRET_256).unwrap_err();
    assert!(e.to_string().contains("unsupported tsig algorithm"), "{e}");
    let e = TsigKey::new("k", "hmac-sha256", "!!!").unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid input: tsig secret is not valid base64"
    );
    assert!(TsigKey::new("k", "hmac-sha256", "").is_err());
    // unpadded base64 is accepted too
    assert!(TsigKey::new("k", "hmac-sha256", SECRET_256.trim_end_matches('=')).is_ok());
}

fn reply_to(req_bytes: &[u8], rcode: ResponseCode, build: impl FnOnce(&mut Message)) -> Vec<u8> {
    let q = Message::from_vec(req_bytes).unwrap();
    let mut m = Message::response(q.metadata.id, q.metadata.op_code);
    m.metadata.authoritative = true;
    m.metadata.response_code = rcode;
    m.queries = q.queries.clone();
    build(&mut m);
    m.to_vec().unwrap()
}

#[test]
fn query_and_reply_parsing() {
    let req = Request::query_with_id(42, "_acme-challenge.Example.test", QueryType::Txt).unwrap();
    let m = Message::from_vec(req.bytes()).unwrap();
    assert_eq!(m.metadata.id, 42);
    assert_eq!(m.metadata.op_code, OpCode::Query);
    assert!(!m.metadata.recursion_desired);
    assert_eq!(m.queries[0].query_type(), RecordType::TXT);
    assert!(!req.needs_tcp());

    let name = Name::from_ascii("_acme-challenge.example.test.").unwrap();
    let reply = reply_to(req.bytes(), ResponseCode::NoError, |m| {
        for v in ["one", "two"] {
            m.add_answer(Record::from_rdata(
                name.clone(),
                60,
                RData::TXT(TXT::new(vec![v.into(), "x".into()])),
            ));
        }
    });
    let r = req.finish(&reply, 0).unwrap();
    assert_eq!(r.rcode_name(), "NOERROR");
    assert!(r.authoritative && !r.truncated);
    assert_eq!(
        r.txt_values("_acme-challenge.example.test."),
        vec!["onex".to_string(), "twox".to_string()]
    );
    assert_eq!(r.answers[0].rtype, "TXT");
    assert_eq!(r.answers[0].ttl, 60);

    // negative answer: the SOA in the authority section names the zone (RFC 2308 §3)
    let zone = Name::from_ascii("example.test.").unwrap();
    let soa = SOA::new(
        Name::from_ascii("ns1.example.test.").unwrap(),
        Name::from_ascii("hostmaster.example.test.").unwrap(),
        1,
        3600,
        600,
        86400,
        60,
    );
    let reply = reply_to(req.bytes(), ResponseCode::NXDomain, |m| {
        m.add_authority(Record::from_rdata(zone.clone(), 60, RData::SOA(soa)));
    });
    let r = req.finish(&reply, 0).unwrap();
    assert_eq!(r.rcode_name(), "NXDOMAIN");
    assert_eq!(r.soa_owner(), Some("example.test"));
    assert_eq!(r.authorities[0].data, "ns1.example.test");
    assert!(r.txt_values("_acme-challenge.example.test").is_empty());

    // a reply for another question or id is not accepted
    let other = Request::query_with_id(42, "other.example.test", QueryType::Txt).unwrap();
    assert!(other.accepts(&reply).is_err());
    let other = Request::query_with_id(43, "_acme-challenge.example.test", QueryType::Txt).unwrap();
    assert!(other.accepts(&reply).is_err());
    // a query is not a reply; garbage is malformed
    assert!(req.accepts(req.bytes()).is_err());
    assert!(matches!(
        req.accepts(&[1, 2, 3]),
        Err(DnsError::Malformed(_))
    ));

    // the TC bit is reported
    let mut tc = reply.clone();
    tc[2] |= 0x02;
    assert!(req.accepts(&tc).unwrap().truncated);

    let q = Query::query(name, RecordType::SOA);
    assert_eq!(q.query_type(), RecordType::SOA);
}

#[test]
fn unsigned_update_replies_map_rcodes() {
    for (rcode, want) in [
        (
            ResponseCode::Refused,
            "REFUSED: the server refused the update",
        ),
        (ResponseCode::ServFail, "SERVFAIL: the server failed"),
        (
            ResponseCode::NotAuth,
            "NOTAUTH: the server is not authoritative",
        ),
        (
            ResponseCode::NotZone,
            "NOTZONE: the record name is not within the zone",
        ),
        (ResponseCode::FormErr, "FORMERR: "),
        (ResponseCode::NotImp, "NOTIMP: "),
    ] {
        let req = Request::update(9, "example.test", &[add_op()], Some(&key256()), 100).unwrap();
        let reply = reply_to(req.bytes(), rcode, |_| {});
        let err = req.finish(&reply, 100).unwrap_err();
        assert!(err.to_string().starts_with(want), "{rcode:?}: {err}");
        // without a key, the RCODE alone decides
        let plain = Request::update(9, "example.test", &[add_op()], None, 0).unwrap();
        assert!(plain
            .finish(&reply, 0)
            .unwrap_err()
            .to_string()
            .starts_with(want));
    }
    let plain = Request::update(9, "example.test", &[add_op()], None, 0).unwrap();
    let ok = reply_to(plain.bytes(), ResponseCode::NoError, |_| {});
    assert!(plain.finish(&ok, 0).is_ok());
    assert_eq!(rcode_name(15), "RCODE15");
    assert_eq!(tsig_error_name(17), "BADKEY");
    assert_eq!(
        update_failure(9, 18).unwrap().to_string(),
        "NOTAUTH/BADTIME: the clocks of this host and the server differ by more than the TSIG fudge"
    );
    assert!(update_failure(0, 0).is_none());
}

/// A server's signed BADTIME reply (RFC 8945 §5.2.3): the MAC chains to the request MAC, the
/// Error field is 18 and Other Data carries the server's clock.
#[test]
fn signed_badtime_reply_is_reported_as_badtime() {
    use hickory_proto::rr::rdata::tsig::{make_tsig_record, TsigAlgorithm as HA, TsigError, TSIG};
    use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

    let key = key256();
    let client_time = 1_000_000u64;
    let server_time = client_time + 3600;
    let req =
        Request::update(0x4242, "example.test", &[add_op()], Some(&key), client_time).unwrap();
    let req_mac = split_tsig(req.bytes()).unwrap().unwrap().tsig.mac;

    // a response to an UPDATE echoes only the zone section
    let unsigned = reply_to(req.bytes(), ResponseCode::NotAuth, |_| {});
    let other = server_time.to_be_bytes()[2..].to_vec();
    let tsig = TSIG::new(
        HA::HmacSha256,
        client_time,
        300,
        Vec::new(),
        0x4242,
        Some(TsigError::BadTime),
        other,
    );
    let mut tbs = Vec::new();
    tbs.extend_from_slice(&(req_mac.len() as u16).to_be_bytes());
    tbs.extend_from_slice(&req_mac);
    tbs.extend_from_slice(&unsigned);
    {
        let mut buf = Vec::new();
        let mut enc = BinEncoder::new(&mut buf);
        tsig.emit_tsig_for_mac(&mut enc, &Name::from_ascii("acme-key.").unwrap())
            .unwrap();
        tbs.extend_from_slice(&buf);
    }
    let mac = crate::crypto::digest::hmac("sha256", &base64_decode(SECRET_256), &tbs).unwrap();
    let rec = make_tsig_record(Name::from_ascii("acme-key.").unwrap(), tsig.set_mac(mac));
    let mut rr = Vec::new();
    rec.emit(&mut BinEncoder::new(&mut rr)).unwrap();
    let mut reply = unsigned.clone();
    reply[11] += 1;
    reply.extend_from_slice(&rr);

    assert_eq!(
        verify_reply(&reply, &key, &req_mac, client_time).unwrap(),
        ReplyTsig::ServerError(18)
    );
    let err = req.finish(&reply, client_time).unwrap_err();
    assert!(err.to_string().starts_with("NOTAUTH/BADTIME: "), "{err}");
    // the same reply with a tampered MAC (its last octet precedes the 12 octets of Original
    // ID, Error, Other Len and Other Data) is not believed
    let at = reply.len() - 13;
    let mut bad = reply.clone();
    bad[at] ^= 1;
    assert!(matches!(
        req.finish(&bad, client_time),
        Err(DnsError::Tsig(_))
    ));
}

#[test]
fn recursive_query_sets_rd_only_when_asked() {
    let plain = Request::query("example.com", QueryType::Soa).unwrap();
    let rd = Request::recursive_query("example.com", QueryType::Ns).unwrap();
    // header flags: octet 2, bit 0 is RD (RFC 1035 §4.1.1)
    assert_eq!(plain.bytes()[2] & 0x01, 0);
    assert_eq!(rd.bytes()[2] & 0x01, 1);
}
