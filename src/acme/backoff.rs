//! When to try a failed order again: the cause of a failure, and the time of the next try.
//!
//! Pure and clock-free: the caller passes `now` (Unix seconds) and keeps the state (attempt
//! count, recent failed validations) wherever it likes (the Lua side keeps it in storage so a
//! cluster shares it).
//!
//! Causes, from the error of the failed order:
//!
//! - [`Cause::RateLimited`]: the problem type `rateLimited` (RFC 8555 §6.7). The next try is
//!   the reply's `Retry-After` (RFC 9110 §10.2.3; the core turns it into an absolute time),
//!   exactly, or the transient schedule when the CA gave none.
//! - [`Cause::Permanent`]: `rejectedIdentifier`, `malformed`, `unsupportedIdentifier` (§6.7):
//!   the same order fails again until the config (or a human) changes something. No next try.
//! - [`Cause::Validation`]: a challenge failed: `unauthorized`, `incorrectResponse`, `dns`,
//!   `caa`, `connection`, `tls` (§6.7), an authorization or order that became `invalid`, a
//!   challenge the client could not publish. The transient schedule, and on top of it no more
//!   than `validation_max` failures in any `validation_window` seconds (the CA's
//!   failed-validation budget: Let's Encrypt allows 5 per hostname per account per hour).
//! - [`Cause::Transient`]: everything else: transport errors, timeouts, 5xx, `serverInternal`,
//!   `badNonce`, replies that could not be read. `base` doubling per attempt up to `cap`, plus
//!   up to `jitter` (a fraction) of the delay, drawn from a caller-given seed.

/// Why an order failed, as far as trying again is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    Transient,
    Validation,
    RateLimited,
    Permanent,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Transient => "transient",
            Cause::Validation => "validation",
            Cause::RateLimited => "rate_limited",
            Cause::Permanent => "permanent",
        }
    }

    pub fn parse(s: &str) -> Option<Cause> {
        Some(match s {
            "transient" => Cause::Transient,
            "validation" => Cause::Validation,
            "rate_limited" => Cause::RateLimited,
            "permanent" => Cause::Permanent,
            _ => return None,
        })
    }
}

const PREFIX: &str = "urn:ietf:params:acme:error:";

/// Problem types (§6.7) that name a failed validation.
const VALIDATION_TYPES: &[&str] = &[
    "unauthorized",
    "incorrectResponse",
    "dns",
    "caa",
    "connection",
    "tls",
];

/// Problem types (§6.7) after which the same order cannot succeed.
const PERMANENT_TYPES: &[&str] = &["rejectedIdentifier", "malformed", "unsupportedIdentifier"];

fn short(kind: &str) -> &str {
    kind.strip_prefix(PREFIX).unwrap_or(kind)
}

/// The problem type named in an error text (`... unauthorized: ...`, or the full URN), for
/// errors that carry the CA's reasons as text (an invalid authorization or order).
fn type_in_text(text: &str) -> Option<&'static str> {
    let words = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == ':'))
        .map(|w| short(w.trim_end_matches(':')));
    let mut found = None;
    for w in words {
        if let Some(t) = PERMANENT_TYPES.iter().find(|t| **t == w) {
            return Some(t);
        }
        if found.is_none() {
            found = VALIDATION_TYPES.iter().find(|t| **t == w).copied();
        }
    }
    found
}

/// The cause of a failure. `category` is the error's area as the Lua glue names it
/// (`problem`, `transport`, `timeout`, `invalid`, `publish`, `no_challenge`, `malformed`, ...),
/// `problem_type` the problem document's type (short or full), `status` its HTTP status,
/// `text` the error message.
pub fn classify(category: &str, problem_type: Option<&str>, status: u16, text: &str) -> Cause {
    if let Some(kind) = problem_type.map(short) {
        if kind == "rateLimited" || status == 429 {
            return Cause::RateLimited;
        }
        if PERMANENT_TYPES.contains(&kind) {
            return Cause::Permanent;
        }
        if VALIDATION_TYPES.contains(&kind) {
            return Cause::Validation;
        }
        return Cause::Transient;
    }
    match category {
        "invalid" | "publish" | "no_challenge" => match type_in_text(text) {
            Some(t) if PERMANENT_TYPES.contains(&t) => Cause::Permanent,
            _ => Cause::Validation,
        },
        "invalid_input" => Cause::Permanent,
        _ if status == 429 => Cause::RateLimited,
        _ => Cause::Transient,
    }
}

/// The schedule's knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Delay after the first failure (seconds): the original's `failure_cooloff`.
    pub base: f64,
    /// Largest delay of the doubling schedule (seconds).
    pub cap: f64,
    /// Up to this fraction of the delay is added, drawn from the seed (0 = none).
    pub jitter: f64,
    /// At most this many failed validations per `validation_window` seconds.
    pub validation_max: u32,
    pub validation_window: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            base: 300.0,
            cap: 86400.0,
            jitter: 0.1,
            validation_max: 3,
            validation_window: 3600.0,
        }
    }
}

/// A number in [0, 1) from a seed (splitmix64).
fn unit(seed: u64) -> f64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The delay of the doubling schedule after `attempts` consecutive failures (1 = the first).
pub fn doubling_delay(policy: &Policy, attempts: u32, seed: u64) -> f64 {
    let base = policy.base.max(0.0);
    let cap = policy.cap.max(base);
    let exp = attempts.saturating_sub(1).min(60);
    let delay = (base * 2f64.powi(exp as i32)).min(cap);
    delay + delay * policy.jitter.clamp(0.0, 1.0) * unit(seed)
}

/// The time of the next try after a failure at `now`, or `None` for "never by itself".
///
/// `attempts` counts consecutive failures including this one; `validation_failures` are the
/// times of recent failed validations including this one when it is one (any order);
/// `retry_after` is the absolute time from the CA's Retry-After, when it sent one.
pub fn next_try(
    policy: &Policy,
    cause: Cause,
    attempts: u32,
    validation_failures: &[f64],
    retry_after: Option<f64>,
    now: f64,
    seed: u64,
) -> Option<f64> {
    match cause {
        Cause::Permanent => None,
        Cause::RateLimited => match retry_after {
            Some(t) if t.is_finite() => Some(t.max(now)),
            _ => Some(now + doubling_delay(policy, attempts, seed)),
        },
        Cause::Transient => Some(now + doubling_delay(policy, attempts, seed)),
        Cause::Validation => {
            let mut at = now + doubling_delay(policy, attempts, seed);
            let max = policy.validation_max.max(1) as usize;
            let mut recent: Vec<f64> = validation_failures
                .iter()
                .copied()
                .filter(|t| t.is_finite() && *t > now - policy.validation_window)
                .collect();
            recent.sort_by(f64::total_cmp);
            if recent.len() >= max {
                // the next failure may not make max + 1 within one window
                at = at.max(recent[recent.len() - max] + policy.validation_window);
            }
            Some(at)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(base: f64, cap: f64) -> Policy {
        Policy {
            base,
            cap,
            jitter: 0.0,
            validation_max: 3,
            validation_window: 3600.0,
        }
    }

    #[test]
    fn classify_problems() {
        let c = |t: &str, s| classify("problem", Some(t), s, "");
        assert_eq!(
            c("urn:ietf:params:acme:error:rateLimited", 429),
            Cause::RateLimited
        );
        assert_eq!(
            c("urn:ietf:params:acme:error:serverInternal", 500),
            Cause::Transient
        );
        assert_eq!(
            c("urn:ietf:params:acme:error:badNonce", 400),
            Cause::Transient
        );
        assert_eq!(c("rejectedIdentifier", 400), Cause::Permanent);
        assert_eq!(
            c("urn:ietf:params:acme:error:malformed", 400),
            Cause::Permanent
        );
        assert_eq!(
            c("urn:ietf:params:acme:error:unauthorized", 403),
            Cause::Validation
        );
        assert_eq!(c("urn:ietf:params:acme:error:caa", 403), Cause::Validation);
        assert_eq!(c("about:blank", 503), Cause::Transient);
        assert_eq!(c("about:blank", 429), Cause::RateLimited);
    }

    #[test]
    fn classify_other_errors() {
        assert_eq!(
            classify("transport", None, 0, "connection refused"),
            Cause::Transient
        );
        assert_eq!(classify("timeout", None, 0, "order"), Cause::Transient);
        assert_eq!(classify("malformed", None, 0, "not json"), Cause::Transient);
        assert_eq!(
            classify("malformed", None, 429, "unexpected status"),
            Cause::RateLimited
        );
        assert_eq!(
            classify(
                "invalid",
                None,
                0,
                "challenge invalid: http-01 invalid (urn:ietf:params:acme:error:connection: refused)"
            ),
            Cause::Validation
        );
        assert_eq!(
            classify(
                "invalid",
                None,
                0,
                "order x is invalid: rejectedIdentifier (400): no"
            ),
            Cause::Permanent
        );
        assert_eq!(classify("publish", None, 0, "preflight"), Cause::Validation);
        assert_eq!(
            classify("invalid_input", None, 0, "bad name"),
            Cause::Permanent
        );
    }

    #[test]
    fn doubling_to_the_cap() {
        let pol = p(300.0, 3000.0);
        let d: Vec<f64> = (1..=6).map(|n| doubling_delay(&pol, n, 7)).collect();
        assert_eq!(d, vec![300.0, 600.0, 1200.0, 2400.0, 3000.0, 3000.0]);
        assert_eq!(doubling_delay(&pol, 1000, 7), 3000.0);
    }

    #[test]
    fn jitter_only_adds_and_depends_on_the_seed() {
        let pol = Policy {
            jitter: 0.5,
            ..p(100.0, 1000.0)
        };
        let a = doubling_delay(&pol, 1, 1);
        let b = doubling_delay(&pol, 1, 2);
        assert!((100.0..150.0).contains(&a) && (100.0..150.0).contains(&b));
        assert_ne!(a, b);
        assert_eq!(a, doubling_delay(&pol, 1, 1));
    }

    #[test]
    fn rate_limited_waits_for_retry_after_exactly() {
        let pol = p(300.0, 86400.0);
        assert_eq!(
            next_try(&pol, Cause::RateLimited, 1, &[], Some(1007.0), 1000.0, 1),
            Some(1007.0)
        );
        // in the past or absent
        assert_eq!(
            next_try(&pol, Cause::RateLimited, 1, &[], Some(990.0), 1000.0, 1),
            Some(1000.0)
        );
        assert_eq!(
            next_try(&pol, Cause::RateLimited, 2, &[], None, 1000.0, 1),
            Some(1600.0)
        );
    }

    #[test]
    fn permanent_stops() {
        assert_eq!(
            next_try(&Policy::default(), Cause::Permanent, 1, &[], None, 0.0, 0),
            None
        );
    }

    #[test]
    fn validation_budget_per_window() {
        let pol = p(10.0, 10.0);
        // two failures in the window: the doubling schedule alone
        assert_eq!(
            next_try(&pol, Cause::Validation, 2, &[0.0, 10.0], None, 10.0, 0),
            Some(20.0)
        );
        // the third: the fourth try waits until the first has left the window
        assert_eq!(
            next_try(
                &pol,
                Cause::Validation,
                3,
                &[0.0, 10.0, 20.0],
                None,
                20.0,
                0
            ),
            Some(3600.0)
        );
        // old failures do not count
        assert_eq!(
            next_try(
                &pol,
                Cause::Validation,
                5,
                &[-5000.0, 3600.0, 3610.0],
                None,
                3610.0,
                0
            ),
            Some(3620.0)
        );
    }

    #[test]
    fn any_window_holds_at_most_the_budget() {
        let pol = Policy {
            jitter: 0.3,
            ..p(1.0, 4.0)
        };
        let mut fails = vec![];
        let mut now = 0.0;
        for n in 1..50u32 {
            fails.push(now);
            now = next_try(&pol, Cause::Validation, n, &fails, None, now, n as u64).unwrap_or(0.0);
        }
        for (i, t) in fails.iter().enumerate() {
            let within = fails[i..].iter().filter(|u| **u < t + 3600.0).count();
            assert!(within <= 3, "{within} failures within an hour from {t}");
        }
    }

    #[test]
    fn cause_names_round_trip() {
        for c in [
            Cause::Transient,
            Cause::Validation,
            Cause::RateLimited,
            Cause::Permanent,
        ] {
            assert_eq!(Cause::parse(c.as_str()), Some(c));
        }
        assert_eq!(Cause::parse("x"), None);
    }
}
