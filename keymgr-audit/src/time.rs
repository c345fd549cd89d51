//! UTC timestamps: milliseconds since the Unix epoch <-> RFC 3339, and calendar days for
//! daily segments. Small enough to keep here instead of pulling in a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

use keymgr_core::{Error, Result};

const MS_PER_DAY: u64 = 86_400_000;

/// Milliseconds since the Unix epoch, now (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Days since 1970-01-01 -> (year, month 1..=12, day 1..=31) (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) -> days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The UTC day number (days since the epoch) of `ts_ms`.
pub fn day_of(ts_ms: u64) -> u64 {
    ts_ms / MS_PER_DAY
}

/// `YYYY-MM-DD` of `ts_ms` (UTC).
pub fn date_string(ts_ms: u64) -> String {
    let (y, m, d) = civil_from_days((ts_ms / MS_PER_DAY) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// RFC 3339 UTC with milliseconds: `2025-01-31T12:34:56.789Z`.
pub fn format_rfc3339(ts_ms: u64) -> String {
    let rem = ts_ms % MS_PER_DAY;
    let (h, min, s, ms) = (
        rem / 3_600_000,
        (rem / 60_000) % 60,
        (rem / 1000) % 60,
        rem % 1000,
    );
    format!("{}T{h:02}:{min:02}:{s:02}.{ms:03}Z", date_string(ts_ms))
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses an RFC 3339 timestamp (`2025-01-31T12:00:00Z`, `...T12:00:00.5+02:00`, or a bare
/// date `2025-01-31` meaning midnight UTC) into milliseconds since the epoch. Fractions
/// below a millisecond are truncated.
pub fn parse_rfc3339(s: &str) -> Result<u64> {
    let bad = |why: &str| {
        Error::invalid_input(
            "time",
            format!(
                "{s:?} is not an RFC 3339 timestamp ({why}); expected e.g. 2025-01-31T12:00:00Z"
            ),
        )
    };
    let b = s.trim().as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = b.get(from..from + len)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let year = num(0, 4).ok_or_else(|| bad("year"))?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return Err(bad("date separators"));
    }
    let month = num(5, 2)
        .filter(|m| (1..=12).contains(m))
        .ok_or_else(|| bad("month"))?;
    let day = num(8, 2)
        .filter(|d| *d >= 1 && *d <= days_in_month(i64::from(year), month))
        .ok_or_else(|| bad("day"))?;
    let days = days_from_civil(i64::from(year), month, day);
    let mut ms: i64 = days * MS_PER_DAY as i64;
    if b.len() > 10 {
        if !matches!(b[10], b'T' | b't' | b' ') {
            return Err(bad("date and time must be separated by T"));
        }
        let hour = num(11, 2).filter(|h| *h < 24).ok_or_else(|| bad("hour"))?;
        let minute = num(14, 2)
            .filter(|m| *m < 60)
            .ok_or_else(|| bad("minute"))?;
        // 60 is a leap second; it lands on the first second of the next minute.
        let second = num(17, 2)
            .filter(|s| *s <= 60)
            .ok_or_else(|| bad("second"))?;
        if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
            return Err(bad("time separators"));
        }
        ms += (i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second)) * 1000;
        let mut i = 19;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            let mut frac_ms = 0i64;
            while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
                if i - start < 3 {
                    frac_ms = frac_ms * 10 + i64::from(c - b'0');
                }
                i += 1;
            }
            if i == start {
                return Err(bad("empty fraction"));
            }
            for _ in (i - start)..3 {
                frac_ms *= 10;
            }
            ms += frac_ms;
        }
        match b.get(i) {
            Some(b'Z' | b'z') if i + 1 == b.len() => {}
            Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
                let oh = num(i + 1, 2)
                    .filter(|h| *h < 24)
                    .ok_or_else(|| bad("offset"))?;
                let om = num(i + 4, 2)
                    .filter(|m| *m < 60)
                    .ok_or_else(|| bad("offset"))?;
                let offset = (i64::from(oh) * 60 + i64::from(om)) * 60_000;
                // local = UTC + offset, so UTC = local - offset.
                ms -= if *sign == b'+' { offset } else { -offset };
            }
            _ => return Err(bad("missing or malformed zone (Z or +HH:MM)")),
        }
    }
    u64::try_from(ms).map_err(|_| bad("before 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_dates() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29T12:34:56.789Z: a leap day in a year divisible by 400.
        assert_eq!(format_rfc3339(951_827_696_789), "2000-02-29T12:34:56.789Z");
        assert_eq!(
            parse_rfc3339("2000-02-29T12:34:56.789Z").unwrap(),
            951_827_696_789
        );
        assert_eq!(parse_rfc3339("2000-02-29").unwrap(), 951_782_400_000);
        assert_eq!(
            parse_rfc3339("2000-02-29T14:34:56.789123+02:00").unwrap(),
            951_827_696_789
        );
        assert_eq!(
            parse_rfc3339("2000-02-29t10:04:56.7-02:30").unwrap(),
            951_827_696_700
        );
        assert_eq!(date_string(951_827_696_789), "2000-02-29");
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "2025",
            "2025-13-01",
            "2025-02-29",
            "1900-02-29",
            "2025-01-01T25:00:00Z",
            "2025-01-01T12:00:00",
            "2025-01-01T12:00:00.Z",
            "2025-01-01T12:00:00+0200",
            "1969-12-31T23:59:59Z",
            "2025-01-01X12:00:00Z",
        ] {
            let e = parse_rfc3339(s).unwrap_err().to_string();
            assert!(e.contains("RFC 3339"), "{s}: {e}");
        }
    }

    proptest! {
        #[test]
        fn format_parse_round_trip(ts in 0u64..253_402_300_799_999) {
            prop_assert_eq!(parse_rfc3339(&format_rfc3339(ts)).unwrap(), ts);
        }

        #[test]
        fn civil_round_trip(days in -1_000_000i64..1_000_000) {
            let (y, m, d) = civil_from_days(days);
            prop_assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
