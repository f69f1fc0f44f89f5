//! The per-worker cache autossl serves certificates from: one LRU of parsed chains and keys per
//! key type, with resty.lrucache's semantics (a TTL per entry, an expired entry handed back as
//! stale until evicted, negative entries).
//!
//! It lives here rather than in a Lua table so that OpenSSL's certificate callback can serve a
//! cached name without entering Lua (src/tls/serve.rs), and because an entry costs about
//! 150 bytes here where a resty.lrucache slot with its cdata took about 290.
use foreign_types::ForeignType;
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::X509;
use openssl_sys as ffi;
use std::collections::HashMap;
use std::sync::Arc;

/// A parsed chain (leaf first) and its key, with the MD5 of the stored value they came from
/// (so that an expired entry whose stored value did not change is kept without parsing again).
pub struct CertKey {
    pub chain: Stack<X509>,
    pub pkey: PKey<Private>,
    pub digest: [u8; 16],
}

impl CertKey {
    /// Takes over one reference to `chain` (a `STACK_OF(X509)*` owning its elements, as
    /// `ngx.ssl.parse_pem_cert` and `core.cert_chain` return it) and to `pkey`.
    ///
    /// # Safety
    /// Both pointers valid, non-null, from the libcrypto this library links, and no longer
    /// freed by the caller.
    pub unsafe fn from_raw(
        chain: *mut ffi::stack_st_X509,
        pkey: *mut ffi::EVP_PKEY,
        digest: [u8; 16],
    ) -> Self {
        CertKey {
            // SAFETY: ownership of both passes to the new values (caller's contract).
            chain: unsafe { Stack::from_ptr(chain) },
            pkey: unsafe { PKey::from_ptr(pkey) },
            digest,
        }
    }

    /// The handles, borrowed: valid while the entry is in the cache.
    pub fn as_raw(&self) -> (*mut ffi::stack_st_X509, *mut ffi::EVP_PKEY) {
        (self.chain.as_ptr(), self.pkey.as_ptr())
    }

    /// New references to the same chain and key, for a caller that keeps them beyond the
    /// entry's life (`get_cert_from_cache`): a new stack holding a reference to each
    /// certificate, and the key up-ref'd.
    pub fn to_owned_raw(
        &self,
    ) -> Result<(*mut ffi::stack_st_X509, *mut ffi::EVP_PKEY), crate::crypto::CryptoError> {
        let mut chain = Stack::new()?;
        for cert in self.chain.iter() {
            chain.push(cert.to_owned())?;
        }
        let pkey = self.pkey.clone();
        let chain = std::mem::ManuallyDrop::new(chain);
        let pkey = std::mem::ManuallyDrop::new(pkey);
        Ok((chain.as_ptr(), pkey.as_ptr()))
    }
}

/// What a lookup found: an entry within its TTL, or one past it (stale). `None` inside is a
/// negative entry ("not in the store").
pub enum Found<'a> {
    Fresh(Option<&'a CertKey>),
    Stale(Option<&'a CertKey>),
}

const NIL: u32 = u32::MAX;

struct Node {
    key: Arc<[u8]>,
    value: Option<CertKey>,
    /// Seconds (the clock of `ngx.now()`); the entry is fresh while `now <= expires`.
    expires: f64,
    prev: u32,
    next: u32,
}

pub struct CertCache {
    map: HashMap<Arc<[u8]>, u32>,
    nodes: Vec<Node>,
    /// Most recently used first.
    head: u32,
    tail: u32,
    capacity: usize,
}

impl CertCache {
    /// A cache of at most `capacity` names (at least one). Both tables are sized up front (up
    /// to `RESERVE` names): a table that doubles while it fills leaves its old copies in the
    /// worker's heap.
    pub fn new(capacity: usize) -> Self {
        const RESERVE: usize = 1 << 17;
        let capacity = capacity.clamp(1, NIL as usize - 1);
        CertCache {
            map: HashMap::with_capacity(capacity.min(RESERVE)),
            nodes: Vec::with_capacity(capacity.min(RESERVE)),
            head: NIL,
            tail: NIL,
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The entry of `key`, made the most recently used.
    pub fn get(&mut self, key: &[u8], now: f64) -> Option<Found<'_>> {
        let idx = *self.map.get(key)?;
        self.move_to_front(idx);
        let node = &self.nodes[idx as usize];
        let value = node.value.as_ref();
        Some(if now <= node.expires {
            Found::Fresh(value)
        } else {
            Found::Stale(value)
        })
    }

    /// Stores `value` (None: a negative entry) under `key` until `expires`, replacing what
    /// was there; a full cache drops its least recently used entry.
    pub fn set(&mut self, key: &[u8], value: Option<CertKey>, expires: f64) {
        if let Some(&idx) = self.map.get(key) {
            let node = &mut self.nodes[idx as usize];
            node.value = value;
            node.expires = expires;
            self.move_to_front(idx);
            return;
        }
        let key: Arc<[u8]> = Arc::from(key);
        let idx = if self.nodes.len() < self.capacity {
            self.nodes.push(Node {
                key: key.clone(),
                value,
                expires,
                prev: NIL,
                next: NIL,
            });
            (self.nodes.len() - 1) as u32
        } else {
            let idx = self.tail;
            self.unlink(idx);
            let node = &mut self.nodes[idx as usize];
            // a deleted slot's key is no longer in the map (and may equal a live one)
            if self.map.get(&node.key) == Some(&idx) {
                self.map.remove(&node.key);
            }
            node.key = key.clone();
            node.value = value;
            node.expires = expires;
            idx
        };
        self.map.insert(key, idx);
        self.link_front(idx);
    }

    /// Moves the expiry of a positive entry to `expires`, if there is one and (with `digest`)
    /// it was parsed from a stored value of that MD5. Whether it did.
    pub fn refresh(&mut self, key: &[u8], digest: Option<&[u8; 16]>, expires: f64) -> bool {
        let Some(&idx) = self.map.get(key) else {
            return false;
        };
        let node = &mut self.nodes[idx as usize];
        match &node.value {
            Some(v) if digest.is_none_or(|d| *d == v.digest) => {
                node.expires = expires;
                true
            }
            _ => false,
        }
    }

    /// Removes `key`; whether it was there. Its slot goes to the tail: the next new name
    /// takes it.
    pub fn delete(&mut self, key: &[u8]) -> bool {
        let Some(idx) = self.map.remove(key) else {
            return false;
        };
        let node = &mut self.nodes[idx as usize];
        node.value = None;
        node.expires = f64::NEG_INFINITY;
        // the slot keeps its key until reused; the map no longer points at it
        node.key = Arc::from(&b""[..]);
        self.unlink(idx);
        self.link_back(idx);
        true
    }

    fn unlink(&mut self, idx: u32) {
        let (prev, next) = {
            let n = &self.nodes[idx as usize];
            (n.prev, n.next)
        };
        if prev == NIL {
            self.head = next;
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.nodes[next as usize].prev = prev;
        }
        let n = &mut self.nodes[idx as usize];
        n.prev = NIL;
        n.next = NIL;
    }

    fn link_front(&mut self, idx: u32) {
        let old = self.head;
        {
            let n = &mut self.nodes[idx as usize];
            n.prev = NIL;
            n.next = old;
        }
        if old == NIL {
            self.tail = idx;
        } else {
            self.nodes[old as usize].prev = idx;
        }
        self.head = idx;
    }

    fn link_back(&mut self, idx: u32) {
        let old = self.tail;
        {
            let n = &mut self.nodes[idx as usize];
            n.next = NIL;
            n.prev = old;
        }
        if old == NIL {
            self.head = idx;
        } else {
            self.nodes[old as usize].next = idx;
        }
        self.tail = idx;
    }

    fn move_to_front(&mut self, idx: u32) {
        if self.head != idx {
            self.unlink(idx);
            self.link_front(idx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::cert::tests::{issue, spec};
    use crate::crypto::{KeyType, PrivateKey};

    fn certkey(tag: u8) -> CertKey {
        let key = PrivateKey::generate(KeyType::EcP256).unwrap();
        let leaf = issue(
            &spec("cache.test", "01", false, &["cache.test"]),
            &key,
            None,
        );
        let mut chain = Stack::new().unwrap();
        chain.push(leaf).unwrap();
        CertKey {
            chain,
            pkey: key.pkey,
            digest: [tag; 16],
        }
    }

    fn digest_of(found: Option<Found<'_>>) -> Option<(bool, Option<u8>)> {
        found.map(|f| match f {
            Found::Fresh(v) => (true, v.map(|c| c.digest[0])),
            Found::Stale(v) => (false, v.map(|c| c.digest[0])),
        })
    }

    #[test]
    fn fresh_then_stale_then_refreshed() {
        let mut c = CertCache::new(4);
        assert!(c.get(b"a.test", 0.0).is_none());
        c.set(b"a.test", Some(certkey(1)), 10.0);
        assert_eq!(digest_of(c.get(b"a.test", 10.0)), Some((true, Some(1))));
        assert_eq!(digest_of(c.get(b"a.test", 10.5)), Some((false, Some(1))));
        // another stored value: no refresh; the same one: fresh again
        assert!(!c.refresh(b"a.test", Some(&[2; 16]), 20.0));
        assert!(c.refresh(b"a.test", Some(&[1; 16]), 20.0));
        assert_eq!(digest_of(c.get(b"a.test", 15.0)), Some((true, Some(1))));
        assert!(c.refresh(b"a.test", None, 30.0));
        assert_eq!(digest_of(c.get(b"a.test", 25.0)), Some((true, Some(1))));
    }

    #[test]
    fn negative_entries_are_not_refreshed() {
        let mut c = CertCache::new(4);
        c.set(b"n.test", None, 5.0);
        assert_eq!(digest_of(c.get(b"n.test", 1.0)), Some((true, None)));
        assert!(!c.refresh(b"n.test", None, 50.0));
        assert_eq!(digest_of(c.get(b"n.test", 6.0)), Some((false, None)));
        // a positive value replaces the negative one
        c.set(b"n.test", Some(certkey(3)), 50.0);
        assert_eq!(digest_of(c.get(b"n.test", 6.0)), Some((true, Some(3))));
    }

    #[test]
    fn least_recently_used_goes_first() {
        let mut c = CertCache::new(3);
        c.set(b"a", Some(certkey(1)), 100.0);
        c.set(b"b", None, 100.0);
        c.set(b"c", Some(certkey(3)), 100.0);
        assert!(c.get(b"a", 0.0).is_some()); // a is now the most recent
        c.set(b"d", Some(certkey(4)), 100.0); // b goes
        assert!(c.get(b"b", 0.0).is_none());
        assert_eq!(c.len(), 3);
        c.set(b"e", None, 100.0); // c goes
        assert!(c.get(b"c", 0.0).is_none());
        for k in [&b"a"[..], b"d", b"e"] {
            assert!(c.get(k, 0.0).is_some(), "{k:?}");
        }
        // replacing keeps the count
        c.set(b"a", Some(certkey(9)), 100.0);
        assert_eq!(c.len(), 3);
        assert_eq!(digest_of(c.get(b"a", 0.0)), Some((true, Some(9))));
    }

    #[test]
    fn deleted_slots_are_reused_first() {
        let mut c = CertCache::new(2);
        c.set(b"a", Some(certkey(1)), 100.0);
        c.set(b"b", Some(certkey(2)), 100.0);
        assert!(c.delete(b"a"));
        assert!(!c.delete(b"a"));
        assert_eq!(c.len(), 1);
        c.set(b"c", Some(certkey(3)), 100.0);
        // b stays: the free slot of a was taken, nothing evicted
        assert_eq!(digest_of(c.get(b"b", 0.0)), Some((true, Some(2))));
        assert_eq!(digest_of(c.get(b"c", 0.0)), Some((true, Some(3))));
        assert!(c.get(b"a", 0.0).is_none());
    }

    #[test]
    fn capacity_one_works() {
        let mut c = CertCache::new(0);
        c.set(b"a", None, 1.0);
        c.set(b"b", None, 1.0);
        assert!(c.get(b"a", 0.0).is_none());
        assert!(c.get(b"b", 0.0).is_some());
        assert_eq!(c.len(), 1);
    }
}
