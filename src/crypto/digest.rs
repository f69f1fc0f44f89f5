//! Digests and MACs by name, for `resty.acme.openssl`'s digest and hmac.
use super::CryptoError;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    openssl::sha::sha256(data)
}

/// The digest named `alg` (case-insensitive, with or without the dash: `sha256`, `SHA-256`).
fn message_digest(alg: &str) -> Result<MessageDigest, CryptoError> {
    match alg.to_ascii_lowercase().replace('-', "").as_str() {
        "sha1" => Ok(MessageDigest::sha1()),
        "sha224" => Ok(MessageDigest::sha224()),
        "sha256" => Ok(MessageDigest::sha256()),
        "sha384" => Ok(MessageDigest::sha384()),
        "sha512" => Ok(MessageDigest::sha512()),
        _ => Err(CryptoError::InvalidInput(format!(
            "unsupported digest {alg} (want sha1, sha224, sha256, sha384 or sha512)"
        ))),
    }
}

/// A digest by name: `sha1`, `sha256`, `sha384`, `sha512` (case-insensitive).
pub fn digest(alg: &str, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let md = message_digest(alg)?;
    Ok(openssl::hash::hash(md, data)?.to_vec())
}

/// An HMAC by digest name.
pub fn hmac(alg: &str, key: &[u8], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let md = message_digest(alg)?;
    // RFC 2104 §2 pads the key with zeros to the block size, so an empty key and a single zero
    // byte give the same MAC; OpenSSL 3 refuses a zero-length raw key, hence the substitution.
    let key = if key.is_empty() { &[0u8][..] } else { key };
    let pkey = PKey::hmac(key)?;
    let mut signer = Signer::new(md, &pkey)?;
    signer.update(data)?;
    Ok(signer.sign_to_vec()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn digests_by_name() {
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(digest("SHA256", b"abc").unwrap(), sha256(b"abc").to_vec());
        assert_eq!(
            hex(&digest("sha1", b"abc").unwrap()),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(digest("sha224", b"").unwrap().len(), 28);
        assert_eq!(digest("sha-384", b"").unwrap().len(), 48);
        assert_eq!(digest("Sha512", b"").unwrap().len(), 64);
        let err = digest("md5", b"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid input: unsupported digest md5 (want sha1, sha224, sha256, sha384 or sha512)"
        );
    }

    #[test]
    fn hmac_rfc4231_case_2() {
        // RFC 4231 §4.3.
        let mac = hmac("sha256", b"Jefe", b"what do ya want for nothing?").unwrap();
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let mac = hmac("SHA512", b"Jefe", b"what do ya want for nothing?").unwrap();
        assert_eq!(&hex(&mac)[..32], "164b7a7bfcf819e2e395fbe73b56e0a3");
    }

    #[test]
    fn hmac_empty_key() {
        // HMAC-SHA256 with an empty key over an empty message (a well-known value).
        assert_eq!(
            hex(&hmac("sha256", b"", b"").unwrap()),
            "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"
        );
    }
}
