//! Anti-replay nonces (RFC 8555 §6.5, §7.2).
use super::Response;

/// Nonces kept for later requests; older ones are dropped beyond this.
pub const POOL_MAX: usize = 16;

/// §6.5.1: a `Replay-Nonce` value is base64url (no padding); clients must ignore anything else.
pub fn is_valid(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The response's valid `Replay-Nonce`, if any.
pub fn from_response(resp: &Response) -> Option<&str> {
    resp.header_all("replay-nonce")
        .into_iter()
        .map(str::trim)
        .find(|n| is_valid(n))
}

/// The pool of unused nonces shared by the operations of one account context. Every response
/// may carry a fresh nonce (§6.5: servers include one in every response to a POST, and in
/// newNonce responses); each nonce is used at most once.
#[derive(Debug, Clone, Default)]
pub struct NoncePool {
    nonces: Vec<String>,
}

impl NoncePool {
    /// Keeps the response's nonce, if valid.
    pub fn harvest(&mut self, resp: &Response) {
        if let Some(n) = from_response(resp) {
            self.push(n.to_string());
        }
    }

    pub fn push(&mut self, nonce: String) {
        if !is_valid(&nonce) || self.nonces.contains(&nonce) {
            return;
        }
        if self.nonces.len() >= POOL_MAX {
            self.nonces.remove(0);
        }
        self.nonces.push(nonce);
    }

    /// The newest nonce (the least likely to have expired), removed from the pool.
    pub fn take(&mut self) -> Option<String> {
        self.nonces.pop()
    }

    /// Removes `nonce` if pooled (e.g. it was handed to the caller instead).
    pub fn forget(&mut self, nonce: &str) {
        self.nonces.retain(|n| n != nonce);
    }

    pub fn len(&self) -> usize {
        self.nonces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nonces.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(nonces: &[&str]) -> Response {
        Response {
            status: 200,
            headers: nonces
                .iter()
                .map(|n| ("Replay-Nonce".to_string(), n.to_string()))
                .collect(),
            body: vec![],
        }
    }

    #[test]
    fn validation() {
        assert!(is_valid("abc-_DEF019"));
        for bad in ["", "a=", "a b", "a+b", "a/b", "é"] {
            assert!(!is_valid(bad), "{bad:?}");
        }
        assert_eq!(from_response(&resp(&["bad nonce", "good"])), Some("good"));
        assert_eq!(from_response(&resp(&[])), None);
    }

    #[test]
    fn pool_is_lifo_bounded_and_unique() {
        let mut p = NoncePool::default();
        p.harvest(&resp(&["n1"]));
        p.harvest(&resp(&["n1"]));
        p.harvest(&resp(&["not valid!"]));
        p.push("n2".into());
        assert_eq!(p.len(), 2);
        assert_eq!(p.take().as_deref(), Some("n2"));
        for i in 0..40 {
            p.push(format!("x{i}"));
        }
        assert_eq!(p.len(), POOL_MAX);
        assert_eq!(p.take().as_deref(), Some("x39"));
        p.forget("x38");
        assert_eq!(p.take().as_deref(), Some("x37"));
        while p.take().is_some() {}
        assert!(p.is_empty());
    }
}
