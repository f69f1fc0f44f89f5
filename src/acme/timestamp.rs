//! The two date formats the protocol carries: HTTP-date in `Retry-After` (RFC 9110 §5.6.7) and
//! RFC 3339 timestamps in ACME objects (`expires`, RFC 9773 `suggestedWindow`).
//!
//! Both become Unix seconds. RFC 3339 is read here, not with the `time` crate, which rejects the
//! space separator RFC 3339 §5.6 allows and reads a leap second (`:60`) as the second before; here
//! it is folded into the next second, as §5.6 permits applications without a leap table.

use std::time::UNIX_EPOCH;

/// Days from 1970-01-01 to year-month-day (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        _ => 28,
    }
}

/// Unix seconds of a validated civil date and time; `None` when a field is out of range.
fn unix(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<i64> {
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60
    {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + i64::from(h * 3600 + mi * 60 + s))
}

/// Exactly `n` ASCII digits as a number.
fn digits(s: &str, n: usize) -> Option<u32> {
    if s.len() != n || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// An HTTP-date (RFC 9110 §5.6.7) as Unix seconds: IMF-fixdate and, as recipients must, the
/// obsolete RFC 850 and asctime forms (the `httpdate` crate; it also checks the day name).
pub fn parse_http_date(s: &str) -> Option<i64> {
    let t = httpdate::parse_http_date(s).ok()?;
    i64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_secs()).ok()
}

/// An RFC 3339 `date-time` (§5.6) as Unix seconds, fractional seconds truncated.
/// `T`/`t` or a space separate date and time; the offset is `Z`/`z` or `±HH:MM`.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let y = digits(&s[0..4], 4)?;
    let mo = digits(&s[5..7], 2)?;
    let d = digits(&s[8..10], 2)?;
    let h = digits(&s[11..13], 2)?;
    let mi = digits(&s[14..16], 2)?;
    let sec = digits(&s[17..19], 2)?;
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let off = &rest[1..];
            if off.len() != 5 || off.as_bytes()[2] != b':' {
                return None;
            }
            let (oh, om) = (digits(&off[0..2], 2)?, digits(&off[3..5], 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * i64::from(oh * 3600 + om * 60)
        }
    };
    Some(unix(i64::from(y), mo, d, h, mi, sec)? - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_date_forms() {
        // RFC 9110 §5.6.7's example, all three forms: 784111777.
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Sun Nov  6 08:49:37 1994"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 23:59:59 GMT"),
            Some(1_709_251_199)
        );
        for bad in [
            "",
            "120",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Mon, 06 Nov 1994 08:49:37 GMT",
            "Wed, 31 Dec 1969 23:59:59 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Thu, 29 Feb 2023 00:00:00 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1994 08:49:37:00 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn rfc3339_forms() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        // RFC 3339 §5.8 examples.
        assert_eq!(parse_rfc3339("1985-04-12T23:20:50.52Z"), Some(482_196_050));
        assert_eq!(
            parse_rfc3339("1996-12-19T16:39:57-08:00"),
            parse_rfc3339("1996-12-20T00:39:57Z")
        );
        assert_eq!(parse_rfc3339("1996-12-20T00:39:57Z"), Some(851_042_397));
        assert_eq!(
            parse_rfc3339("1990-12-31T23:59:60Z"),
            parse_rfc3339("1991-01-01T00:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2025-01-02t03:04:05.123456789+01:30"),
            Some(1_735_787_045 - 5400)
        );
        assert_eq!(parse_rfc3339("2025-01-02T03:04:05Z"), Some(1_735_787_045));
        assert_eq!(parse_rfc3339("2025-01-02 03:04:05z"), Some(1_735_787_045));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1));
        for bad in [
            "",
            "2025-01-02",
            "2025-01-02T03:04:05",
            "2025-01-02T03:04:05.Z",
            "2025-01-02T03:04:05+0100",
            "2025-13-02T03:04:05Z",
            "2025-02-29T03:04:05Z",
            "2025-01-02T25:04:05Z",
            "2025-01-02X03:04:05Z",
            "2025-01-02T03:04:05Zjunk",
            "+025-01-02T03:04:05Z",
            "2025-01-02T03:04:05+24:00",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }
}
