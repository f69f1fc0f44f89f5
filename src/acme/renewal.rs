//! When a certificate is due for renewal, from its own lifetime (no clock: callers pass the
//! times in).
//!
//! The original renews when `notAfter - now < renew_threshold` (7 days), which re-orders every
//! certificate that lives less than the threshold on every pass and at every handshake. Here the
//! lead time (how long before notAfter renewal starts) is
//!
//! - `lifetime / 2` for lifetimes under 10 days (6-day, 12-hour, 5-minute certificates),
//! - `min(renew_threshold, lifetime / 3)` otherwise (a 90-day certificate: the threshold,
//!   exactly as the original; a 45-day one: 7 days as well; a 15-day one: 5 days),
//!
//! where `lifetime = notAfter - notBefore`, or `notAfter - issued` when the time the entry was
//! stored is known and later than notBefore: a CA that backdates notBefore (Let's Encrypt by an
//! hour, some by days) does not make a certificate due the moment it is stored.
//!
//! When the lifetime rule binds (the lead is shorter than `renew_threshold`), the due point is
//! moved earlier by up to a tenth of the lead, by a per-certificate fraction, so that
//! certificates issued in the same second (a fleet, a cluster's first start) are not renewed in
//! the same second. When the threshold binds, the due point is `notAfter - renew_threshold`
//! exactly, the original's rule.

/// Lifetimes below this use half the lifetime as the lead.
pub const SHORT_LIFETIME: f64 = 10.0 * 86_400.0;

/// The Unix time from which a certificate is due for renewal.
///
/// `spread` is a per-certificate fraction in `[0, 1)` (e.g. from its fingerprint); values
/// outside are clamped. `issued` is when the entry was stored, if known.
pub fn renewal_due_at(
    not_before: f64,
    not_after: f64,
    issued: Option<f64>,
    threshold: f64,
    spread: f64,
) -> f64 {
    let start = match issued {
        Some(t) if t.is_finite() && t > not_before && t < not_after => t,
        _ => not_before,
    };
    let lifetime = not_after - start;
    if lifetime.is_nan() || lifetime <= 0.0 {
        // notAfter at or before notBefore: nothing to wait for
        return not_after.min(not_before);
    }
    let threshold = if threshold.is_finite() {
        threshold.max(0.0)
    } else {
        0.0
    };
    let by_lifetime = if lifetime < SHORT_LIFETIME {
        lifetime / 2.0
    } else {
        lifetime / 3.0
    };
    if threshold <= by_lifetime {
        return not_after - threshold;
    }
    let spread = if spread.is_finite() {
        spread.clamp(0.0, 1.0)
    } else {
        0.0
    };
    not_after - by_lifetime * (1.0 + spread / 10.0)
}

/// Whether a certificate with this due point is due at `now`.
pub fn is_due(due_at: f64, now: f64) -> bool {
    now >= due_at
}

/// A spread fraction in `[0, 1)` from bytes that identify a certificate (FNV-1a, 32 bits).
pub fn spread_of(bytes: &[u8]) -> f64 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    f64::from(h) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: f64 = 86_400.0;
    const HOUR: f64 = 3_600.0;
    const T0: f64 = 1_800_000_000.0;

    fn due(nb: f64, na: f64, issued: Option<f64>, now: f64, spread: f64) -> bool {
        is_due(renewal_due_at(nb, na, issued, 7.0 * DAY, spread), now)
    }

    #[test]
    fn ninety_days_keeps_the_threshold_exactly() {
        let na = T0 + 90.0 * DAY;
        for spread in [0.0, 0.5, 0.999] {
            assert_eq!(
                renewal_due_at(T0, na, None, 7.0 * DAY, spread),
                na - 7.0 * DAY
            );
            assert!(!due(T0, na, None, na - 8.0 * DAY, spread));
            assert!(!due(T0, na, None, na - 7.0 * DAY - 1.0, spread));
            assert!(due(T0, na, None, na - 7.0 * DAY, spread));
            assert!(due(T0, na, None, na - 6.0 * DAY, spread));
        }
        // a custom threshold too, as the original's
        assert_eq!(
            renewal_due_at(T0, na, None, 30.0 * DAY, 0.3),
            na - 30.0 * DAY
        );
    }

    #[test]
    fn forty_five_and_fifteen_days() {
        let na = T0 + 45.0 * DAY;
        assert_eq!(renewal_due_at(T0, na, None, 7.0 * DAY, 0.7), na - 7.0 * DAY);
        // 15 days: a third (5 days) is below the threshold
        let na = T0 + 15.0 * DAY;
        let at = renewal_due_at(T0, na, None, 7.0 * DAY, 0.0);
        assert_eq!(at, na - 5.0 * DAY);
        assert!(!due(T0, na, None, na - 5.0 * DAY - 1.0, 0.0));
    }

    #[test]
    fn six_days_renews_at_half() {
        let na = T0 + 6.0 * DAY;
        assert_eq!(renewal_due_at(T0, na, None, 7.0 * DAY, 0.0), na - 3.0 * DAY);
        // fresh: never due right after issuance (the original: always)
        assert!(!due(T0, na, None, T0 + 1.0, 0.99));
        assert!(!due(T0, na, None, T0 + 2.0 * DAY, 0.99));
        assert!(due(T0, na, None, T0 + 3.0 * DAY, 0.0));
        // the spread moves it earlier by at most a tenth of the lead
        let at = renewal_due_at(T0, na, None, 7.0 * DAY, 0.5);
        assert_eq!(at, na - 3.0 * DAY * 1.05);
    }

    #[test]
    fn twelve_hours_and_five_minutes() {
        let na = T0 + 12.0 * HOUR;
        assert_eq!(
            renewal_due_at(T0, na, None, 7.0 * DAY, 0.0),
            T0 + 6.0 * HOUR
        );
        assert!(!due(T0, na, None, T0 + 5.0 * HOUR, 0.0));
        assert!(due(T0, na, None, T0 + 6.0 * HOUR, 0.0));
        let na = T0 + 300.0;
        assert_eq!(renewal_due_at(T0, na, None, 7.0 * DAY, 0.0), T0 + 150.0);
        let at = renewal_due_at(T0, na, None, 7.0 * DAY, 0.999);
        assert!(at > T0 + 134.0 && at <= T0 + 150.0, "{at}");
        assert!(!due(T0, na, None, T0 + 10.0, 0.999));
    }

    #[test]
    fn backdated_not_before_does_not_make_it_due() {
        // 12 hours of validity, notBefore backdated by 30 days: by notBefore alone the
        // lifetime is 30.5 days and the lead 7 days, more than the 12 hours left
        let issued = T0;
        let nb = T0 - 30.0 * DAY;
        let na = T0 + 12.0 * HOUR;
        assert!(due(nb, na, None, issued + 1.0, 0.0));
        assert!(!due(nb, na, Some(issued), issued + 1.0, 0.0));
        assert_eq!(
            renewal_due_at(nb, na, Some(issued), 7.0 * DAY, 0.0),
            T0 + 6.0 * HOUR
        );
        // the usual one-hour backdate: due at half of 13 hours before notAfter
        let nb = T0 - HOUR;
        assert!(!due(nb, na, None, issued + 1.0, 0.0));
        assert_eq!(
            renewal_due_at(nb, na, None, 7.0 * DAY, 0.0),
            na - 6.5 * HOUR
        );
        // a stored time outside the validity is ignored
        assert_eq!(
            renewal_due_at(T0, T0 + 300.0, Some(T0 + 1e6), 7.0 * DAY, 0.0),
            T0 + 150.0
        );
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(renewal_due_at(T0, T0, None, 7.0 * DAY, 0.0), T0);
        assert_eq!(renewal_due_at(T0, T0 - 5.0, None, 7.0 * DAY, 0.0), T0 - 5.0);
        let na = T0 + 300.0;
        assert_eq!(renewal_due_at(T0, na, None, f64::NAN, f64::NAN), na);
        assert_eq!(renewal_due_at(T0, na, None, 0.0, 0.0), na);
        assert_eq!(
            renewal_due_at(T0, na, None, 7.0 * DAY, 7.0),
            T0 + 150.0 - 15.0
        );
    }

    #[test]
    fn spread_is_a_fraction() {
        for s in [&b""[..], b"a", b"certificate der", &[0xff; 64]] {
            let f = spread_of(s);
            assert!((0.0..1.0).contains(&f), "{f}");
        }
        assert_ne!(spread_of(b"one"), spread_of(b"two"));
    }
}
