//! Parsing a certificate without OpenSSL 3's provider decoders for its public key.
//!
//! `d2i_X509` in OpenSSL 3 decodes the SubjectPublicKeyInfo as it parses: through the
//! built-in ("legacy") ASN.1 method when an ENGINE is registered for the key's type, and
//! otherwise through `OSSL_DECODER`, whose context is built anew for every key (3.0 keeps no
//! decoder cache): about 115 µs of a 135 µs parse of a P-256 leaf on this project's machines,
//! where the built-in decoder takes about 15 (docs/BENCHMARKS.md, P10). Every certificate a
//! worker cache loads is a leaf of its own, so the serving path pays it once per cache miss.
//!
//! [`parse_der`] registers an engine that claims the EC and RSA key types only for the length
//! of the parse: the engine implements nothing itself (asked for a method it hands back
//! OpenSSL's built-in one), it only makes `x509_pubkey_decode` take the built-in decoder. The
//! certificate then holds a built-in ("legacy") public key. Another thread that looks up an EC
//! or RSA method while the window is open gets the built-in method too, which is what it would
//! get without the engine; a parse on another thread that misses the window takes the decoders.
//!
//! An EC private key is then made to share the leaf's key object ([`ec_key_for_leaf`]): the
//! handshake's key check compares one object with itself, where a provider key would make
//! OpenSSL export the leaf's key to the provider and keep that copy with the certificate
//! (about 2 KiB more per cached name, a curve each). An RSA key stays a provider key; its
//! leaf's public key is exported once (n and e, no curve).
//!
//! The ENGINE functions are looked up at run time: an OpenSSL without them (built
//! `no-engine`, or 4.0, which removed them) parses the usual way.
use super::CryptoError;
use foreign_types::ForeignType;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcKey, EcPoint, PointConversionForm};
use openssl::error::ErrorStack;
use openssl::pkey::{Id, PKey, PKeyRef, Private};
use openssl::x509::{X509Ref, X509};
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

// objects.h: NID_rsaEncryption, NID_X9_62_id_ecPublicKey
const NIDS: [c_int; 2] = [6, 408];

type RegisterFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type UnregisterFn = unsafe extern "C" fn(*mut c_void);
type MethFindFn = unsafe extern "C" fn(c_int) -> *const c_void;
/// `ENGINE_PKEY_METHS_PTR`: with a null method pointer, the NIDs it serves; else the method.
type PkeyMethsFn =
    unsafe extern "C" fn(*mut c_void, *mut *const c_void, *mut *const c_int, c_int) -> c_int;

struct Window {
    engine: *mut c_void,
    register: RegisterFn,
    unregister: UnregisterFn,
}

// SAFETY: the engine is created once and never freed; OpenSSL locks its engine tables, so the
// pointer may be registered and unregistered from any thread.
unsafe impl Send for Window {}
// SAFETY: as above; the struct is never changed after it is made.
unsafe impl Sync for Window {}

static METH_FIND: OnceLock<MethFindFn> = OnceLock::new();

extern "C" {
    // OpenSSL 3 (evp.h): the provider of a provider key, null for a built-in one
    fn EVP_PKEY_get0_provider(pkey: *const openssl_sys::EVP_PKEY) -> *const c_void;
}

fn symbol(name: &CStr) -> *mut c_void {
    // SAFETY: dlsym with a NUL-terminated name; RTLD_DEFAULT searches the libcrypto this
    // library (and nginx) links.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}

/// OpenSSL's built-in method for `nid`, for the engine's method callback.
unsafe extern "C" fn pkey_meths(
    _engine: *mut c_void,
    pmeth: *mut *const c_void,
    nids: *mut *const c_int,
    nid: c_int,
) -> c_int {
    if pmeth.is_null() {
        if !nids.is_null() {
            // SAFETY: OpenSSL passes a valid out-pointer; NIDS is static.
            unsafe { *nids = NIDS.as_ptr() };
        }
        return NIDS.len() as c_int;
    }
    let found = match METH_FIND.get() {
        // SAFETY: EVP_PKEY_meth_find takes any NID and returns a static method or null.
        Some(find) if NIDS.contains(&nid) => unsafe { find(nid) },
        _ => std::ptr::null(),
    };
    // SAFETY: `pmeth` is OpenSSL's valid out-pointer (checked non-null above).
    unsafe { *pmeth = found };
    c_int::from(!found.is_null())
}

fn make_window() -> Option<Window> {
    // OpenSSL 1.1 decodes through the built-in methods anyway.
    // SAFETY: a plain version query.
    if unsafe { openssl_sys::OpenSSL_version_num() } < 0x3000_0000 {
        return None;
    }
    let new = symbol(c"ENGINE_new");
    let set_id = symbol(c"ENGINE_set_id");
    let set_meths = symbol(c"ENGINE_set_pkey_meths");
    let register = symbol(c"ENGINE_register_pkey_meths");
    let unregister = symbol(c"ENGINE_unregister_pkey_meths");
    let find = symbol(c"EVP_PKEY_meth_find");
    if [new, set_id, set_meths, register, unregister, find]
        .iter()
        .any(|p| p.is_null())
    {
        return None;
    }
    // SAFETY: each symbol is the libcrypto function of that name, with these signatures
    // (engine.h, evp.h).
    unsafe {
        let new: unsafe extern "C" fn() -> *mut c_void = std::mem::transmute(new);
        let set_id: unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int =
            std::mem::transmute(set_id);
        let set_meths: unsafe extern "C" fn(*mut c_void, PkeyMethsFn) -> c_int =
            std::mem::transmute(set_meths);
        let _ = METH_FIND.set(std::mem::transmute::<*mut c_void, MethFindFn>(find));
        let engine = new();
        if engine.is_null()
            || set_id(engine, c"resty-acme-builtin-spki".as_ptr()) != 1
            || set_meths(engine, pkey_meths) != 1
        {
            // a failed setup leaks one engine struct, once per process
            return None;
        }
        Some(Window {
            engine,
            register: std::mem::transmute::<*mut c_void, RegisterFn>(register),
            unregister: std::mem::transmute::<*mut c_void, UnregisterFn>(unregister),
        })
    }
}

fn window() -> Option<&'static Window> {
    static WINDOW: OnceLock<Option<Window>> = OnceLock::new();
    WINDOW.get_or_init(make_window).as_ref()
}

/// The certificate of `der`, its public key decoded by OpenSSL's built-in method where that
/// can be chosen (see the module's comment); otherwise as `X509::from_der`.
pub fn parse_der(der: &[u8]) -> Result<X509, ErrorStack> {
    let Some(w) = window() else {
        return X509::from_der(der);
    };
    // SAFETY: the engine is live for the process; registering only adds it to OpenSSL's
    // table for the two NIDs.
    let registered = unsafe { (w.register)(w.engine) } == 1;
    let parsed = X509::from_der(der);
    if registered {
        // SAFETY: as above.
        unsafe { (w.unregister)(w.engine) };
    }
    parsed
}

/// The private key of `scalar` for `leaf` (from [`parse_der`]) as a built-in key that shares the
/// leaf's own EC key object: one copy of the curve for certificate and key where a separate key
/// holds its own (and a provider key makes the handshake's key check export the leaf's key to
/// the provider, a third copy kept with the certificate: about 2 KiB a cached name, P5).
/// `public` is the key's public point (any encoding): Some(Err) when it is not the leaf's, so
/// the key does not belong to the certificate. None when the leaf's key is not a built-in EC
/// key (another type, or decoded by a provider): pair them as usual.
pub fn ec_key_for_leaf(
    leaf: &X509Ref,
    scalar: &[u8],
    public: &[u8],
) -> Option<Result<PKey<Private>, CryptoError>> {
    let pubkey = leaf.public_key().ok()?;
    // SAFETY: a live key; the call only reads which provider holds it.
    if pubkey.id() != Id::EC || !unsafe { EVP_PKEY_get0_provider(pubkey.as_ptr()) }.is_null() {
        return None;
    }
    // the leaf's own EC_KEY, one more reference to it
    let ec = pubkey.ec_key().ok()?;
    Some((|| {
        let group = ec.group();
        let mut ctx = BigNumContext::new()?;
        let theirs = EcPoint::from_bytes(group, public, &mut ctx)?;
        if !ec.public_key().eq(group, &theirs, &mut ctx)? {
            return Err(CryptoError::InvalidInput(
                "the private key does not belong to the certificate".into(),
            ));
        }
        let scalar = BigNum::from_slice(scalar)?;
        // SAFETY: `ec` is the leaf's EC_KEY, which only this parse has seen; the scalar is
        // copied in. From now on it is a key pair that the certificate and the key share.
        if unsafe { openssl_sys::EC_KEY_set_private_key(ec.as_ptr(), scalar.as_ptr()) } != 1 {
            return Err(ErrorStack::get().into());
        }
        // SAFETY: the reference taken above passes to the new EVP_PKEY, which now holds a
        // private key (set just above).
        let ec = unsafe { EcKey::<Private>::from_ptr(std::mem::ManuallyDrop::new(ec).as_ptr()) };
        Ok(PKey::from_ec_key(ec)?)
    })())
}

/// [`ec_key_for_leaf`] from a parsed private key (the store's PEM): its scalar and point read
/// out, the returned key taking its place.
pub fn ec_key_for_leaf_from(
    leaf: &X509Ref,
    key: &PKeyRef<Private>,
) -> Option<Result<PKey<Private>, CryptoError>> {
    if key.id() != Id::EC {
        return None;
    }
    let ec = key.ec_key().ok()?;
    let mut ctx = BigNumContext::new().ok()?;
    let public = ec
        .public_key()
        .to_bytes(ec.group(), PointConversionForm::UNCOMPRESSED, &mut ctx)
        .ok()?;
    ec_key_for_leaf(leaf, &ec.private_key().to_vec(), &public)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::cert::tests::{issue, spec};
    use crate::crypto::{KeyType, PrivateKey};

    #[test]
    fn parses_like_from_der_with_a_builtin_key() {
        for kind in [KeyType::EcP256, KeyType::EcP384, KeyType::Rsa(2048)] {
            let key = PrivateKey::generate(kind).unwrap();
            let cert = issue(&spec("leaf.test", "0a", false, &["leaf.test"]), &key, None);
            let der = cert.to_der().unwrap();
            let got = parse_der(&der).unwrap();
            assert_eq!(got.to_der().unwrap(), der, "{kind:?}");
            let pubkey = got.public_key().unwrap();
            assert!(pubkey.public_eq(&key.pkey), "{kind:?}");
            assert!(window().is_some(), "no built-in decoding here");
            // SAFETY (test): a live key.
            let provider = unsafe { EVP_PKEY_get0_provider(pubkey.as_ptr()) };
            assert!(
                provider.is_null(),
                "{kind:?}: a provider key, not the built-in one"
            );
            // outside the window the usual decoders are back
            let usual = X509::from_der(&der).unwrap().public_key().unwrap();
            // SAFETY (test): a live key.
            assert!(!unsafe { EVP_PKEY_get0_provider(usual.as_ptr()) }.is_null());
        }
        assert!(parse_der(b"\x30\x03\x02\x01\x01").is_err());
    }

    #[test]
    fn ec_key_for_leaf_shares_the_leaf_key_and_refuses_another() {
        use openssl::hash::MessageDigest;
        use openssl::sign::{Signer, Verifier};
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let cert = issue(
            &spec("share.test", "0c", false, &["share.test"]),
            &key,
            None,
        );
        let leaf = parse_der(&cert.to_der().unwrap()).unwrap();
        let pair = ec_key_for_leaf_from(&leaf, &key.pkey).unwrap().unwrap();
        // the same EC_KEY object as the certificate's public key
        let a = pair.ec_key().unwrap();
        let b = leaf.public_key().unwrap().ec_key().unwrap();
        assert_eq!(a.as_ptr(), b.as_ptr());
        let mut signer = Signer::new(MessageDigest::sha256(), &pair).unwrap();
        let sig = signer.sign_oneshot_to_vec(b"hello").unwrap();
        let pubkey = X509::from_der(&cert.to_der().unwrap())
            .unwrap()
            .public_key()
            .unwrap();
        let mut v = Verifier::new(MessageDigest::sha256(), &pubkey).unwrap();
        assert!(v.verify_oneshot(&sig, b"hello").unwrap());
        // a key of another certificate
        let other = PrivateKey::generate(KeyType::EcP256).unwrap();
        let leaf2 = parse_der(&cert.to_der().unwrap()).unwrap();
        let err = ec_key_for_leaf_from(&leaf2, &other.pkey)
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
        // not for RSA, nor for a provider-decoded leaf
        let rsa = PrivateKey::generate(KeyType::Rsa(2048)).unwrap();
        let rcert = issue(&spec("rsa.test", "0d", false, &["rsa.test"]), &rsa, None);
        assert!(
            ec_key_for_leaf_from(&parse_der(&rcert.to_der().unwrap()).unwrap(), &rsa.pkey)
                .is_none()
        );
        assert!(
            ec_key_for_leaf_from(&X509::from_der(&cert.to_der().unwrap()).unwrap(), &key.pkey)
                .is_none()
        );
    }
}
