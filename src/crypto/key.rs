//! Account and domain keys: RSA 2048/3072/4096, EC P-256/P-384.
use super::encoding::b64url;
use super::CryptoError;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::ecdsa::EcdsaSig;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, Id, PKey, PKeyRef, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use serde_json::{Map, Value};

/// Smallest RSA modulus accepted when loading a key (NIST SP 800-57 and every public CA).
const RSA_MIN_BITS: u32 = 2048;
/// Largest RSA modulus accepted when loading a key; beyond it signing gets absurdly slow.
const RSA_MAX_BITS: u32 = 8192;

/// The key types the library generates and signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// RSA with the given modulus size in bits (2048, 3072 or 4096).
    Rsa(u32),
    /// NIST P-256 (`prime256v1`), signs ES256.
    EcP256,
    /// NIST P-384 (`secp384r1`), signs ES384.
    EcP384,
}

impl KeyType {
    /// Parses the original's `create_pkey(bits, typ, curve)` arguments: `typ` is `RSA`/`rsa`
    /// or `EC`/`ecc`; `bits` defaults to 4096; `curve` accepts `prime256v1`, `P-256`,
    /// `secp384r1`, `P-384` (default P-256).
    pub fn parse(
        typ: Option<&str>,
        bits: Option<u32>,
        curve: Option<&str>,
    ) -> Result<KeyType, CryptoError> {
        let typ = typ.unwrap_or("RSA");
        match typ.to_ascii_lowercase().as_str() {
            "rsa" => {
                let bits = bits.unwrap_or(4096);
                match bits {
                    2048 | 3072 | 4096 => Ok(KeyType::Rsa(bits)),
                    _ => Err(CryptoError::UnsupportedKey(format!(
                        "rsa key size {bits} (want 2048, 3072 or 4096)"
                    ))),
                }
            }
            // `bits` means nothing for EC keys; the original ignores it too.
            "ec" | "ecc" | "ecdsa" => {
                let curve = curve.unwrap_or("prime256v1");
                match curve.to_ascii_lowercase().as_str() {
                    "prime256v1" | "p-256" | "p256" | "secp256r1" => Ok(KeyType::EcP256),
                    "secp384r1" | "p-384" | "p384" => Ok(KeyType::EcP384),
                    _ => Err(CryptoError::UnsupportedKey(format!(
                        "ec curve {curve} (want prime256v1 or secp384r1)"
                    ))),
                }
            }
            _ => Err(CryptoError::UnsupportedKey(format!(
                "key type {typ} (want rsa or ec)"
            ))),
        }
    }

    /// The storage suffix the original uses for this type: `rsa` or `ecc`.
    pub fn short_name(&self) -> &'static str {
        match self {
            KeyType::Rsa(_) => "rsa",
            KeyType::EcP256 | KeyType::EcP384 => "ecc",
        }
    }

    fn curve_nid(&self) -> Option<Nid> {
        match self {
            KeyType::Rsa(_) => None,
            KeyType::EcP256 => Some(Nid::X9_62_PRIME256V1),
            KeyType::EcP384 => Some(Nid::SECP384R1),
        }
    }
}

/// A private key with everything the protocol needs from it. A clone shares the OpenSSL key
/// (a reference count, no copy of the key material); the openssl crate's `PKey` is `Send` and
/// `Sync`, so a clone may sign on another thread.
#[derive(Clone)]
pub struct PrivateKey {
    pub(crate) pkey: PKey<Private>,
    pub(crate) kind: KeyType,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        write!(f, "PrivateKey({:?})", self.kind)
    }
}

impl PrivateKey {
    /// Generates a fresh key. RSA-4096 takes about a second: call it off the event loop.
    pub fn generate(kind: KeyType) -> Result<PrivateKey, CryptoError> {
        let pkey = match (kind, kind.curve_nid()) {
            (KeyType::Rsa(bits), _) => {
                if !matches!(bits, 2048 | 3072 | 4096) {
                    return Err(CryptoError::UnsupportedKey(format!(
                        "rsa key size {bits} (want 2048, 3072 or 4096)"
                    )));
                }
                PKey::from_rsa(Rsa::generate(bits)?)?
            }
            (_, Some(nid)) => {
                let group = EcGroup::from_curve_name(nid)?;
                PKey::from_ec_key(EcKey::generate(&group)?)?
            }
            (_, None) => {
                return Err(CryptoError::UnsupportedKey(format!("{kind:?}")));
            }
        };
        Ok(PrivateKey { pkey, kind })
    }

    /// Loads a PEM private key (PKCS#8, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`).
    pub fn from_pem(pem: &[u8]) -> Result<PrivateKey, CryptoError> {
        let text = String::from_utf8_lossy(pem);
        if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
            || text.contains("Proc-Type: 4,ENCRYPTED")
        {
            return Err(CryptoError::UnsupportedKey(
                "encrypted private keys are not supported".into(),
            ));
        }
        // The callback answers any passphrase prompt with an empty one, so OpenSSL never reads
        // the terminal (inside nginx there is none).
        let pkey = PKey::private_key_from_pem_callback(pem, |_buf| Ok(0)).map_err(|_| {
            CryptoError::Decode("not a pem private key (want pkcs#8, pkcs#1 rsa or sec1 ec)".into())
        })?;
        Self::from_pkey(pkey)
    }

    /// Wraps an openssl key after checking that its type, size or curve is supported.
    pub(crate) fn from_pkey(pkey: PKey<Private>) -> Result<PrivateKey, CryptoError> {
        let kind = match pkey.id() {
            Id::RSA => {
                let bits = pkey.bits();
                if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
                    return Err(CryptoError::UnsupportedKey(format!(
                        "rsa key size {bits} (want {RSA_MIN_BITS} to {RSA_MAX_BITS})"
                    )));
                }
                KeyType::Rsa(bits)
            }
            Id::EC => {
                let ec = pkey.ec_key()?;
                match ec.group().curve_name() {
                    Some(Nid::X9_62_PRIME256V1) => KeyType::EcP256,
                    Some(Nid::SECP384R1) => KeyType::EcP384,
                    Some(nid) => {
                        let name = nid.short_name().unwrap_or("unknown");
                        return Err(CryptoError::UnsupportedKey(format!(
                            "ec curve {name} (want prime256v1 or secp384r1)"
                        )));
                    }
                    None => {
                        return Err(CryptoError::UnsupportedKey(
                            "ec key with explicit curve parameters (want a named curve)".into(),
                        ));
                    }
                }
            }
            other => {
                return Err(CryptoError::UnsupportedKey(format!(
                    "key type {} (want rsa or ec)",
                    key_id_name(other)
                )));
            }
        };
        Ok(PrivateKey { pkey, kind })
    }

    /// PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), as the original stores generated keys.
    pub fn to_pem(&self) -> Result<String, CryptoError> {
        pem_text(self.pkey.private_key_to_pem_pkcs8()?)
    }

    /// SubjectPublicKeyInfo PEM of the public half.
    pub fn public_key_pem(&self) -> Result<String, CryptoError> {
        pem_text(self.pkey.public_key_to_pem()?)
    }

    pub fn key_type(&self) -> KeyType {
        self.kind
    }

    /// Whether the key is RSA: its signatures cost milliseconds (RSA-4096 about 3 ms), where an
    /// EC signature costs tens of microseconds.
    pub fn is_rsa(&self) -> bool {
        matches!(self.kind, KeyType::Rsa(_))
    }

    /// JWS `alg` for this key: RS256, ES256 or ES384.
    pub fn jws_alg(&self) -> &'static str {
        // RFC 7518 §3.1: the ECDSA algorithm is tied to the curve.
        match self.kind {
            KeyType::Rsa(_) => "RS256",
            KeyType::EcP256 => "ES256",
            KeyType::EcP384 => "ES384",
        }
    }

    /// The public JWK (RFC 7517): `{"e","kty","n"}` or `{"crv","kty","x","y"}`.
    pub fn jwk(&self) -> Result<serde_json::Value, CryptoError> {
        public_jwk(&self.pkey)
    }

    /// RFC 7638 thumbprint: base64url(SHA-256(canonical JWK)).
    pub fn thumbprint(&self) -> Result<String, CryptoError> {
        thumbprint_of_jwk(&self.jwk()?)
    }

    /// Signs `data` as JWS requires: RSASSA-PKCS1-v1_5 SHA-256, or ECDSA with the curve's hash
    /// returned as fixed-size r||s (RFC 7518 §3.4).
    pub fn sign_jws(&self, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (md, coord_len) = match self.kind {
            KeyType::Rsa(_) => {
                // RFC 7518 §3.3: RS256 is PKCS#1 v1.5, the signer's default padding.
                let mut signer = Signer::new(MessageDigest::sha256(), &self.pkey)?;
                signer.update(data)?;
                return Ok(signer.sign_to_vec()?);
            }
            KeyType::EcP256 => (MessageDigest::sha256(), 32),
            KeyType::EcP384 => (MessageDigest::sha384(), 48),
        };
        let mut signer = Signer::new(md, &self.pkey)?;
        signer.update(data)?;
        let der = signer.sign_to_vec()?;
        // RFC 7518 §3.4: JWS carries R and S as fixed-width big-endian octets, not DER.
        let sig = EcdsaSig::from_der(&der)?;
        let mut out = sig.r().to_vec_padded(coord_len)?;
        out.extend_from_slice(&sig.s().to_vec_padded(coord_len)?);
        Ok(out)
    }

    /// Whether `other` has the same public key.
    pub fn public_eq(&self, other: &PrivateKey) -> bool {
        self.pkey.public_eq(&other.pkey)
    }
}

fn pem_text(bytes: Vec<u8>) -> Result<String, CryptoError> {
    String::from_utf8(bytes).map_err(|_| CryptoError::Openssl("pem output is not utf-8".into()))
}

/// A readable name for an openssl key type, for error messages.
pub(crate) fn key_id_name(id: Id) -> String {
    match id {
        Id::RSA => "rsa".into(),
        Id::RSA_PSS => "rsa-pss".into(),
        Id::EC => "ec".into(),
        Id::DSA => "dsa".into(),
        Id::DH => "dh".into(),
        Id::ED25519 => "ed25519".into(),
        Id::ED448 => "ed448".into(),
        Id::X25519 => "x25519".into(),
        Id::X448 => "x448".into(),
        other => format!("id {}", other.as_raw()),
    }
}

/// The public JWK (RFC 7518 §6.2, §6.3) of any RSA or P-256/P-384 public key. Members are
/// inserted in lexicographic order so the text form is canonical with or without
/// serde_json's `preserve_order`.
pub fn public_jwk<T: HasPublic>(pkey: &PKeyRef<T>) -> Result<Value, CryptoError> {
    let mut m = Map::new();
    match pkey.id() {
        Id::RSA => {
            let rsa = pkey.rsa()?;
            m.insert("e".into(), Value::String(b64url(&rsa.e().to_vec())));
            m.insert("kty".into(), Value::String("RSA".into()));
            m.insert("n".into(), Value::String(b64url(&rsa.n().to_vec())));
        }
        Id::EC => {
            let ec = pkey.ec_key()?;
            let group = ec.group();
            let (crv, len) = match group.curve_name() {
                Some(Nid::X9_62_PRIME256V1) => ("P-256", 32),
                Some(Nid::SECP384R1) => ("P-384", 48),
                _ => {
                    return Err(CryptoError::UnsupportedKey(
                        "ec curve (want prime256v1 or secp384r1)".into(),
                    ))
                }
            };
            let mut ctx = BigNumContext::new()?;
            let mut x = BigNum::new()?;
            let mut y = BigNum::new()?;
            ec.public_key()
                .affine_coordinates(group, &mut x, &mut y, &mut ctx)?;
            // RFC 7518 §6.2.1.2: coordinates are the full field size, leading zeros kept.
            m.insert("crv".into(), Value::String(crv.into()));
            m.insert("kty".into(), Value::String("EC".into()));
            m.insert("x".into(), Value::String(b64url(&x.to_vec_padded(len)?)));
            m.insert("y".into(), Value::String(b64url(&y.to_vec_padded(len)?)));
        }
        other => {
            return Err(CryptoError::UnsupportedKey(format!(
                "key type {} (want rsa or ec)",
                key_id_name(other)
            )))
        }
    }
    Ok(Value::Object(m))
}

/// RFC 7638 §3 thumbprint of a public JWK: SHA-256 over the JSON object holding only the
/// required members of its `kty`, in lexicographic order, without whitespace; base64url.
pub fn thumbprint_of_jwk(jwk: &Value) -> Result<String, CryptoError> {
    let kty = jwk
        .get("kty")
        .and_then(Value::as_str)
        .ok_or_else(|| CryptoError::InvalidInput("jwk has no kty".into()))?;
    // RFC 7638 §3.2: the required members per key type (RFC 7518 §6, RFC 8037 §2).
    let members: &[&str] = match kty {
        "RSA" => &["e", "kty", "n"],
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "oct" => &["k", "kty"],
        _ => {
            return Err(CryptoError::UnsupportedKey(format!(
                "jwk kty {kty} (want RSA or EC)"
            )))
        }
    };
    let mut canonical = String::from("{");
    for (i, name) in members.iter().enumerate() {
        let value = jwk.get(*name).and_then(Value::as_str).ok_or_else(|| {
            CryptoError::InvalidInput(format!("jwk member {name} missing or not a string"))
        })?;
        if i > 0 {
            canonical.push(',');
        }
        // Value's Display is compact JSON with only the escapes JSON requires (RFC 7638 §3.3).
        canonical.push_str(&Value::String((*name).into()).to_string());
        canonical.push(':');
        canonical.push_str(&Value::String(value.into()).to_string());
    }
    canonical.push('}');
    Ok(b64url(&openssl::sha::sha256(canonical.as_bytes())))
}

/// Test helper: verifies a JWS signature (r||s for ECDSA) with openssl.
#[cfg(test)]
pub(crate) fn verify_jws_signature(key: &PrivateKey, data: &[u8], sig: &[u8]) -> bool {
    let (md, der) = match key.kind {
        KeyType::Rsa(_) => (MessageDigest::sha256(), sig.to_vec()),
        KeyType::EcP256 | KeyType::EcP384 => {
            let half = sig.len() / 2;
            let r = BigNum::from_slice(&sig[..half]).unwrap();
            let s = BigNum::from_slice(&sig[half..]).unwrap();
            let md = if half == 32 {
                MessageDigest::sha256()
            } else {
                MessageDigest::sha384()
            };
            (
                md,
                EcdsaSig::from_private_components(r, s)
                    .unwrap()
                    .to_der()
                    .unwrap(),
            )
        }
    };
    let mut v = openssl::sign::Verifier::new(md, &key.pkey).unwrap();
    v.update(data).unwrap();
    v.verify(&der).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC7638_N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    const RFC7638_THUMBPRINT: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";

    fn all_fast_types() -> [KeyType; 3] {
        [KeyType::Rsa(2048), KeyType::EcP256, KeyType::EcP384]
    }

    #[test]
    fn parse_key_types() {
        assert_eq!(KeyType::parse(None, None, None), Ok(KeyType::Rsa(4096)));
        assert_eq!(
            KeyType::parse(Some("RSA"), Some(2048), None),
            Ok(KeyType::Rsa(2048))
        );
        assert_eq!(
            KeyType::parse(Some("rsa"), Some(3072), None),
            Ok(KeyType::Rsa(3072))
        );
        assert_eq!(KeyType::parse(Some("EC"), None, None), Ok(KeyType::EcP256));
        assert_eq!(
            KeyType::parse(Some("ecc"), Some(4096), Some("P-256")),
            Ok(KeyType::EcP256)
        );
        assert_eq!(
            KeyType::parse(Some("ec"), None, Some("secp256r1")),
            Ok(KeyType::EcP256)
        );
        assert_eq!(
            KeyType::parse(Some("EC"), None, Some("secp384r1")),
            Ok(KeyType::EcP384)
        );
        assert_eq!(
            KeyType::parse(Some("EC"), None, Some("P-384")),
            Ok(KeyType::EcP384)
        );
        let err = KeyType::parse(Some("RSA"), Some(1024), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported key: rsa key size 1024 (want 2048, 3072 or 4096)"
        );
        let err = KeyType::parse(Some("EC"), None, Some("secp521r1")).unwrap_err();
        assert!(err.to_string().contains("secp521r1"), "{err}");
        let err = KeyType::parse(Some("dsa"), None, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported key: key type dsa (want rsa or ec)"
        );
        assert_eq!(KeyType::Rsa(2048).short_name(), "rsa");
        assert_eq!(KeyType::EcP384.short_name(), "ecc");
    }

    #[test]
    fn pem_round_trip_every_type() {
        for kind in all_fast_types() {
            let key = PrivateKey::generate(kind).unwrap();
            let pem = key.to_pem().unwrap();
            assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
            let back = PrivateKey::from_pem(pem.as_bytes()).unwrap();
            assert_eq!(back.key_type(), kind);
            assert!(back.public_eq(&key));
            assert_eq!(back.thumbprint().unwrap(), key.thumbprint().unwrap());
            let public = key.public_key_pem().unwrap();
            assert!(public.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        }
    }

    #[test]
    fn rsa_4096_generation() {
        let key = PrivateKey::generate(KeyType::parse(None, None, None).unwrap()).unwrap();
        assert_eq!(key.key_type(), KeyType::Rsa(4096));
        assert_eq!(key.pkey.bits(), 4096);
        assert_eq!(key.jws_alg(), "RS256");
    }

    #[test]
    fn loads_traditional_formats() {
        let rsa = Rsa::generate(2048).unwrap();
        let pkcs1 = rsa.private_key_to_pem().unwrap();
        assert!(String::from_utf8_lossy(&pkcs1).contains("BEGIN RSA PRIVATE KEY"));
        let key = PrivateKey::from_pem(&pkcs1).unwrap();
        assert_eq!(key.key_type(), KeyType::Rsa(2048));

        let group = EcGroup::from_curve_name(Nid::SECP384R1).unwrap();
        let ec = EcKey::generate(&group).unwrap();
        let sec1 = ec.private_key_to_pem().unwrap();
        assert!(String::from_utf8_lossy(&sec1).contains("BEGIN EC PRIVATE KEY"));
        let key = PrivateKey::from_pem(&sec1).unwrap();
        assert_eq!(key.key_type(), KeyType::EcP384);
        // Re-exported as PKCS#8.
        assert!(key
            .to_pem()
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn loads_key_after_other_pem_blocks() {
        // `openssl ecparam -genkey` output: EC PARAMETERS first, then the key.
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let ec = EcKey::generate(&group).unwrap();
        let sec1 = String::from_utf8(ec.private_key_to_pem().unwrap()).unwrap();
        let text = format!(
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{sec1}"
        );
        let key = PrivateKey::from_pem(text.as_bytes()).unwrap();
        assert_eq!(key.key_type(), KeyType::EcP256);

        // A certificate and its key in one file.
        let (cert, key_pem) =
            crate::crypto::challenge::tls_alpn01_certificate("a.example", "t.k").unwrap();
        let key = PrivateKey::from_pem(format!("{cert}{key_pem}").as_bytes()).unwrap();
        assert_eq!(key.key_type(), KeyType::EcP256);
    }

    #[test]
    fn rejects_bad_keys() {
        let err = PrivateKey::from_pem(b"garbage").unwrap_err();
        assert!(matches!(err, CryptoError::Decode(_)), "{err}");
        assert!(err.to_string().contains("not a pem private key"), "{err}");

        let small = PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap();
        let pem = small.private_key_to_pem_pkcs8().unwrap();
        let err = PrivateKey::from_pem(&pem).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported key: rsa key size 1024 (want 2048 to 8192)"
        );

        let group = EcGroup::from_curve_name(Nid::SECP521R1).unwrap();
        let ec = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let err = PrivateKey::from_pem(&ec.private_key_to_pem_pkcs8().unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported key: ec curve secp521r1 (want prime256v1 or secp384r1)"
        );

        let ed = PKey::generate_ed25519().unwrap();
        let err = PrivateKey::from_pem(&ed.private_key_to_pem_pkcs8().unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported key: key type ed25519 (want rsa or ec)"
        );

        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let enc = key
            .pkey
            .private_key_to_pem_pkcs8_passphrase(openssl::symm::Cipher::aes_128_cbc(), b"pw")
            .unwrap();
        let err = PrivateKey::from_pem(&enc).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported key: encrypted private keys are not supported"
        );
    }

    #[test]
    fn debug_redacts() {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let text = format!("{key:?}");
        assert_eq!(text, "PrivateKey(EcP256)");
        let d = b64url(&key.pkey.ec_key().unwrap().private_key().to_vec());
        assert!(!text.contains(&d));
    }

    #[test]
    fn jwk_members() {
        let rsa = PrivateKey::generate(KeyType::Rsa(2048)).unwrap();
        let jwk = rsa.jwk().unwrap();
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["e"], "AQAB");
        let keys: Vec<&String> = jwk.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["e", "kty", "n"]);
        assert_eq!(
            crate::crypto::encoding::b64url_decode(jwk["n"].as_str().unwrap())
                .unwrap()
                .len(),
            256
        );

        for (kind, crv, len) in [
            (KeyType::EcP256, "P-256", 32),
            (KeyType::EcP384, "P-384", 48),
        ] {
            // Several keys so a coordinate with a leading zero byte shows up now and then.
            for _ in 0..8 {
                let key = PrivateKey::generate(kind).unwrap();
                let jwk = key.jwk().unwrap();
                let keys: Vec<&String> = jwk.as_object().unwrap().keys().collect();
                assert_eq!(keys, ["crv", "kty", "x", "y"]);
                assert_eq!(jwk["crv"], crv);
                assert_eq!(jwk["kty"], "EC");
                for c in ["x", "y"] {
                    let raw =
                        crate::crypto::encoding::b64url_decode(jwk[c].as_str().unwrap()).unwrap();
                    assert_eq!(raw.len(), len);
                }
            }
        }
    }

    #[test]
    fn thumbprint_rfc7638_example() {
        let jwk = serde_json::json!({
            "kty": "RSA",
            "n": RFC7638_N,
            "e": "AQAB",
            "alg": "RS256",
            "kid": "2011-04-29",
        });
        assert_eq!(thumbprint_of_jwk(&jwk).unwrap(), RFC7638_THUMBPRINT);

        // The same key as an openssl public key: our JWK encoding must reproduce n/e exactly.
        let n = BigNum::from_slice(&crate::crypto::encoding::b64url_decode(RFC7638_N).unwrap())
            .unwrap();
        let e = BigNum::from_u32(65537).unwrap();
        let public = PKey::from_rsa(Rsa::from_public_components(n, e).unwrap()).unwrap();
        let ours = public_jwk(&public).unwrap();
        assert_eq!(ours["n"], RFC7638_N);
        assert_eq!(ours["e"], "AQAB");
        assert_eq!(thumbprint_of_jwk(&ours).unwrap(), RFC7638_THUMBPRINT);
    }

    #[test]
    fn thumbprint_matches_jwk_for_every_type() {
        for kind in all_fast_types() {
            let key = PrivateKey::generate(kind).unwrap();
            let tp = key.thumbprint().unwrap();
            assert_eq!(tp, thumbprint_of_jwk(&key.jwk().unwrap()).unwrap());
            assert_eq!(tp.len(), 43);
        }
        let err = thumbprint_of_jwk(&serde_json::json!({"kty": "EC", "crv": "P-256"}));
        assert!(err.unwrap_err().to_string().contains("jwk member x"));
    }

    #[test]
    fn sign_jws_every_type() {
        for (kind, alg, len) in [
            (KeyType::Rsa(2048), "RS256", 256),
            (KeyType::EcP256, "ES256", 64),
            (KeyType::EcP384, "ES384", 96),
        ] {
            let key = PrivateKey::generate(kind).unwrap();
            assert_eq!(key.jws_alg(), alg);
            for _ in 0..4 {
                let sig = key.sign_jws(b"header.payload").unwrap();
                assert_eq!(sig.len(), len);
                assert!(verify_jws_signature(&key, b"header.payload", &sig));
                assert!(!verify_jws_signature(&key, b"header.payloae", &sig));
            }
        }
    }
}
