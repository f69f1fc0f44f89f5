//! dns-persist-01 (draft-ietf-acme-dns-persist-01): a TXT record at
//! `_validation-persist.<name>` that names the CA (one of the challenge's
//! `issuer-domain-names`) and the ACME account, published once and checked by the CA at every
//! validation. The record value is an RFC 8659 §4 `issue-value`:
//! `<issuer-domain-name>; accounturi=<account URL>[; policy=wildcard][; persistUntil=<unix>]`.
//!
//! Nothing here does I/O: the caller asks DNS and passes the TXT strings in.

/// The label in front of the name (draft "The dns-persist-01 Challenge": the record name).
pub const RECORD_LABEL: &str = "_validation-persist";

/// What the record must carry for one account, CA and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersistRecord {
    pub issuer: String,
    pub account_uri: String,
    /// `policy=wildcard`: the record also authorizes `*.<name>` (and names below it).
    pub wildcard: bool,
    /// `persistUntil`: the CA must not use the record after this Unix time.
    pub persist_until: Option<i64>,
}

/// A record value as found in DNS, parsed as the CA parses it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedRecord {
    pub issuer: String,
    pub account_uri: Option<String>,
    pub wildcard: bool,
    pub persist_until: Option<i64>,
}

/// The record name for an identifier: wildcard names use their base (`*.` dropped).
pub fn record_name(name: &str) -> String {
    let base = name.strip_prefix("*.").unwrap_or(name);
    format!("{RECORD_LABEL}.{}", base.trim_end_matches('.'))
}

/// RFC 8659 §4.2 `value`: printable ASCII without `;` and without white space.
fn value_ok(v: &str) -> bool {
    !v.is_empty() && v.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b';')
}

/// An issuer domain name as the challenge object lists it: a DNS name in the ASCII form (the
/// draft requires the A-label form, lower case is what CAs send; compared case-insensitively).
pub fn issuer_is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && !name.ends_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && name.split('.').all(|l| !l.is_empty() && l.len() <= 63)
}

impl PersistRecord {
    /// Checks the parts before they are put into a record.
    pub fn new(
        issuer: &str,
        account_uri: &str,
        wildcard: bool,
        persist_until: Option<i64>,
    ) -> Result<PersistRecord, String> {
        if !issuer_is_valid(issuer) {
            return Err(format!(
                "invalid issuer domain name \"{}\"",
                issuer.escape_default()
            ));
        }
        if !value_ok(account_uri) {
            return Err(format!(
                "account uri \"{}\" cannot be put into a dns-persist-01 record",
                account_uri.escape_default()
            ));
        }
        if let Some(t) = persist_until {
            if t < 0 {
                return Err(format!("persist_until {t} is negative"));
            }
        }
        Ok(PersistRecord {
            issuer: issuer.to_ascii_lowercase(),
            account_uri: account_uri.to_string(),
            wildcard,
            persist_until,
        })
    }

    /// The TXT value (RFC 8659 §4.2 `issue-value` syntax, `; ` between the parts).
    pub fn value(&self) -> String {
        let mut v = format!("{}; accounturi={}", self.issuer, self.account_uri);
        if self.wildcard {
            v.push_str("; policy=wildcard");
        }
        if let Some(t) = self.persist_until {
            v.push_str(&format!("; persistUntil={t}"));
        }
        v
    }
}

fn trim_wsp(s: &str) -> &str {
    s.trim_matches(|c| c == ' ' || c == '\t')
}

/// Parses one TXT string: the issuer domain name, then `tag=value` parameters; tags are
/// case-insensitive (RFC 8659 §4.2), a duplicate tag or an empty parameter is an error, a
/// `policy` other than `wildcard` counts as absent (the draft's rule for unknown policies).
pub fn parse(txt: &str) -> Result<ParsedRecord, String> {
    let mut parts = txt.split(';');
    let issuer = trim_wsp(parts.next().unwrap_or_default());
    if issuer.is_empty() {
        return Err("no issuer domain name".into());
    }
    let mut out = ParsedRecord {
        issuer: issuer.to_ascii_lowercase(),
        ..ParsedRecord::default()
    };
    let mut seen: Vec<String> = Vec::new();
    for param in parts {
        let param = trim_wsp(param);
        if param.is_empty() {
            return Err("empty parameter or trailing semicolon".into());
        }
        let (tag, value) = param
            .split_once('=')
            .ok_or_else(|| format!("parameter \"{}\" is not tag=value", param.escape_default()))?;
        let (tag, value) = (trim_wsp(tag).to_ascii_lowercase(), trim_wsp(value));
        if tag.is_empty() {
            return Err(format!(
                "parameter \"{}\" has an empty tag",
                param.escape_default()
            ));
        }
        if seen.contains(&tag) {
            return Err(format!("duplicate parameter {tag}"));
        }
        seen.push(tag.clone());
        if !value.is_empty() && !value_ok(value) {
            return Err(format!(
                "malformed value \"{}\" for {tag}",
                value.escape_default()
            ));
        }
        match tag.as_str() {
            "accounturi" => {
                if value.is_empty() {
                    return Err("empty accounturi".into());
                }
                out.account_uri = Some(value.to_string());
            }
            "policy" => out.wildcard = value.eq_ignore_ascii_case("wildcard"),
            "persistuntil" => {
                out.persist_until = Some(value.parse::<i64>().map_err(|_| {
                    format!("malformed persistUntil \"{}\"", value.escape_default())
                })?)
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Why the TXT strings of `_validation-persist.<name>` do not authorize `want` at `now`
/// (the checks the CA makes, in its order), or `Ok` when one of them does. `issuers` are the
/// challenge's `issuer-domain-names`; a record naming another CA is ignored.
pub fn check(
    txts: &[String],
    issuers: &[String],
    want: &PersistRecord,
    now: i64,
) -> Result<(), String> {
    if txts.is_empty() {
        return Err("no TXT record".into());
    }
    let mut reasons = Vec::new();
    let mut for_us = 0;
    for txt in txts {
        let parsed = match parse(txt) {
            Ok(p) => p,
            Err(e) => {
                let issuer = trim_wsp(txt.split(';').next().unwrap_or_default());
                if issuers.iter().any(|i| i.eq_ignore_ascii_case(issuer)) {
                    for_us += 1;
                    reasons.push(format!("\"{}\": {e}", txt.escape_default()));
                }
                continue;
            }
        };
        if !issuers
            .iter()
            .any(|i| i.eq_ignore_ascii_case(&parsed.issuer))
        {
            continue;
        }
        for_us += 1;
        let reason = match &parsed.account_uri {
            None => "no accounturi".to_string(),
            Some(a) if *a != want.account_uri => format!("accounturi is {a}"),
            _ if want.wildcard && !parsed.wildcard => "no policy=wildcard".to_string(),
            _ => match parsed.persist_until {
                Some(t) if now > t => format!("persistUntil {t} has passed"),
                _ => return Ok(()),
            },
        };
        reasons.push(format!("\"{}\": {reason}", txt.escape_default()));
    }
    if for_us == 0 {
        return Err(format!(
            "no TXT record names the CA ({})",
            issuers.join(", ")
        ));
    }
    Err(reasons.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCT: &str = "https://ca.test/acme/acct/1";

    fn want(wildcard: bool) -> PersistRecord {
        PersistRecord::new("ca.test", ACCT, wildcard, None).unwrap()
    }

    #[test]
    fn names_and_values() {
        assert_eq!(
            record_name("example.com"),
            "_validation-persist.example.com"
        );
        assert_eq!(
            record_name("*.example.com"),
            "_validation-persist.example.com"
        );
        assert_eq!(
            want(false).value(),
            "ca.test; accounturi=https://ca.test/acme/acct/1"
        );
        let r = PersistRecord::new("CA.test", ACCT, true, Some(1_900_000_000)).unwrap();
        assert_eq!(
            r.value(),
            "ca.test; accounturi=https://ca.test/acme/acct/1; policy=wildcard; persistUntil=1900000000"
        );
        assert!(PersistRecord::new("ca test", ACCT, false, None).is_err());
        assert!(PersistRecord::new("ca.test", "https://x/a b", false, None).is_err());
        assert!(PersistRecord::new("ca.test", "https://x/a;b", false, None).is_err());
        assert!(PersistRecord::new("ca.test", ACCT, false, Some(-1)).is_err());
        assert!(!issuer_is_valid("ca..test"));
        assert!(!issuer_is_valid(""));
    }

    #[test]
    fn parsing() {
        let p =
            parse(" ca.test ;AccountURI=https://a/1;\tPOLICY=Wildcard ; persistuntil=5").unwrap();
        assert_eq!(p.issuer, "ca.test");
        assert_eq!(p.account_uri.as_deref(), Some("https://a/1"));
        assert!(p.wildcard);
        assert_eq!(p.persist_until, Some(5));
        assert!(
            !parse("ca.test; accounturi=x; policy=other")
                .unwrap()
                .wildcard
        );
        assert!(parse("ca.test; accounturi=x;").is_err());
        assert!(parse("ca.test; accounturi=x; accounturi=y").is_err());
        assert!(parse("ca.test; accounturi").is_err());
        assert!(parse("ca.test; persistUntil=soon").is_err());
        assert!(parse("; accounturi=x").is_err());
        // the value round-trips
        let r = PersistRecord::new("ca.test", ACCT, true, Some(7)).unwrap();
        let p = parse(&r.value()).unwrap();
        assert_eq!(p.account_uri.as_deref(), Some(ACCT));
        assert!(p.wildcard);
        assert_eq!(p.persist_until, Some(7));
    }

    #[test]
    fn checking() {
        let issuers = vec!["ca.test".to_string()];
        let ok = vec![want(true).value()];
        assert!(check(&ok, &issuers, &want(true), 0).is_ok());
        assert!(check(&ok, &issuers, &want(false), 0).is_ok());
        let e = check(&[], &issuers, &want(false), 0).unwrap_err();
        assert_eq!(e, "no TXT record");
        let other = vec!["other.ca; accounturi=https://ca.test/acme/acct/1".to_string()];
        assert_eq!(
            check(&other, &issuers, &want(false), 0).unwrap_err(),
            "no TXT record names the CA (ca.test)"
        );
        let wrong = vec!["ca.test; accounturi=https://ca.test/acme/acct/2".to_string()];
        assert!(check(&wrong, &issuers, &want(false), 0)
            .unwrap_err()
            .contains("accounturi is https://ca.test/acme/acct/2"));
        let plain = vec![want(false).value()];
        assert!(check(&plain, &issuers, &want(true), 0)
            .unwrap_err()
            .contains("no policy=wildcard"));
        let until = vec![format!("{}; persistUntil=100", want(false).value())];
        assert!(check(&until, &issuers, &want(false), 100).is_ok());
        assert!(check(&until, &issuers, &want(false), 101)
            .unwrap_err()
            .contains("persistUntil 100 has passed"));
        // one good record among bad ones is enough
        let mixed = vec![wrong[0].clone(), "ca.test; x".into(), plain[0].clone()];
        assert!(check(&mixed, &issuers, &want(false), 0).is_ok());
        let bad = vec!["ca.test; x".to_string()];
        assert!(check(&bad, &issuers, &want(false), 0)
            .unwrap_err()
            .contains("is not tag=value"));
    }
}
