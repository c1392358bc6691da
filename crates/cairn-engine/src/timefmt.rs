//! Times as people read them: `2026-12-04 23:24:39Z`, "in 28 s". Messages
//! and tables use these; machine formats keep epoch seconds. Times are
//! seconds since the epoch, as the store's `Timestamp`.

/// `2026-12-04 23:24:39Z`: a timestamp as people read it.
pub fn utc(t: i64) -> String {
    const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(FORMAT).ok())
        .unwrap_or_else(|| t.to_string())
}

/// "in 28 s", "3 min ago": a moment relative to `now`.
pub fn relative(t: i64, now: i64) -> String {
    let d = t.saturating_sub(now);
    let span = span(d.unsigned_abs());
    match d {
        0 => "now".into(),
        d if d > 0 => format!("in {span}"),
        _ => format!("{span} ago"),
    }
}

/// A number of seconds in the largest unit that keeps it readable.
fn span(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_people_read_them() {
        assert_eq!(utc(1_796_426_709), "2026-12-04 23:25:09Z");
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(relative(130, 102), "in 28 s");
        assert_eq!(relative(100, 100), "now");
        assert_eq!(relative(100, 400), "5 min ago");
        assert_eq!(relative(100_000, 100), "in 27 h");
        assert_eq!(relative(0, 864_000), "10 d ago");
    }

    #[test]
    fn spans_change_unit_past_two_of_the_next() {
        assert_eq!(span(119), "119 s");
        assert_eq!(span(120), "2 min");
        assert_eq!(span(7199), "119 min");
        assert_eq!(span(7200), "2 h");
        assert_eq!(span(48 * 3600), "2 d");
    }
}
