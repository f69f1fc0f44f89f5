//! The compact form of a cached chain and key, for the node-wide second cache level
//! (lua/resty/acme/sharedcache.lua): what a worker that read the store first leaves in a
//! `lua_shared_dict` so that the other workers load a certificate without the store, JSON or
//! PEM.
//!
//! Loading is what matters: the certificates are DER (the intermediates then come from the
//! shared table of src/crypto/chain.rs), and the key is its raw components imported with
//! `EVP_PKEY_fromdata` (about 18 µs for P-256 where OpenSSL 3.0's decoders take 340 µs for
//! PEM or DER alike), a provider key like the one PEM parsing gives, so a handshake does not
//! export it again.
//!
//! Layout (little endian): `b"RAL2"`, version 1, key kind (1 EC, 2 RSA), 2 bytes zero, the
//! 16-byte MD5 of the stored value, the expiry as f64 seconds, the number of key fields and
//! of certificates (u16 each), then every key field and every certificate (leaf first) as a
//! u32 length and its bytes. EC fields: curve name, private scalar, public point; RSA: n, e, d,
//! p, q, dp, dq, qinv.
use super::certcache::CertKey;
use crate::crypto::chain::interned;
use crate::crypto::leaf::{ec_key_for_leaf, parse_der};
use crate::crypto::CryptoError;
use foreign_types::ForeignType;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::PointConversionForm;
use openssl::pkey::{Id, PKey, PKeyRef, Private};
use openssl::stack::{Stack, StackRef};
use openssl::x509::X509;
use openssl_sys as ffi;
use std::ffi::CString;

const MAGIC: &[u8; 4] = b"RAL2";
const VERSION: u8 = 1;
const KIND_EC: u8 = 1;
const KIND_RSA: u8 = 2;
/// magic, version, kind, 2 zero bytes, digest, expiry, two counts
pub const HEADER_LEN: usize = 4 + 1 + 1 + 2 + 16 + 8 + 2 + 2;
const RSA_PARAMS: [&str; 8] = [
    "n",
    "e",
    "d",
    "rsa-factor1",
    "rsa-factor2",
    "rsa-exponent1",
    "rsa-exponent2",
    "rsa-coefficient1",
];

fn bad(what: &str) -> CryptoError {
    CryptoError::Decode(format!("compact entry: {what}"))
}

/// The digest and expiry of an encoded entry, read without loading anything.
pub fn header(data: &[u8]) -> Result<([u8; 16], f64), CryptoError> {
    if data.len() < HEADER_LEN || &data[..4] != MAGIC {
        return Err(bad("not an entry of this format"));
    }
    if data[4] != VERSION {
        return Err(bad(&format!("version {} is not 1", data[4])));
    }
    let mut digest = [0u8; 16];
    digest.copy_from_slice(&data[8..24]);
    let mut exp = [0u8; 8];
    exp.copy_from_slice(&data[24..32]);
    Ok((digest, f64::from_le_bytes(exp)))
}

fn push_field(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), CryptoError> {
    let len = u32::try_from(bytes.len()).map_err(|_| bad("field too long"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn key_fields(pkey: &PKeyRef<Private>) -> Result<(u8, Vec<Vec<u8>>), CryptoError> {
    match pkey.id() {
        Id::EC => {
            let ec = pkey.ec_key()?;
            let group = ec.group();
            let nid = group.curve_name().ok_or_else(|| {
                CryptoError::UnsupportedKey("ec key without a named curve".into())
            })?;
            let name = nid.short_name()?;
            let mut ctx = BigNumContext::new()?;
            let public =
                ec.public_key()
                    .to_bytes(group, PointConversionForm::UNCOMPRESSED, &mut ctx)?;
            Ok((
                KIND_EC,
                vec![name.as_bytes().to_vec(), ec.private_key().to_vec(), public],
            ))
        }
        Id::RSA => {
            let rsa = pkey.rsa()?;
            let missing = || CryptoError::UnsupportedKey("rsa key without its crt factors".into());
            let parts = [
                rsa.n(),
                rsa.e(),
                rsa.d(),
                rsa.p().ok_or_else(missing)?,
                rsa.q().ok_or_else(missing)?,
                rsa.dmp1().ok_or_else(missing)?,
                rsa.dmq1().ok_or_else(missing)?,
                rsa.iqmp().ok_or_else(missing)?,
            ];
            Ok((KIND_RSA, parts.iter().map(|b| b.to_vec()).collect()))
        }
        other => Err(CryptoError::UnsupportedKey(format!(
            "key type {other:?} has no compact form"
        ))),
    }
}

/// The compact form of `chain` (leaf first) and `pkey`, parsed from a stored value of MD5
/// `digest`, valid until `expires`.
pub fn encode(
    chain: &StackRef<X509>,
    pkey: &PKeyRef<Private>,
    digest: &[u8; 16],
    expires: f64,
) -> Result<Vec<u8>, CryptoError> {
    if chain.is_empty() {
        return Err(CryptoError::InvalidInput(
            "the certificate chain is empty".into(),
        ));
    }
    let (kind, fields) = key_fields(pkey)?;
    let ncerts = u16::try_from(chain.len()).map_err(|_| bad("too many certificates"))?;
    let mut out = Vec::with_capacity(2048);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION, kind, 0, 0]);
    out.extend_from_slice(digest);
    out.extend_from_slice(&expires.to_le_bytes());
    out.extend_from_slice(&(fields.len() as u16).to_le_bytes());
    out.extend_from_slice(&ncerts.to_le_bytes());
    for f in &fields {
        push_field(&mut out, f)?;
    }
    for cert in chain {
        push_field(&mut out, &cert.to_der()?)?;
    }
    Ok(out)
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn field(&mut self) -> Result<&'a [u8], CryptoError> {
        let end = self.pos.checked_add(4).filter(|e| *e <= self.data.len());
        let end = end.ok_or_else(|| bad("truncated"))?;
        let mut len = [0u8; 4];
        len.copy_from_slice(&self.data[self.pos..end]);
        let stop = end
            .checked_add(u32::from_le_bytes(len) as usize)
            .filter(|e| *e <= self.data.len())
            .ok_or_else(|| bad("truncated"))?;
        self.pos = stop;
        Ok(&self.data[end..stop])
    }
}

/// Frees an `OSSL_PARAM_BLD`, its params and a key context however the import ends.
struct Import {
    bld: *mut ffi::OSSL_PARAM_BLD,
    params: *mut ffi::OSSL_PARAM,
    ctx: *mut ffi::EVP_PKEY_CTX,
}

impl Drop for Import {
    fn drop(&mut self) {
        // SAFETY: each pointer is null or was allocated by the matching OpenSSL call and is
        // freed only here.
        unsafe {
            if !self.ctx.is_null() {
                ffi::EVP_PKEY_CTX_free(self.ctx);
            }
            if !self.params.is_null() {
                ffi::OSSL_PARAM_free(self.params);
            }
            if !self.bld.is_null() {
                ffi::OSSL_PARAM_BLD_free(self.bld);
            }
        }
    }
}

fn import_key(kind: u8, fields: &[&[u8]]) -> Result<PKey<Private>, CryptoError> {
    let fail = |what: &str| CryptoError::Openssl(format!("importing the key: {what} failed"));
    // the BIGNUMs must outlive the builder's use of them (it copies them in to_param)
    let mut bns: Vec<BigNum> = Vec::new();
    let mut names: Vec<CString> = Vec::new();
    let algorithm = match (kind, fields.len()) {
        (KIND_EC, 3) => c"EC",
        (KIND_RSA, 8) => c"RSA",
        _ => return Err(bad("key fields do not match the key kind")),
    };
    // SAFETY: a new builder; freed by Import.
    let mut imp = Import {
        bld: unsafe { ffi::OSSL_PARAM_BLD_new() },
        params: std::ptr::null_mut(),
        ctx: std::ptr::null_mut(),
    };
    if imp.bld.is_null() {
        return Err(fail("OSSL_PARAM_BLD_new"));
    }
    if kind == KIND_EC {
        let group = CString::new(fields[0]).map_err(|_| bad("curve name"))?;
        bns.push(BigNum::from_slice(fields[1])?);
        // SAFETY: the builder is live; the strings and buffers outlive to_param below
        // (the builder keeps pointers to utf8/octet data until then and copies it there).
        let ok = unsafe {
            ffi::OSSL_PARAM_BLD_push_utf8_string(imp.bld, c"group".as_ptr(), group.as_ptr(), 0) == 1
                && ffi::OSSL_PARAM_BLD_push_BN(imp.bld, c"priv".as_ptr(), bns[0].as_ptr()) == 1
                && ffi::OSSL_PARAM_BLD_push_octet_string(
                    imp.bld,
                    c"pub".as_ptr(),
                    fields[2].as_ptr().cast(),
                    fields[2].len(),
                ) == 1
        };
        names.push(group);
        if !ok {
            return Err(fail("building the ec parameters"));
        }
    } else {
        for (name, bytes) in RSA_PARAMS.iter().zip(fields) {
            bns.push(BigNum::from_slice(bytes)?);
            let name = CString::new(*name).map_err(|_| bad("parameter name"))?;
            // SAFETY: the builder is live; name and BIGNUM outlive to_param.
            let ok = unsafe {
                ffi::OSSL_PARAM_BLD_push_BN(imp.bld, name.as_ptr(), bns[bns.len() - 1].as_ptr())
            };
            names.push(name);
            if ok != 1 {
                return Err(fail("building the rsa parameters"));
            }
        }
    }
    // SAFETY: the builder is live and everything pushed is still alive.
    imp.params = unsafe { ffi::OSSL_PARAM_BLD_to_param(imp.bld) };
    if imp.params.is_null() {
        return Err(fail("OSSL_PARAM_BLD_to_param"));
    }
    // SAFETY: a NUL-terminated algorithm name; default library context and properties.
    imp.ctx = unsafe {
        ffi::EVP_PKEY_CTX_new_from_name(std::ptr::null_mut(), algorithm.as_ptr(), std::ptr::null())
    };
    if imp.ctx.is_null() {
        return Err(fail("EVP_PKEY_CTX_new_from_name"));
    }
    let mut pkey: *mut ffi::EVP_PKEY = std::ptr::null_mut();
    // SAFETY: a live context and params; on success `pkey` is a new key we own.
    let ok = unsafe {
        ffi::EVP_PKEY_fromdata_init(imp.ctx) == 1
            && ffi::EVP_PKEY_fromdata(imp.ctx, &mut pkey, ffi::EVP_PKEY_KEYPAIR, imp.params) == 1
    };
    drop(names);
    if !ok || pkey.is_null() {
        let _ = openssl::error::ErrorStack::get();
        return Err(fail("EVP_PKEY_fromdata"));
    }
    // SAFETY: a new key of our own.
    Ok(unsafe { PKey::from_ptr(pkey) })
}

/// Loads an encoded entry: the chain (intermediates shared), the key and the digest, and the
/// expiry.
pub fn decode(data: &[u8]) -> Result<(CertKey, f64), CryptoError> {
    let (digest, expires) = header(data)?;
    let kind = data[5];
    let nfields = u16::from_le_bytes([data[32], data[33]]) as usize;
    let ncerts = u16::from_le_bytes([data[34], data[35]]) as usize;
    if ncerts == 0 || nfields > 8 {
        return Err(bad("no certificate or too many key fields"));
    }
    let mut r = Reader {
        data,
        pos: HEADER_LEN,
    };
    let mut fields = Vec::with_capacity(nfields);
    for _ in 0..nfields {
        fields.push(r.field()?);
    }
    let leaf = parse_der(r.field()?).map_err(|_| bad("invalid leaf certificate der"))?;
    // an EC key shares the leaf's key object where it can (crypto::leaf::ec_key_for_leaf)
    let shared = match (kind, fields.len()) {
        (KIND_EC, 3) => ec_key_for_leaf(&leaf, fields[1], fields[2]),
        _ => None,
    };
    let pkey = match shared {
        Some(key) => key.map_err(|e| bad(&format!("key: {e}")))?,
        None => import_key(kind, &fields)?,
    };
    let mut chain = Stack::new()?;
    chain.push(leaf)?;
    for _ in 1..ncerts {
        chain.push(interned(r.field()?)?)?;
    }
    if r.pos != data.len() {
        return Err(bad("trailing bytes"));
    }
    Ok((
        CertKey {
            chain,
            pkey,
            digest,
        },
        expires,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::cert::tests::{issue, spec};
    use crate::crypto::{KeyType, PrivateKey};
    use foreign_types::ForeignTypeRef;

    fn chain_and_key(kind: KeyType) -> (Stack<X509>, PKey<Private>) {
        let ca_key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let inter = issue(&spec("Compact CA", "01", true, &[]), &ca_key, None);
        let key = PrivateKey::generate(kind).unwrap();
        let leaf = issue(
            &spec("compact.test", "02", false, &["compact.test"]),
            &key,
            Some((&inter, &ca_key)),
        );
        let mut chain = Stack::new().unwrap();
        chain.push(leaf).unwrap();
        chain.push(inter).unwrap();
        (chain, key.pkey)
    }

    fn round_trip(kind: KeyType) {
        let (chain, key) = chain_and_key(kind);
        let blob = encode(&chain, &key, &[7; 16], 1234.5).unwrap();
        assert_eq!(header(&blob).unwrap(), ([7; 16], 1234.5));
        let (got, e) = decode(&blob).unwrap();
        let (c2, k2) = (got.chain, got.pkey);
        assert_eq!((got.digest, e), ([7; 16], 1234.5));
        assert_eq!(c2.len(), 2);
        for (a, b) in chain.iter().zip(c2.iter()) {
            assert_eq!(a.to_der().unwrap(), b.to_der().unwrap());
        }
        // the same private key: it signs what the leaf's public key verifies
        assert!(k2.public_eq(&key));
        assert_eq!(
            k2.private_key_to_pkcs8().unwrap(),
            key.private_key_to_pkcs8().unwrap()
        );
        assert!(
            unsafe { crate::tls::tls_cert::leaf_matches_key(c2.as_ptr(), k2.as_ptr()) }.unwrap()
        );
        // a second load shares the intermediate with the first
        let c3 = decode(&blob).unwrap().0.chain;
        assert_eq!(c2[1].as_ptr(), c3[1].as_ptr());
        assert_ne!(c2[0].as_ptr(), c3[0].as_ptr());
    }

    #[test]
    fn ec_keys_round_trip() {
        round_trip(KeyType::EcP256);
        round_trip(KeyType::EcP384);
    }

    #[test]
    fn rsa_keys_round_trip() {
        round_trip(KeyType::Rsa(2048));
    }

    #[test]
    fn damaged_entries_are_refused_with_their_cause() {
        let (chain, key) = chain_and_key(KeyType::EcP256);
        let blob = encode(&chain, &key, &[1; 16], 1.0).unwrap();
        let err = |b: &[u8]| decode(b).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(b"").contains("not an entry of this format"));
        assert!(err(&blob[..blob.len() - 1]).contains("truncated"));
        let mut longer = blob.clone();
        longer.push(0);
        assert!(err(&longer).contains("trailing bytes"));
        let mut v2 = blob.clone();
        v2[4] = 2;
        assert!(err(&v2).contains("version 2 is not 1"));
        let mut kind = blob.clone();
        kind[5] = KIND_RSA;
        assert!(err(&kind).contains("do not match the key kind"));
        let mut pubkey = blob.clone();
        // a public point that is not on the curve
        let at = HEADER_LEN + 4 + 10 + 4 + 32 + 4 + 10;
        pubkey[at] ^= 0xff;
        assert!(!err(&pubkey).is_empty());
    }
}
