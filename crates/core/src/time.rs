//! Calendar arithmetic without I/O: Unix seconds as civil dates and RFC 3339.

/// The civil date (year, month, day) of a day count since 1970-01-01
/// (Howard Hinnant's algorithm).
pub fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

/// RFC 3339 in UTC with nanoseconds (`2026-12-05T09:06:20.000000000Z`).
pub fn rfc3339_nanos(secs: i64, nanos: i32) -> String {
    let (y, m, d) = civil(secs.div_euclid(86400));
    let rem = secs.rem_euclid(86400);
    if !(0..=9999).contains(&y) || !(0..1_000_000_000).contains(&nanos) {
        return format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        );
    }
    // digit by digit (every exported flow has two of these)
    let mut b = *b"0000-00-00T00:00:00.000000000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, m);
    put(8, 2, d);
    put(11, 2, rem / 3600);
    put(14, 2, rem % 3600 / 60);
    put(17, 2, rem % 60);
    put(20, 9, nanos as i64);
    String::from_utf8(b.to_vec()).expect("ASCII digits")
}

/// RFC 3339 in UTC to the second (`2026-12-05T09:06:20Z`), as Kubernetes
/// writes timestamps.
pub fn rfc3339(secs: i64) -> String {
    let (y, m, d) = civil(secs.div_euclid(86400));
    let rem = secs.rem_euclid(86400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// A duration as flags take it: `5s`, `500ms`, `1.5m`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{s:?}: a duration such as 5s or 500ms");
    let (n, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_around_leap_years_and_the_epoch() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(-1), (1969, 12, 31));
        assert_eq!(civil(11016), (2000, 2, 29));
        assert_eq!(rfc3339(1_796_461_580), "2026-12-05T09:06:20Z");
        assert_eq!(rfc3339_nanos(0, 5), "1970-01-01T00:00:00.000000005Z");
    }
}

#[cfg(test)]
mod fast_tests {
    #[test]
    fn rfc3339_nanos_is_digit_exact() {
        assert_eq!(super::rfc3339_nanos(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(super::rfc3339_nanos(951_782_400, 999_999_999), "2000-02-29T00:00:00.999999999Z");
        assert_eq!(super::rfc3339_nanos(-1, 0), "1969-12-31T23:59:59.000000000Z");
        // as the formatter writes it, over the years
        let mut t: i64 = -86_400 * 365 * 3;
        while t < 86_400 * 365 * 120 {
            let (y, m, d) = super::civil(t.div_euclid(86400));
            let r = t.rem_euclid(86400);
            let want = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
                r / 3600,
                r % 3600 / 60,
                r % 60,
                123
            );
            assert_eq!(super::rfc3339_nanos(t, 123), want);
            t += 86_399 * 7 + 13;
        }
    }
}
