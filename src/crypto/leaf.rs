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
//! certificate then holds a legacy public key, which OpenSSL exports to its provider the first
//! time an operation needs one (once per certificate, about 20 µs, when a handshake compares
//! it with the provider key it is served with). Another thread that looks up an EC or RSA
//! method while the window is open gets the built-in method too, which is what it would get
//! without the engine; a parse on another thread that misses the window takes the decoders.
//!
//! The ENGINE functions are looked up at run time: an OpenSSL without them (built
//! `no-engine`, or 4.0, which removed them) parses the usual way.
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::error::ErrorStack;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
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

/// The EC key pair of `curve` (a short name: `prime256v1`, `secp384r1`), its private scalar
/// and its public point, to serve with a certificate from [`parse_der`]: a built-in key where
/// that parse gives built-in public keys, so that the handshake's key check compares two keys
/// of one kind (otherwise OpenSSL exports one to the other's provider, a curve built anew,
/// about 12 µs). The key's curve is copied from one built once per process (1 µs instead of
/// 12). None where `parse_der` gives provider keys, or for another curve: import it as usual.
pub fn ec_keypair(
    curve: &[u8],
    private: &[u8],
    public: &[u8],
) -> Option<Result<PKey<Private>, ErrorStack>> {
    static P256: OnceLock<Option<EcGroup>> = OnceLock::new();
    static P384: OnceLock<Option<EcGroup>> = OnceLock::new();
    window()?;
    let (cell, nid) = match curve {
        b"prime256v1" => (&P256, Nid::X9_62_PRIME256V1),
        b"secp384r1" => (&P384, Nid::SECP384R1),
        _ => return None,
    };
    let group = cell
        .get_or_init(|| EcGroup::from_curve_name(nid).ok())
        .as_ref()?;
    Some((|| {
        let mut ctx = BigNumContext::new()?;
        let point = EcPoint::from_bytes(group, public, &mut ctx)?;
        let scalar = BigNum::from_slice(private)?;
        // not checked against the scalar (a point multiplication): the entry was encoded from
        // a key checked against its certificate, and the handshake compares the points
        PKey::from_ec_key(EcKey::from_private_components(group, &scalar, &point)?)
    })())
}

/// Whether [`parse_der`] takes the built-in decoders here (for tests and the benchmark's log).
pub fn builtin_decoding() -> bool {
    window().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::cert::tests::{issue, spec};
    use crate::crypto::{KeyType, PrivateKey};
    use foreign_types::ForeignTypeRef;

    extern "C" {
        fn EVP_PKEY_get0_provider(pkey: *const openssl_sys::EVP_PKEY) -> *const c_void;
    }

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
            assert!(builtin_decoding());
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
    fn ec_keypair_signs_for_its_leaf() {
        use openssl::hash::MessageDigest;
        use openssl::sign::{Signer, Verifier};
        for (kind, curve) in [
            (KeyType::EcP256, &b"prime256v1"[..]),
            (KeyType::EcP384, b"secp384r1"),
        ] {
            let key = PrivateKey::generate(kind).unwrap();
            let cert = issue(&spec("kp.test", "0b", false, &["kp.test"]), &key, None);
            let leaf = parse_der(&cert.to_der().unwrap()).unwrap();
            let ec = key.pkey.ec_key().unwrap();
            let mut ctx = BigNumContext::new().unwrap();
            let public = ec
                .public_key()
                .to_bytes(
                    ec.group(),
                    openssl::ec::PointConversionForm::UNCOMPRESSED,
                    &mut ctx,
                )
                .unwrap();
            let pair = ec_keypair(curve, &ec.private_key().to_vec(), &public)
                .unwrap()
                .unwrap();
            let pubkey = leaf.public_key().unwrap();
            assert!(pubkey.public_eq(&pair));
            let mut signer = Signer::new(MessageDigest::sha256(), &pair).unwrap();
            let sig = signer.sign_oneshot_to_vec(b"handshake").unwrap();
            let mut v = Verifier::new(MessageDigest::sha256(), &pubkey).unwrap();
            assert!(v.verify_oneshot(&sig, b"handshake").unwrap());
        }
        assert!(ec_keypair(b"secp521r1", b"\x01", b"\x04").is_none());
        assert!(ec_keypair(b"prime256v1", b"\x01", b"\x04\x00")
            .unwrap()
            .is_err());
    }
}
