//! The RFC 8555 objects as the CA sends them, read with serde. Unknown members are ignored
//! (§7.1: clients must ignore what they do not know); an unknown status is an error.
use super::{AcmeError, Identifier, Problem};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The directory object (RFC 8555 §7.1.1).
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub new_nonce: String,
    pub new_account: String,
    pub new_order: String,
    pub revoke_cert: String,
    pub key_change: Option<String>,
    /// RFC 9773 §4.
    pub renewal_info: Option<String>,
    pub terms_of_service: Option<String>,
    pub website: Option<String>,
    pub external_account_required: bool,
    /// ACME profiles (draft-ietf-acme-profiles): name → description, sorted by name.
    pub profiles: Vec<(String, String)>,
    /// The directory as received.
    pub raw: serde_json::Value,
}

/// The directory as sent; [`Directory`] is built from it once the required URLs are checked.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct DirectoryDoc {
    pub new_nonce: Option<String>,
    pub new_account: Option<String>,
    pub new_order: Option<String>,
    pub revoke_cert: Option<String>,
    pub key_change: Option<String>,
    pub renewal_info: Option<String>,
    pub meta: DirectoryMeta,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct DirectoryMeta {
    pub terms_of_service: Option<String>,
    pub website: Option<String>,
    pub external_account_required: bool,
    /// draft-ietf-acme-profiles §3: a description is text; anything else reads as none.
    pub profiles: BTreeMap<String, serde_json::Value>,
}

/// A status enum read from its JSON string, with that string back as `as_str`.
macro_rules! status {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
        pub(crate) enum $name {
            $($(#[$vm])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }
    };
}

// Statuses and their transitions: §7.1.6.

status! {
    /// Order status.
    OrderStatus {
        Pending = "pending",
        Ready = "ready",
        Processing = "processing",
        Valid = "valid",
        Invalid = "invalid",
    }
}

status! {
    /// Authorization status.
    AuthorizationStatus {
        Pending = "pending",
        Valid = "valid",
        Invalid = "invalid",
        Deactivated = "deactivated",
        Expired = "expired",
        Revoked = "revoked",
    }
}

status! {
    /// Challenge status; a challenge listed without one is `pending`.
    #[derive(Default)]
    ChallengeStatus {
        #[default]
        Pending = "pending",
        Processing = "processing",
        Valid = "valid",
        Invalid = "invalid",
    }
}

/// The order object (§7.1.3).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Order {
    pub status: OrderStatus,
    pub authorizations: Vec<String>,
    pub finalize: String,
    #[serde(default)]
    pub certificate: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub error: Option<Problem>,
}

/// The authorization object (§7.1.4).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Authorization {
    pub identifier: Identifier,
    pub status: AuthorizationStatus,
    /// The authorization is for `*.` + identifier (the identifier has no `*.`).
    #[serde(default)]
    pub wildcard: bool,
    /// Entries without a `type` or `url` are skipped: nothing can be done with them.
    #[serde(default, deserialize_with = "usable_challenges")]
    pub challenges: Vec<Challenge>,
}

/// A challenge object as listed in an authorization (§7.1.5).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Challenge {
    /// The type as sent, e.g. `http-01`; unknown types are kept for error messages.
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
    #[serde(default)]
    pub status: ChallengeStatus,
    /// §8.3, §8.4, RFC 8737 §3: the token of the three challenge types this library answers.
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub error: Option<Problem>,
    /// dns-persist-01: the CA's names a record may carry, compared in lower case.
    #[serde(
        rename = "issuer-domain-names",
        default,
        deserialize_with = "lower_case_names"
    )]
    pub issuer_domain_names: Vec<String>,
    /// dns-persist-01: the account URL the record must name.
    #[serde(rename = "accounturi", default)]
    pub account_uri: Option<String>,
}

/// Whether `v` names a challenge (a `type` and a `url`); one that does not is passed over.
fn is_challenge(v: &serde_json::Value) -> bool {
    let has_text = |k: &str| v.get(k).is_some_and(|x| x.is_string());
    has_text("type") && has_text("url")
}

fn usable_challenges<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Challenge>, D::Error> {
    Vec::<serde_json::Value>::deserialize(d)?
        .into_iter()
        .filter(is_challenge)
        .map(|v| Challenge::deserialize(v).map_err(serde::de::Error::custom))
        .collect()
}

fn lower_case_names<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    Ok(names.iter().map(|n| n.to_ascii_lowercase()).collect())
}

/// Reads `T` from `v`, or `None` when `v` is not a `T`: for members that only inform, where a
/// CA's odd value must not cost the whole object.
pub(crate) fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(v).ok())
}

/// Reads `v` as the object `noun` fetched from `url`; the error names both and the cause.
fn read<'a, T: Deserialize<'a>>(
    v: &'a serde_json::Value,
    noun: &str,
    url: &str,
) -> Result<T, AcmeError> {
    T::deserialize(v).map_err(|e| AcmeError::Malformed(format!("{noun} {url}: {e}")))
}

impl Order {
    pub fn from_json(v: &serde_json::Value, url: &str) -> Result<Order, AcmeError> {
        read(v, "order", url)
    }
}

impl Authorization {
    pub fn from_json(v: &serde_json::Value, url: &str) -> Result<Authorization, AcmeError> {
        read(v, "authorization", url)
    }
}

impl Challenge {
    /// The challenge in a reply from `url`, or `None` when the reply names none (§7.5.1 asks
    /// for the challenge object, but some servers answer `{}`).
    pub fn from_reply(v: &serde_json::Value, url: &str) -> Result<Option<Challenge>, AcmeError> {
        if is_challenge(v) {
            read(v, "challenge", url).map(Some)
        } else {
            Ok(None)
        }
    }
}
