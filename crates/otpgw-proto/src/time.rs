//! SMPP time formats, without a clock: callers pass the current wall time.
//!
//! - absolute `YYMMDDhhmmsstnnp` (p is `+` or `-`, nn quarter hours from UTC) and
//!   relative `YYMMDDhhmmss000R` validity periods (SMPP 3.4 section 7.1.1);
//! - the `YYMMDDhhmm` dates of textual delivery receipts;
//! - RFC 3339 timestamps for the HTTP API.
//!
//! Wall time is milliseconds since the Unix epoch (`u64`), in UTC.

/// Why a time field was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error("time field must be 16 characters, got {0}")]
    Length(usize),
    #[error("time field has a non-digit where a digit is required")]
    NotDigits,
    #[error("time field has an out-of-range component")]
    Range,
    #[error("time field must end in '+', '-' or 'R'")]
    Suffix,
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYMMDDhhmm` (UTC) of a wall time, as used in receipt dates.
pub fn receipt_date(unix_ms: u64) -> String {
    let secs = (unix_ms / 1000) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{:02}{:02}{:02}{:02}{:02}",
        y.rem_euclid(100),
        m,
        d,
        sod / 3600,
        (sod % 3600) / 60
    )
}

/// RFC 3339 in UTC with milliseconds (`2026-12-02T02:42:49.123Z`), for the HTTP API.
pub fn rfc3339(unix_ms: u64) -> String {
    let secs = (unix_ms / 1000) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60,
        unix_ms % 1000
    )
}

fn digits(s: &[u8]) -> Result<u64, TimeError> {
    s.iter().try_fold(0u64, |acc, &c| {
        if c.is_ascii_digit() {
            Ok(acc * 10 + u64::from(c - b'0'))
        } else {
            Err(TimeError::NotDigits)
        }
    })
}

/// Parse an SMPP time field into an absolute wall time. An empty field is `None`
/// ("not set"). Relative times are added to `now_ms`.
pub fn parse_smpp_time(field: &str, now_ms: u64) -> Result<Option<u64>, TimeError> {
    if field.is_empty() {
        return Ok(None);
    }
    let b = field.as_bytes();
    if b.len() != 16 {
        return Err(TimeError::Length(b.len()));
    }
    let yy = digits(&b[0..2])?;
    let mo = digits(&b[2..4])?;
    let dd = digits(&b[4..6])?;
    let hh = digits(&b[6..8])?;
    let mi = digits(&b[8..10])?;
    let ss = digits(&b[10..12])?;
    let t = digits(&b[12..13])?;
    let nn = digits(&b[13..15])?;
    match b[15] {
        b'R' => {
            if hh > 23 || mi > 59 || ss > 59 {
                return Err(TimeError::Range);
            }
            // Years and months as 365 and 30 days: the usual reading of a relative period.
            let secs = ((yy * 365 + mo * 30 + dd) * 86_400) + hh * 3600 + mi * 60 + ss;
            Ok(Some(now_ms.saturating_add(secs * 1000)))
        }
        p @ (b'+' | b'-') => {
            if !(1..=12).contains(&mo)
                || !(1..=31).contains(&dd)
                || hh > 23
                || mi > 59
                || ss > 59
                || nn > 48
            {
                return Err(TimeError::Range);
            }
            let days = days_from_civil(2000 + yy as i64, mo as u32, dd as u32);
            let local = days * 86_400 + (hh * 3600 + mi * 60 + ss) as i64;
            let offset = (nn * 15 * 60) as i64;
            let utc = if p == b'+' {
                local - offset
            } else {
                local + offset
            };
            if utc < 0 {
                return Err(TimeError::Range);
            }
            Ok(Some(utc as u64 * 1000 + t * 100))
        }
        _ => Err(TimeError::Suffix),
    }
}

/// An absolute SMPP time `YYMMDDhhmmsst00+` in UTC for `unix_ms` (tenths of a
/// second, offset 00 quarter hours).
pub fn absolute_smpp_time(unix_ms: u64) -> String {
    let tenths = (unix_ms % 1000) / 100;
    format!(
        "{}{:02}{tenths}00+",
        receipt_date(unix_ms),
        (unix_ms / 1000) % 60
    )
}

/// A relative SMPP time `YYMMDDhhmmss000R` for a duration in milliseconds, rounded
/// down to whole seconds so it never reaches past the deadline it was made from.
/// Durations longer than 99 days are capped at 99 days.
pub fn relative_smpp_time(duration_ms: u64) -> String {
    let secs = (duration_ms / 1000).min(99 * 86_400 + 86_399);
    let (d, r) = (secs / 86_400, secs % 86_400);
    format!(
        "0000{:02}{:02}{:02}{:02}000R",
        d,
        r / 3600,
        (r % 3600) / 60,
        r % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_date_formats_utc() {
        // 2026-11-26 11:20:00 UTC
        assert_eq!(receipt_date(1_795_692_000_000), "2611261120");
        assert_eq!(receipt_date(0), "7001010000");
        assert_eq!(absolute_smpp_time(1_795_692_007_250), "261126112007200+");
        assert_eq!(rfc3339(1_795_692_000_123), "2026-11-26T11:20:00.123Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn civil_round_trip() {
        for days in [-1000i64, 0, 59, 60, 10_957, 20_000, 30_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn absolute_and_relative_times() {
        let now = 1_795_692_000_000;
        assert_eq!(parse_smpp_time("", now), Ok(None));
        // 2026-11-26 11:25:00.0 at UTC+1h (4 quarter hours) = 10:25 UTC
        let t = parse_smpp_time("261126112500004+", now).unwrap().unwrap();
        assert_eq!(t, now - 55 * 60 * 1000);
        let r = parse_smpp_time("000000000500000R", now).unwrap().unwrap();
        assert_eq!(r, now + 5 * 60 * 1000);
        assert_eq!(
            parse_smpp_time("0000000005", now),
            Err(TimeError::Length(10))
        );
        assert_eq!(
            parse_smpp_time("26112611250000xR", now),
            Err(TimeError::NotDigits)
        );
        assert_eq!(
            parse_smpp_time("261326112500004+", now),
            Err(TimeError::Range)
        );
        assert_eq!(
            parse_smpp_time("2611261125000040", now),
            Err(TimeError::Suffix)
        );
    }

    #[test]
    fn relative_never_exceeds_duration() {
        assert_eq!(relative_smpp_time(300_999), "000000000500000R");
        assert_eq!(relative_smpp_time(90_061_000), "000001010101000R");
        let now = 1_000_000_000_000;
        for ms in [0u64, 999, 1000, 61_500, 86_400_000, 3_000_000_000] {
            let back = parse_smpp_time(&relative_smpp_time(ms), now)
                .unwrap()
                .unwrap();
            assert!(back <= now + ms);
        }
    }
}
