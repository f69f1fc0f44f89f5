//! Certificate chains in the form lua-nginx-module's `ngx.ssl.set_cert` takes: a
//! `STACK_OF(X509)` that owns one reference to each element, freed by
//! `ngx_http_lua_ffi_free_cert` (`sk_X509_pop_free(chain, X509_free)`).
//!
//! Every certificate a CA issues comes with the same intermediates, and with OpenSSL 3.0 a
//! parsed certificate takes about 5 KiB (it keeps the decoded public key with its own copy of
//! the curve). So the leaf is parsed for each chain and every further certificate is taken
//! from a per-process table keyed by the SHA-256 of its DER: ten thousand cached chains of one
//! CA hold one parsed intermediate between them. Leaves are never shared: each entry has its
//! own certificate and key.
use super::cert::certificate_ders;
use super::CryptoError;
use foreign_types::ForeignType;
use openssl::hash::{hash, MessageDigest};
use openssl::stack::Stack;
use openssl::x509::X509;
use std::collections::HashMap;
use std::ffi::c_void;
use std::mem::ManuallyDrop;
use std::sync::{LazyLock, Mutex};

/// Distinct chain certificates the table keeps. A real store holds a few CAs with a few
/// intermediates each; a store full of distinct ones (hostile or not) makes the table start
/// over when full, so it never holds more than this many.
pub const INTERN_CAPACITY: usize = 64;

/// Parsed chain certificates by SHA-256 of their DER. The table holds one reference to each;
/// every chain built from it holds its own.
pub struct Intern {
    map: HashMap<[u8; 32], X509>,
    capacity: usize,
}

impl Intern {
    pub fn new(capacity: usize) -> Self {
        Intern {
            map: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The parsed certificate of `der`, parsed now if the table has none (a new reference).
    pub fn get(&mut self, der: &[u8]) -> Result<X509, CryptoError> {
        let digest = hash(MessageDigest::sha256(), der)?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&digest);
        if let Some(cert) = self.map.get(&key) {
            return Ok(cert.clone());
        }
        let cert = super::leaf::parse_der(der)
            .map_err(|_| CryptoError::Decode("invalid chain certificate der".into()))?;
        if self.map.len() >= self.capacity {
            // Chains built before keep their references; only sharing with them is lost.
            self.map.clear();
        }
        self.map.insert(key, cert.clone());
        Ok(cert)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The process-wide table: nginx serves from one thread, but key generation runs on others.
static INTERN: LazyLock<Mutex<Intern>> = LazyLock::new(|| Mutex::new(Intern::new(INTERN_CAPACITY)));

/// The chain of a PEM text, leaf first, with the certificates after the leaf shared through
/// `intern`.
pub fn build_chain_with(pem: &[u8], intern: &Mutex<Intern>) -> Result<Stack<X509>, CryptoError> {
    let ders = certificate_ders(pem)?;
    // Another kind of block (e.g. a TRUSTED CERTIFICATE leaf) is an error, not skipped:
    // skipping it would make the next certificate the leaf.
    if count(pem, b"-----BEGIN ") != ders.len() {
        return Err(CryptoError::Decode(
            "pem holds a block that is not a CERTIFICATE".into(),
        ));
    }
    let mut chain = Stack::new()?;
    let leaf = super::leaf::parse_der(&ders[0])
        .map_err(|_| CryptoError::Decode("invalid leaf certificate der".into()))?;
    chain.push(leaf)?;
    if ders.len() > 1 {
        // A panic elsewhere while holding the lock leaves the table consistent (each step
        // is one map operation), so a poisoned lock is taken over.
        let mut table = intern.lock().unwrap_or_else(|e| e.into_inner());
        for der in &ders[1..] {
            chain.push(table.get(der)?)?;
        }
    }
    Ok(chain)
}

/// The shared parsed certificate of a chain certificate's DER (a new reference), from the
/// process-wide table.
pub fn interned(der: &[u8]) -> Result<X509, CryptoError> {
    // see build_chain_with on a poisoned lock
    let mut table = INTERN.lock().unwrap_or_else(|e| e.into_inner());
    table.get(der)
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// [`build_chain_with`] the process-wide table.
pub fn build_chain(pem: &[u8]) -> Result<Stack<X509>, CryptoError> {
    build_chain_with(pem, &INTERN)
}

/// [`build_chain`] as a raw `STACK_OF(X509)*` that owns one reference to each element: the
/// caller takes ownership and must free it with `sk_X509_pop_free(chain, X509_free)` (what
/// `ngx_http_lua_ffi_free_cert` does), or it leaks.
pub fn build_chain_raw(pem: &[u8]) -> Result<*mut c_void, CryptoError> {
    let chain = ManuallyDrop::new(build_chain(pem)?);
    Ok(chain.as_ptr().cast())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::cert::tests::{issue, spec};
    use crate::crypto::{KeyType, PrivateKey};
    use foreign_types::ForeignTypeRef;

    #[test]
    fn raw_chain_is_what_free_cert_frees() {
        let ca = ca("Raw CA");
        let pem = leaf_pem(&ca, "raw.test", "0d");
        let raw = build_chain_raw(pem.as_bytes()).unwrap();
        // SAFETY: `raw` is the STACK_OF(X509)* just built and owned here; from_ptr takes it
        // over and its Drop is sk_X509_pop_free(raw, X509_free), as the nginx side frees it.
        let chain: Stack<X509> = unsafe { Stack::from_ptr(raw.cast()) };
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1].to_der().unwrap(), ca.cert.to_der().unwrap());
    }

    struct Ca {
        cert: X509,
        key: PrivateKey,
    }

    fn ca(cn: &str) -> Ca {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let cert = issue(&spec(cn, "01", true, &[]), &key, None);
        Ca { cert, key }
    }

    fn leaf_pem(ca: &Ca, name: &str, serial: &str) -> String {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let dns = [name];
        let leaf = issue(
            &spec(name, serial, false, &dns),
            &key,
            Some((&ca.cert, &ca.key)),
        );
        let mut pem = String::from_utf8(leaf.to_pem().unwrap()).unwrap();
        pem.push_str(&String::from_utf8(ca.cert.to_pem().unwrap()).unwrap());
        pem
    }

    fn table(capacity: usize) -> Mutex<Intern> {
        Mutex::new(Intern::new(capacity))
    }

    #[test]
    fn same_intermediate_is_shared_leaves_are_not() {
        let ca = ca("Shared CA");
        let t = table(8);
        let a = build_chain_with(leaf_pem(&ca, "a.test", "0a").as_bytes(), &t).unwrap();
        let b = build_chain_with(leaf_pem(&ca, "b.test", "0b").as_bytes(), &t).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(b.len(), 2);
        // one parsed intermediate for both chains, equal to the CA's
        assert_eq!(a[1].as_ptr(), b[1].as_ptr());
        assert_eq!(a[1].to_der().unwrap(), ca.cert.to_der().unwrap());
        // each its own leaf, in order
        assert_ne!(a[0].as_ptr(), b[0].as_ptr());
        assert_eq!(
            a[0].subject_alt_names().unwrap().get(0).unwrap().dnsname(),
            Some("a.test")
        );
        assert_eq!(
            b[0].subject_alt_names().unwrap().get(0).unwrap().dnsname(),
            Some("b.test")
        );
        assert_eq!(t.lock().unwrap().len(), 1);
        // the chains own their references: dropping the table's leaves them valid
        drop(t);
        assert_eq!(a[1].to_der().unwrap(), ca.cert.to_der().unwrap());
    }

    #[test]
    fn the_same_leaf_twice_is_parsed_twice() {
        let ca = ca("Leaf CA");
        let pem = leaf_pem(&ca, "same.test", "0c");
        let t = table(8);
        let a = build_chain_with(pem.as_bytes(), &t).unwrap();
        let b = build_chain_with(pem.as_bytes(), &t).unwrap();
        assert_ne!(a[0].as_ptr(), b[0].as_ptr());
        assert_eq!(a[1].as_ptr(), b[1].as_ptr());
    }

    #[test]
    fn table_stays_within_its_bound() {
        let t = table(3);
        let cas: Vec<Ca> = (0..7).map(|i| ca(&format!("CA {i}"))).collect();
        let mut chains = Vec::new();
        for (i, ca) in cas.iter().enumerate() {
            let pem = leaf_pem(ca, "x.test", &format!("{:02x}", i + 16));
            chains.push(build_chain_with(pem.as_bytes(), &t).unwrap());
            let n = t.lock().unwrap().len();
            assert!((1..=3).contains(&n), "table holds {n}");
        }
        // every chain kept its own intermediate, whatever the table dropped
        for (chain, ca) in chains.iter().zip(&cas) {
            assert_eq!(chain[1].to_der().unwrap(), ca.cert.to_der().unwrap());
        }
        // after a start-over, the same intermediate is parsed once more and shared again
        let again = build_chain_with(leaf_pem(&cas[0], "y.test", "30").as_bytes(), &t).unwrap();
        let twice = build_chain_with(leaf_pem(&cas[0], "z.test", "31").as_bytes(), &t).unwrap();
        assert_eq!(again[1].as_ptr(), twice[1].as_ptr());
    }

    #[test]
    fn a_leaf_alone_is_a_chain_of_one() {
        let ca = ca("Alone CA");
        let pem = String::from_utf8(ca.cert.to_pem().unwrap()).unwrap();
        let t = table(8);
        let chain = build_chain_with(pem.as_bytes(), &t).unwrap();
        assert_eq!(chain.len(), 1);
        assert!(t.lock().unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_cause() {
        let t = table(8);
        let err = |pem: &[u8]| match build_chain_with(pem, &t) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        };
        assert_eq!(err(b""), "decode error: no certificate in pem");
        assert_eq!(
            err(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            "decode error: no certificate in pem"
        );
        assert_eq!(
            err(b"\xff\xfe"),
            "decode error: certificate pem is not text"
        );
        assert_eq!(
            err(b"-----BEGIN CERTIFICATE-----\nMIIB\n"),
            "decode error: invalid certificate pem"
        );
        assert_eq!(
            err(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
            "decode error: invalid certificate pem"
        );
        assert_eq!(
            err(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            "decode error: invalid leaf certificate der"
        );
        assert_eq!(
            err(b"-----BEGIN TRUSTED CERTIFICATE-----\nAAAA\n-----END TRUSTED CERTIFICATE-----\n"),
            "decode error: no certificate in pem"
        );
        let ca = ca("Err CA");
        let ca_pem = String::from_utf8(ca.cert.to_pem().unwrap()).unwrap();
        let trusted = ca_pem.replace(" CERTIFICATE-----", " TRUSTED CERTIFICATE-----");
        assert_eq!(
            err(format!("{trusted}{ca_pem}").as_bytes()),
            "decode error: pem holds a block that is not a CERTIFICATE"
        );
        let mut pem = String::from_utf8(ca.cert.to_pem().unwrap()).unwrap();
        pem.push_str("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        assert_eq!(
            err(pem.as_bytes()),
            "decode error: invalid chain certificate der"
        );
        // a failed chain certificate is not remembered
        assert!(t.lock().unwrap().is_empty());
    }
}
