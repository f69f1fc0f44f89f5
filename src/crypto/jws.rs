//! Flattened JWS JSON serialization (RFC 7515 §7.2.2) as RFC 8555 §6.2 requires, and EAB.
use super::digest::hmac;
use super::encoding::b64url;
use super::{CryptoError, PrivateKey};
use serde_json::Value;

/// How the protected header names the account key (RFC 8555 §6.2).
#[derive(Debug, Clone, Copy)]
pub enum KeyId<'a> {
    /// Embed the public JWK (newAccount, revokeCert with the certificate key).
    Jwk,
    /// The account URL.
    Kid(&'a str),
}

/// A JSON string literal (serde_json escapes only what JSON requires; `/` stays as is).
fn json_string(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// The unsigned part of a flattened JWS: the base64url protected header and payload. Building
/// it is cheap; the signature over [`JwsInput::signing_input`] is the costly part (RSA-4096: about
/// 3 ms), which is why a caller may compute it elsewhere (a thread) and [`JwsInput::assemble`]
/// the result afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwsInput {
    protected: String,
    payload: String,
}

impl JwsInput {
    /// The protected header for `key` and the payload (JSON text; `None` = POST-as-GET, an empty
    /// payload) for `url`. `nonce` is omitted from the header when `None` (only the inner
    /// key-change JWS has none).
    pub fn new(
        key: &PrivateKey,
        url: &str,
        nonce: Option<&str>,
        key_id: KeyId<'_>,
        payload: Option<&str>,
    ) -> Result<JwsInput, CryptoError> {
        // RFC 8555 §6.2: alg, exactly one of jwk/kid, nonce, url. Built by hand so the member
        // order is fixed: alg, jwk|kid, nonce, url.
        let mut header = String::with_capacity(256);
        header.push_str("{\"alg\":");
        header.push_str(&json_string(key.jws_alg()));
        match key_id {
            KeyId::Jwk => {
                header.push_str(",\"jwk\":");
                header.push_str(&key.jwk()?.to_string());
            }
            KeyId::Kid(kid) => {
                header.push_str(",\"kid\":");
                header.push_str(&json_string(kid));
            }
        }
        if let Some(nonce) = nonce {
            header.push_str(",\"nonce\":");
            header.push_str(&json_string(nonce));
        }
        header.push_str(",\"url\":");
        header.push_str(&json_string(url));
        header.push('}');
        Ok(JwsInput {
            protected: b64url(header.as_bytes()),
            // RFC 8555 §6.3: POST-as-GET carries the empty string as payload.
            payload: payload.map(|p| b64url(p.as_bytes())).unwrap_or_default(),
        })
    }

    /// RFC 7515 §5.1: `BASE64URL(protected) || '.' || BASE64URL(payload)`, what is signed.
    pub fn signing_input(&self) -> Vec<u8> {
        format!("{}.{}", self.protected, self.payload).into_bytes()
    }

    /// The signature over the signing input with `key` (the key the header names).
    pub fn sign(&self, key: &PrivateKey) -> Result<Vec<u8>, CryptoError> {
        key.sign_jws(&self.signing_input())
    }

    /// The flattened JWS as JSON text `{"protected","payload","signature"}` with `signature`
    /// (raw bytes as [`PrivateKey::sign_jws`] returns them) over this input.
    pub fn assemble(&self, signature: &[u8]) -> String {
        let signature = b64url(signature);
        // All three values are base64url text: no escaping needed.
        format!(
            "{{\"protected\":\"{}\",\"payload\":\"{}\",\"signature\":\"{signature}\"}}",
            self.protected, self.payload
        )
    }
}

/// Signs `payload` (JSON text; `None` = POST-as-GET, an empty payload) for `url` and returns the
/// flattened JWS as JSON text `{"protected","payload","signature"}`. `nonce` is omitted from the
/// header when `None` (only the inner key-change JWS has none).
pub fn sign_flattened(
    key: &PrivateKey,
    url: &str,
    nonce: Option<&str>,
    key_id: KeyId<'_>,
    payload: Option<&str>,
) -> Result<String, CryptoError> {
    let input = JwsInput::new(key, url, nonce, key_id, payload)?;
    let signature = input.sign(key)?;
    Ok(input.assemble(&signature))
}

/// The `externalAccountBinding` object (RFC 8555 §7.3.4): a JWS over the account JWK, HS256 with
/// the CA-issued MAC key, protected header `{"alg":"HS256","kid":eab_kid,"url":new_account_url}`.
pub fn eab_binding(
    eab_kid: &str,
    hmac_key: &[u8],
    new_account_url: &str,
    account_jwk: &serde_json::Value,
) -> Result<serde_json::Value, CryptoError> {
    if hmac_key.is_empty() {
        return Err(CryptoError::InvalidInput("eab hmac key is empty".into()));
    }
    if eab_kid.is_empty() {
        return Err(CryptoError::InvalidInput("eab kid is empty".into()));
    }
    if !account_jwk.is_object() {
        return Err(CryptoError::InvalidInput(
            "account jwk is not a json object".into(),
        ));
    }
    let header = format!(
        "{{\"alg\":\"HS256\",\"kid\":{},\"url\":{}}}",
        json_string(eab_kid),
        json_string(new_account_url)
    );
    let protected = b64url(header.as_bytes());
    // §7.3.4: the payload is the account key's JWK, the same one newAccount's header carries.
    let payload = b64url(account_jwk.to_string().as_bytes());
    let signing_input = format!("{protected}.{payload}");
    let signature = b64url(&hmac("sha256", hmac_key, signing_input.as_bytes())?);
    let mut obj = serde_json::Map::new();
    obj.insert("protected".into(), Value::String(protected));
    obj.insert("payload".into(), Value::String(payload));
    obj.insert("signature".into(), Value::String(signature));
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::encoding::b64url_decode;
    use crate::crypto::key::verify_jws_signature;
    use crate::crypto::KeyType;

    fn decode_json(b64: &str) -> Value {
        serde_json::from_slice(&b64url_decode(b64).unwrap()).unwrap()
    }

    fn check(key: &PrivateKey, jws: &str) -> (Value, String) {
        let v: Value = serde_json::from_str(jws).unwrap();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), 3);
        let protected = obj["protected"].as_str().unwrap();
        let payload = obj["payload"].as_str().unwrap();
        let sig = b64url_decode(obj["signature"].as_str().unwrap()).unwrap();
        let input = format!("{protected}.{payload}");
        assert!(verify_jws_signature(key, input.as_bytes(), &sig));
        let payload_text = String::from_utf8(b64url_decode(payload).unwrap()).unwrap();
        (decode_json(protected), payload_text)
    }

    #[test]
    fn flattened_jws_every_alg() {
        for (kind, alg) in [
            (KeyType::Rsa(2048), "RS256"),
            (KeyType::EcP256, "ES256"),
            (KeyType::EcP384, "ES384"),
        ] {
            let key = PrivateKey::generate(kind).unwrap();
            let url = "https://ca.example/acme/new-acct";

            // newAccount: embedded JWK.
            let jws = sign_flattened(
                &key,
                url,
                Some("nonce-1"),
                KeyId::Jwk,
                Some(r#"{"termsOfServiceAgreed":true}"#),
            )
            .unwrap();
            assert!(jws.starts_with("{\"protected\":\""), "{jws}");
            assert!(!jws.contains("\\/"));
            let (header, payload) = check(&key, &jws);
            assert_eq!(header["alg"], alg);
            assert_eq!(header["jwk"], key.jwk().unwrap());
            assert!(header.get("kid").is_none());
            assert_eq!(header["nonce"], "nonce-1");
            assert_eq!(header["url"], url);
            assert_eq!(payload, r#"{"termsOfServiceAgreed":true}"#);

            // POST-as-GET with kid.
            let kid = "https://ca.example/acme/acct/1";
            let jws = sign_flattened(&key, url, Some("n2"), KeyId::Kid(kid), None).unwrap();
            let v: Value = serde_json::from_str(&jws).unwrap();
            assert_eq!(v["payload"], "");
            let (header, payload) = check(&key, &jws);
            assert_eq!(header["kid"], kid);
            assert!(header.get("jwk").is_none());
            assert_eq!(header["nonce"], "n2");
            assert_eq!(payload, "");

            // Inner key-change JWS: no nonce.
            let jws = sign_flattened(&key, url, None, KeyId::Jwk, Some("{}")).unwrap();
            let (header, _) = check(&key, &jws);
            assert!(header.get("nonce").is_none());
        }
    }

    #[test]
    fn header_member_order_and_no_slash_escape() {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let jws = sign_flattened(
            &key,
            "https://x/y",
            Some("abc"),
            KeyId::Kid("https://x/acct/1"),
            Some("{}"),
        )
        .unwrap();
        let v: Value = serde_json::from_str(&jws).unwrap();
        let header =
            String::from_utf8(b64url_decode(v["protected"].as_str().unwrap()).unwrap()).unwrap();
        assert_eq!(
            header,
            r#"{"alg":"ES256","kid":"https://x/acct/1","nonce":"abc","url":"https://x/y"}"#
        );
    }

    #[test]
    fn pieces_make_the_same_jws_as_sign_flattened() {
        // RS256 (PKCS#1 v1.5) is deterministic: both paths give the same bytes.
        let key = PrivateKey::generate(KeyType::Rsa(2048)).unwrap();
        let kid = KeyId::Kid("https://x/acct/1");
        let input = JwsInput::new(&key, "https://x/y", Some("n"), kid, Some("{}")).unwrap();
        let sig = key.sign_jws(&input.signing_input()).unwrap();
        let jws = input.assemble(&sig);
        assert_eq!(
            jws,
            sign_flattened(&key, "https://x/y", Some("n"), kid, Some("{}")).unwrap()
        );
        check(&key, &jws);
        assert_eq!(input.sign(&key).unwrap(), sig);
    }

    #[test]
    fn eab_verifies_with_hmac() {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let jwk = key.jwk().unwrap();
        let mac_key = b"0123456789abcdef0123456789abcdef";
        let url = "https://ca.example/acme/new-account";
        let eab = eab_binding("kid-1", mac_key, url, &jwk).unwrap();
        let obj = eab.as_object().unwrap();
        assert_eq!(obj.len(), 3);
        let protected = obj["protected"].as_str().unwrap();
        let payload = obj["payload"].as_str().unwrap();
        let header = decode_json(protected);
        assert_eq!(
            header,
            serde_json::json!({"alg": "HS256", "kid": "kid-1", "url": url})
        );
        assert_eq!(decode_json(payload), jwk);
        let expected = hmac(
            "sha256",
            mac_key,
            format!("{protected}.{payload}").as_bytes(),
        )
        .unwrap();
        assert_eq!(
            b64url_decode(obj["signature"].as_str().unwrap()).unwrap(),
            expected
        );
        assert!(eab_binding("kid-1", b"", url, &jwk).is_err());
    }
}
