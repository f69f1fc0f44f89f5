//! Polling of pending objects (RFC 8555 §7.5.1 authorizations, §7.4 orders) and `Retry-After`
//! (RFC 9110 §10.2.3, which §6.6 and §7.4 ask clients to honour).
use super::timestamp::parse_http_date;
use super::Response;

/// Shortest and longest wait between two polls, whatever the server says.
pub const MIN_DELAY: f64 = 1.0;
pub const MAX_DELAY: f64 = 60.0;
/// The default backoff without `Retry-After` follows 1, 1, 2, 3, 5, 8, ... up to this.
pub const BACKOFF_CAP: f64 = 10.0;
/// The first poll of a phase the client just started (a challenge answered, an order
/// finalized) when the server gave no `Retry-After`: validation and issuance often take a
/// fraction of a second, and a whole second here doubles the time to a first certificate.
pub const FIRST_POLL: f64 = 0.25;

/// The `Retry-After` header as an absolute Unix time, unclamped: delay-seconds are added to
/// `now`, an HTTP-date is taken as is. `None` when absent or unparsable.
pub fn retry_after(resp: &Response, now: f64) -> Option<f64> {
    let v = resp.header("retry-after")?.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // Saturate absurd values instead of failing: the caller clamps anyway.
        let secs: f64 = v.parse().unwrap_or(f64::MAX);
        return Some(now + secs);
    }
    parse_http_date(v).map(|t| t as f64)
}

/// The Fibonacci-like default delay before poll number `attempt` (0-based), capped.
pub fn backoff(attempt: u32) -> f64 {
    let (mut a, mut b) = (1.0_f64, 1.0_f64);
    for _ in 0..attempt {
        (a, b) = (b, a + b);
        if a >= BACKOFF_CAP {
            return BACKOFF_CAP;
        }
    }
    a.min(BACKOFF_CAP)
}

/// Why polling stopped without reaching the wanted state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollExpired {
    Deadline,
}

/// One polling phase: a deadline fixed when polling starts, and the time of the next poll.
#[derive(Debug, Clone, PartialEq)]
pub struct Poll {
    pub started: f64,
    pub deadline: f64,
    pub next_at: f64,
    pub attempts: u32,
}

impl Poll {
    /// Starts polling at `now`; the first poll is due after `first_delay` seconds.
    pub fn start(now: f64, timeout: f64, first_delay: f64) -> Poll {
        Poll {
            started: now,
            deadline: now + timeout,
            next_at: now + first_delay,
            attempts: 0,
        }
    }

    /// Whether a poll may be sent now; otherwise sleep until `next_at`.
    pub fn due(&self, now: f64) -> bool {
        now >= self.next_at
    }

    /// After a reply that still is not final: schedule the next poll from `Retry-After`
    /// (clamped to [`MIN_DELAY`, `MAX_DELAY`]) or the default backoff. The last poll happens at
    /// the deadline at the latest; past it the phase has expired.
    pub fn reschedule(&mut self, resp: &Response, now: f64) -> Result<(), PollExpired> {
        if now >= self.deadline {
            return Err(PollExpired::Deadline);
        }
        let delay = match retry_after(resp, now) {
            Some(at) => (at - now).clamp(MIN_DELAY, MAX_DELAY),
            None => backoff(self.attempts),
        };
        self.attempts += 1;
        self.next_at = (now + delay).min(self.deadline);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp_with(retry: &str) -> Response {
        Response {
            status: 200,
            headers: vec![("Retry-After".into(), retry.into())],
            body: vec![],
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(retry_after(&resp_with("5"), 100.0), Some(105.0));
        assert_eq!(retry_after(&resp_with(" 0 "), 100.0), Some(100.0));
        assert_eq!(
            retry_after(&resp_with("Sun, 06 Nov 1994 08:49:37 GMT"), 1.0),
            Some(784_111_777.0)
        );
        assert_eq!(retry_after(&resp_with("-5"), 100.0), None);
        assert_eq!(retry_after(&resp_with("soon"), 100.0), None);
        assert_eq!(retry_after(&Response::default(), 100.0), None);
    }

    #[test]
    fn backoff_series() {
        let got: Vec<f64> = (0..9).map(backoff).collect();
        assert_eq!(got, [1.0, 1.0, 2.0, 3.0, 5.0, 8.0, 10.0, 10.0, 10.0]);
        assert_eq!(backoff(1000), BACKOFF_CAP);
    }

    #[test]
    fn poll_schedule_clamps_and_expires() {
        let mut p = Poll::start(1000.0, 30.0, 0.0);
        assert!(p.due(1000.0));
        // Retry-After 0 is raised to the minimum, 3600 lowered to the maximum but the deadline wins.
        p.reschedule(&resp_with("0"), 1000.0).unwrap();
        assert_eq!(p.next_at, 1001.0);
        assert!(!p.due(1000.5));
        p.reschedule(&resp_with("3600"), 1001.0).unwrap();
        assert_eq!(p.next_at, 1030.0);
        // Without Retry-After: backoff (attempts already 2 → 2 s).
        p.reschedule(&Response::default(), 1010.0).unwrap();
        assert_eq!(p.next_at, 1012.0);
        assert_eq!(
            p.reschedule(&Response::default(), 1030.0),
            Err(PollExpired::Deadline)
        );
    }
}
