//! Property tests of the parsers that read what the network or the store hands us: HTTP
//! framing, URLs, PEM and the certificate DER walk, DNS replies, file-store names and entries,
//! stored certificate entries. Hostile input must give an error, never a panic or an
//! allocation beyond the configured bounds; the hand-written DER walk must agree with OpenSSL.
//!
//! Case counts are kept small enough for `cargo test` (a few seconds per property);
//! `PROPTEST_CASES=100000 cargo test --release proptests` runs a longer campaign.

use proptest::prelude::*;

use crate::acme::Response;
use crate::blocking::CertEntry;
use crate::crypto::cert;
use crate::filestore;
use crate::httpwire::{Progress, ResponseParser, Target};

/// The config of a property: `default` cases unless $PROPTEST_CASES says how many; no
/// failure persistence files.
pub(crate) fn cases(default: u32) -> ProptestConfig {
    // PROPTEST_CASES overrides (proptest reads it into Config::default()).
    let from_env = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    ProptestConfig {
        cases: from_env.unwrap_or(default),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Feeds `input` in pieces cut at `cuts`; returns the response when it completed.
fn feed_in_pieces(
    parser: &mut ResponseParser,
    input: &[u8],
    cuts: &[usize],
) -> Result<bool, crate::httpwire::HttpError> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.push(0);
    points.push(input.len());
    points.sort_unstable();
    points.dedup();
    for w in points.windows(2) {
        if parser.feed(&input[w[0]..w[1]])? == Progress::Complete {
            return Ok(true);
        }
    }
    Ok(false)
}

fn header_name() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9-]{0,20}"
}

fn header_value() -> impl Strategy<Value = String> {
    "[ -~]{0,40}".prop_map(|v| v.trim().to_string())
}

/// A well-formed response with Content-Length or chunked framing.
/// status, headers, body, chunked, the response on the wire
type Framed = (u16, Vec<(String, String)>, Vec<u8>, bool, Vec<u8>);

fn framed_response() -> impl Strategy<Value = Framed> {
    (
        // 204 and 304 have no body whatever the framing says (RFC 9110 sections 15.3.5, 15.4.5)
        (200u16..600).prop_filter("bodyless status", |s| *s != 204 && *s != 304),
        prop::collection::vec((header_name(), header_value()), 0..8),
        prop::collection::vec(any::<u8>(), 0..2048),
        any::<bool>(),
        prop::collection::vec(1usize..300, 0..8),
    )
        .prop_filter("no framing headers of our own", |(_, h, _, _, _)| {
            h.iter().all(|(n, _)| {
                let n = n.to_ascii_lowercase();
                n != "content-length" && n != "transfer-encoding"
            })
        })
        .prop_map(|(status, headers, body, chunked, sizes)| {
            let mut wire = format!("HTTP/1.1 {status} X\r\n").into_bytes();
            for (n, v) in &headers {
                wire.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
            }
            if chunked {
                wire.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
                let mut rest = &body[..];
                let mut i = 0;
                while !rest.is_empty() {
                    let n = sizes.get(i).copied().unwrap_or(512).min(rest.len());
                    wire.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                    wire.extend_from_slice(&rest[..n]);
                    wire.extend_from_slice(b"\r\n");
                    rest = &rest[n..];
                    i += 1;
                }
                wire.extend_from_slice(b"0\r\n\r\n");
            } else {
                wire.extend_from_slice(
                    format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes(),
                );
                wire.extend_from_slice(&body);
            }
            (status, headers, body, chunked, wire)
        })
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn http_parser_never_panics_and_respects_its_bounds(
        input in prop::collection::vec(any::<u8>(), 0..4096),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
        max_body in 0usize..1024,
        is_head in any::<bool>(),
    ) {
        let mut p = ResponseParser::new(is_head, max_body, 1024);
        let done = feed_in_pieces(&mut p, &input, &cuts);
        if let Ok(false) = done {
            let _ = p.eof();
        }
        if let Some(resp) = p.response() {
            prop_assert!(resp.body.len() <= max_body);
            prop_assert!(resp.headers.len() <= crate::httpwire::MAX_HEADERS);
        }
    }

    #[test]
    fn http_parser_reads_framed_responses_split_anywhere(
        (status, headers, body, _chunked, wire) in framed_response(),
        cuts in prop::collection::vec(any::<usize>(), 0..24),
    ) {
        let mut p = ResponseParser::new(false, 4096, 64 * 1024);
        prop_assert_eq!(feed_in_pieces(&mut p, &wire, &cuts), Ok(true));
        let resp = p.finish().map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(resp.status, status);
        prop_assert_eq!(&resp.body, &body);
        for (n, v) in &headers {
            prop_assert!(resp.header_all(n).contains(&v.as_str()));
        }
    }

    #[test]
    fn http_parser_refuses_oversized_bodies_and_heads(
        (_, _, body, _, wire) in framed_response(),
    ) {
        let limit = body.len().saturating_sub(1);
        let mut p = ResponseParser::new(false, limit, 64 * 1024);
        if !body.is_empty() {
            // a body over max_body is an error, never buffered
            prop_assert!(p.feed(&wire).is_err());
        }
        let mut p = ResponseParser::new(false, 4096, 16);
        prop_assert!(p.feed(&wire).is_err());
    }

    #[test]
    fn urls_never_panic(url in "\\PC{0,80}", raw in prop::collection::vec(any::<u8>(), 0..80)) {
        let _ = Target::parse(&url);
        let _ = Target::parse(&String::from_utf8_lossy(&raw));
        if let Ok(t) = Target::parse(&format!("https://{url}")) {
            // what the transport connects to never carries the path or userinfo
            prop_assert!(!t.host_port().contains('/'));
        }
    }

    #[test]
    fn pem_and_der_readers_never_panic(
        text in "\\PC{0,300}",
        der in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let wrapped = format!(
            "{text}-----BEGIN CERTIFICATE-----\n{b64}\n-----END CERTIFICATE-----\n{text}"
        );
        for input in [text.as_bytes(), wrapped.as_bytes(), &der[..]] {
            let _ = cert::split_pem_chain(&String::from_utf8_lossy(input));
            let _ = cert::certificate_ders(input);
            let _ = cert::leaf_not_after(input);
            let _ = cert::root_issuer_cn(input);
            let _ = cert::ari_cert_id(input);
            let _ = cert::leaf_der(input);
        }
    }

    #[test]
    fn dns_replies_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
        name in "[a-z]{1,10}(\\.[a-z]{1,10}){0,3}",
    ) {
        let _ = crate::dns::parse_reply(&bytes);
        // a valid query turned into a "reply" and damaged here and there
        if let Ok(mut q) = crate::dns::build_query(7, &name, crate::dns::QueryType::Txt) {
            q[2] |= 0x80;
            for (at, b) in &flips {
                let i = at % q.len();
                q[i] ^= b;
            }
            let _ = crate::dns::parse_reply(&q);
        }
    }

    #[test]
    fn file_store_names_stay_inside_the_store(key in "\\PC{0,120}", raw in "\\PC{0,60}") {
        if let Ok(name) = filestore::file_name(&key) {
            // one path component, never a traversal, always read back as the same key
            prop_assert!(!name.is_empty() && !name.contains('/') && !name.contains('\0'));
            prop_assert!(name != "." && name != "..");
            prop_assert_eq!(filestore::key_of(&name), Some(key.clone()));
        }
        let _ = filestore::key_of(&raw);
    }

    #[test]
    fn file_store_entries_never_panic(
        content in prop::collection::vec(any::<u8>(), 0..200),
        expiry in any::<i64>(),
        value in prop::collection::vec(any::<u8>(), 1..100),
    ) {
        let _ = filestore::decode_entry(&content);
        if expiry >= 0 {
            let enc = filestore::encode_entry(expiry, &value);
            prop_assert_eq!(filestore::decode_entry(&enc), Some((expiry, &value[..])));
        }
    }

    #[test]
    fn stored_certificate_entries_never_panic(text in "\\PC{0,300}", doc in json_value()) {
        let _ = CertEntry::from_json(&text);
        let _ = CertEntry::from_json(&doc.to_string());
    }
}

/// Any JSON document, nested a few levels.
pub(crate) fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or(Value::Null)),
        "\\PC{0,30}".prop_map(Value::String),
        prop_oneof![
            Just("valid"),
            Just("pending"),
            Just("ready"),
            Just("processing"),
            Just("invalid"),
            Just("http-01"),
            Just("dns-01"),
            Just("tls-alpn-01"),
            Just("dns"),
            Just("ip"),
            Just("urn:ietf:params:acme:error:badNonce"),
            Just("https://ca.test/x"),
            Just("2026-12-01T16:00:00Z"),
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((json_key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,12}",
        prop_oneof![
            Just("status"),
            Just("type"),
            Just("value"),
            Just("identifier"),
            Just("identifiers"),
            Just("challenges"),
            Just("authorizations"),
            Just("finalize"),
            Just("certificate"),
            Just("url"),
            Just("token"),
            Just("error"),
            Just("detail"),
            Just("subproblems"),
            Just("expires"),
            Just("wildcard"),
            Just("newNonce"),
            Just("newAccount"),
            Just("newOrder"),
            Just("revokeCert"),
            Just("keyChange"),
            Just("renewalInfo"),
            Just("meta"),
            Just("externalAccountRequired"),
            Just("profiles"),
            Just("suggestedWindow"),
            Just("start"),
            Just("end"),
            Just("explanationURL"),
            Just("domain"),
            Just("pkey"),
            Just("cert"),
            Just("updated"),
        ]
        .prop_map(String::from),
    ]
}

/// A response with arbitrary status, headers and body for the ACME readers.
pub(crate) fn hostile_response() -> impl Strategy<Value = Response> {
    (
        0u16..1000,
        prop::collection::vec(
            (
                prop_oneof![
                    Just("Content-Type".to_string()),
                    Just("Link".to_string()),
                    Just("Location".to_string()),
                    Just("Retry-After".to_string()),
                    Just("Replay-Nonce".to_string()),
                    header_name(),
                ],
                prop_oneof![
                    Just("application/json".to_string()),
                    Just("application/problem+json".to_string()),
                    Just("<https://ca.test/a>;rel=\"alternate\"".to_string()),
                    "\\PC{0,60}",
                ],
            ),
            0..6,
        ),
        prop_oneof![
            json_value().prop_map(|v| v.to_string().into_bytes()),
            prop::collection::vec(any::<u8>(), 0..200),
        ],
    )
        .prop_map(|(status, headers, body)| Response {
            status,
            headers,
            body,
        })
}

// -------------------------------------------------------------- DER walk vs OpenSSL

mod der_vs_openssl {
    use super::*;
    use openssl::asn1::{Asn1Integer, Asn1Time};
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509NameBuilder, X509};

    fn openssl_unix(t: &openssl::asn1::Asn1TimeRef) -> i64 {
        let epoch = Asn1Time::from_unix(0).expect("epoch");
        let d = epoch.diff(t).expect("diff");
        i64::from(d.days) * 86400 + i64::from(d.secs)
    }

    proptest! {
        #![proptest_config(cases(48))]

        /// Every generated certificate: v1 or v3, serials of 1 to 20 bytes, long names (long
        /// DER lengths), UTCTime and GeneralizedTime validity: the DER walk's notAfter is
        /// OpenSSL's.
        #[test]
        fn leaf_not_after_agrees_with_openssl(
            v3 in any::<bool>(),
            serial in prop::collection::vec(any::<u8>(), 1..20),
            cn in "[a-z]{1,60}",
            org in "[A-Za-z]{1,60}",
            orgs in 0usize..5,
            not_before in -631_152_000i64..4_102_444_800,
            life in 1i64..3_000_000_000,
            sans in prop::collection::vec("[a-z]{1,20}\\.test", 0..12),
        ) {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("group");
            let key = PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey");
            let mut name = X509NameBuilder::new().expect("name");
            name.append_entry_by_text("CN", &cn).expect("cn");
            // up to five 60-byte entries: names past 255 bytes take two length octets
            for _ in 0..orgs {
                name.append_entry_by_text("O", &org).expect("o");
            }
            let name = name.build();
            let mut b = X509::builder().expect("builder");
            b.set_version(if v3 { 2 } else { 0 }).expect("version");
            let mut serial = serial;
            serial[0] &= 0x7f;
            serial[0] |= 0x01;
            let bn = BigNum::from_slice(&serial).expect("bn");
            b.set_serial_number(&Asn1Integer::from_bn(&bn).expect("serial")).expect("serial");
            b.set_subject_name(&name).expect("subject");
            b.set_issuer_name(&name).expect("issuer");
            b.set_pubkey(&key).expect("pubkey");
            let not_after = (not_before + life).min(253_402_300_799);
            b.set_not_before(&Asn1Time::from_unix(not_before).expect("nb")).expect("nb");
            b.set_not_after(&Asn1Time::from_unix(not_after).expect("na")).expect("na");
            if v3 && !sans.is_empty() {
                let mut san = SubjectAlternativeName::new();
                for s in &sans {
                    san.dns(s);
                }
                let ext = san.build(&b.x509v3_context(None, None)).expect("san");
                b.append_extension(ext).expect("ext");
            }
            b.sign(&key, MessageDigest::sha256()).expect("sign");
            let cert = b.build();
            let pem = cert.to_pem().expect("pem");
            let ours = cert::leaf_not_after(&pem).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(ours, openssl_unix(cert.not_after()));
            prop_assert_eq!(ours, not_after);
            // and the full parse agrees too
            let info = cert::parse_chain(&pem).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(info[0].not_after, ours);
        }

        /// Damaged certificates: the DER walk errors or agrees with OpenSSL, never panics.
        #[test]
        fn damaged_certificates_never_panic(
            flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..6),
            cut in any::<usize>(),
        ) {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("group");
            let key = PKey::from_ec_key(EcKey::generate(&group).expect("key")).expect("pkey");
            let mut b = X509::builder().expect("builder");
            b.set_version(2).expect("version");
            b.set_pubkey(&key).expect("pubkey");
            b.set_not_before(&Asn1Time::days_from_now(0).expect("nb")).expect("nb");
            b.set_not_after(&Asn1Time::days_from_now(90).expect("na")).expect("na");
            b.sign(&key, MessageDigest::sha256()).expect("sign");
            let mut der = b.build().to_der().expect("der");
            for (at, x) in &flips {
                let i = at % der.len();
                der[i] ^= x;
            }
            der.truncate(cut % (der.len() + 1));
            use base64::Engine;
            let pem = format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                base64::engine::general_purpose::STANDARD.encode(&der)
            );
            let ours = cert::leaf_not_after(pem.as_bytes());
            if let (Ok(t), Ok(c)) = (&ours, X509::from_der(&der)) {
                prop_assert_eq!(*t, openssl_unix(c.not_after()));
            }
        }
    }
}
