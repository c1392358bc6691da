//! Date functions: `date_time_add` and `utc_now`, like ARM's `dateTimeAdd`
//! and `utcNow`.
//!
//! Timestamps are read in ISO 8601 (`2024-03-05T17:53:18Z`,
//! `2024-03-05 17:53:18.5+02:00`, `2024-03-05`, and the compact
//! `20240305T175318Z` that `utc_now()` writes); a timestamp without an offset
//! is UTC. Durations are ISO 8601 (`PT1H`, `P1D`, `-P1DT12H`, `P2W`); as in
//! ARM, a year is always 365 days and a month always 30 days.
//!
//! Output formats are .NET date and time format strings (invariant culture),
//! as in ARM: the standard ones (`d`, `D`, `f`, `F`, `g`, `G`, `M`, `o`, `r`,
//! `s`, `t`, `T`, `u`, `U`, `Y`) and custom ones built from `yyyy`, `MM`,
//! `dd`, `HH`, `mm`, `ss`, `fff`, `tt`, `zzz`, `K`, quoted literals and so on.
//!
//! The clock is never read here: `utc_now` formats the instant the caller
//! put in [`super::FunctionContext::now`].

use minijinja::Error;
use minijinja::value::Value;
use time::{Date, Month, OffsetDateTime, SignedDuration, Time, UtcOffset};

use super::args::{expect_str, invalid};

/// ARM's default `utcNow` format.
pub const DEFAULT_UTC_NOW_FORMAT: &str = "yyyyMMddTHHmmssZ";

const NANOS_PER_SEC: i128 = 1_000_000_000;
const NANOS_PER_DAY: i128 = 86_400 * NANOS_PER_SEC;

/// `utc_now(format=None)`: the injected "now", in UTC, formatted with a .NET
/// format string (default `yyyyMMddTHHmmssZ`, e.g. `20240305T175318Z`).
pub fn utc_now(now: OffsetDateTime, format: Option<Value>) -> Result<String, Error> {
    const F: &str = "utc_now";
    let format = match &format {
        None => DEFAULT_UTC_NOW_FORMAT,
        Some(v) if v.is_none() => DEFAULT_UTC_NOW_FORMAT,
        Some(v) => expect_str(F, "the format", v)?,
    };
    let now = to_utc(now).map_err(|e| invalid(format!("{F}(): {e}")))?;
    format_dotnet(now, format).map_err(|e| invalid(format!("{F}(): {e}")))
}

/// `date_time_add(base, duration, format=None)`: `base` plus an ISO 8601
/// duration, like ARM's `dateTimeAdd`. Without `format` the result is ISO
/// 8601 (`2024-03-06T17:53:18Z`).
pub fn date_time_add(base: Value, duration: Value, format: Option<Value>) -> Result<String, Error> {
    const F: &str = "date_time_add";
    let base_str = expect_str(F, "the base time", &base)?;
    let duration_str = expect_str(F, "the duration", &duration)?;
    let format = match &format {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(expect_str(F, "the format", v)?),
    };
    let base = parse_timestamp(base_str)
        .map_err(|e| invalid(format!("{F}(): invalid base time {base_str:?}: {e}")))?;
    let delta = parse_duration(duration_str)
        .map_err(|e| invalid(format!("{F}(): invalid duration {duration_str:?}: {e}")))?;
    let result = base.checked_add(delta).ok_or_else(|| {
        invalid(format!(
            "{F}(): {base_str} plus {duration_str} is outside the supported range of dates"
        ))
    })?;
    match format {
        None => Ok(iso(result)),
        Some(f) => format_dotnet(result, f).map_err(|e| invalid(format!("{F}(): {e}"))),
    }
}

/// The same instant in UTC, or an error at the edges of the supported range.
fn to_utc(dt: OffsetDateTime) -> Result<OffsetDateTime, String> {
    dt.checked_to_offset(UtcOffset::UTC)
        .ok_or_else(|| "the time is outside the supported range of dates in UTC".to_string())
}

/// ISO 8601 / RFC 3339 text: `Z` for UTC, fractional seconds only when
/// present.
fn iso(dt: OffsetDateTime) -> String {
    let mut out = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    );
    if dt.nanosecond() != 0 {
        let frac = format!("{:09}", dt.nanosecond());
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push_str(&offset_text(dt.offset(), true));
    out
}

/// `Z` (when `z_for_utc`) or `+hh:mm`.
fn offset_text(offset: UtcOffset, z_for_utc: bool) -> String {
    if offset.is_utc() && z_for_utc {
        return "Z".into();
    }
    let secs = offset.whole_seconds();
    let sign = if secs < 0 { '-' } else { '+' };
    let secs = secs.unsigned_abs();
    format!("{sign}{:02}:{:02}", secs / 3600, (secs / 60) % 60)
}

// ---------------------------------------------------------------------------
// Parsing

/// A tiny cursor over ASCII text.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Cursor {
            s: s.as_bytes(),
            pos: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn done(&self) -> bool {
        self.pos >= self.s.len()
    }

    /// Exactly `n` digits as a number.
    fn digits(&mut self, n: usize, what: &str) -> Result<u32, String> {
        let end = self.pos + n;
        let slice = self
            .s
            .get(self.pos..end)
            .filter(|d| d.iter().all(u8::is_ascii_digit))
            .ok_or_else(|| format!("expected {n} digits for the {what}"))?;
        self.pos = end;
        Ok(slice
            .iter()
            .fold(0, |acc, d| acc * 10 + u32::from(d - b'0')))
    }

    /// Whether the next `n` bytes are all digits.
    fn digits_ahead(&self, n: usize) -> bool {
        self.s
            .get(self.pos..self.pos + n)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    }
}

/// Parses an ISO 8601 timestamp (see the module docs for the forms).
pub fn parse_timestamp(s: &str) -> Result<OffsetDateTime, String> {
    let mut c = Cursor::new(s.trim());
    let year = c.digits(4, "year")? as i32;
    let extended = c.eat(b'-');
    let month = c.digits(2, "month")?;
    if extended && !c.eat(b'-') {
        return Err("expected '-' between month and day".into());
    }
    let day = c.digits(2, "day")?;
    let month = u8::try_from(month)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .ok_or_else(|| format!("month {month} does not exist"))?;
    let date = Date::from_calendar_date(year, month, day as u8).map_err(|_| {
        format!(
            "{year:04}-{:02}-{day:02} is not a valid date",
            u8::from(month)
        )
    })?;

    let mut time = Time::MIDNIGHT;
    if matches!(c.peek(), Some(b'T' | b't' | b' ')) {
        c.pos += 1;
        let hour = c.digits(2, "hour")?;
        let colon = c.eat(b':');
        let minute = c.digits(2, "minute")?;
        let mut second = 0;
        let mut nanos = 0;
        let has_seconds = if colon {
            c.eat(b':')
        } else {
            c.digits_ahead(2)
        };
        if has_seconds {
            second = c.digits(2, "second")?;
            if c.eat(b'.') || c.eat(b',') {
                let start = c.pos;
                while c.peek().is_some_and(|b| b.is_ascii_digit()) {
                    c.pos += 1;
                }
                let frac = &s.trim()[start..c.pos];
                if frac.is_empty() {
                    return Err("expected digits after the decimal point".into());
                }
                let padded: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
                nanos = padded
                    .parse::<u32>()
                    .map_err(|_| "invalid fraction".to_string())?;
            }
        }
        time = Time::from_hms_nano(hour as u8, minute as u8, second as u8, nanos)
            .map_err(|_| format!("{hour:02}:{minute:02}:{second:02} is not a valid time of day"))?;
    }

    let offset = match c.peek() {
        None => UtcOffset::UTC,
        Some(b'Z' | b'z') => {
            c.pos += 1;
            UtcOffset::UTC
        }
        Some(sign @ (b'+' | b'-')) => {
            c.pos += 1;
            let h = c.digits(2, "offset hours")?;
            let m = if c.eat(b':') || c.digits_ahead(2) {
                c.digits(2, "offset minutes")?
            } else {
                0
            };
            if h > 23 || m > 59 {
                return Err("the offset is out of range".into());
            }
            let (h, m) = (h as i8, m as i8);
            let (h, m) = if sign == b'-' { (-h, -m) } else { (h, m) };
            UtcOffset::from_hms(h, m, 0).map_err(|_| "the offset is out of range".to_string())?
        }
        Some(_) => return Err("unexpected text after the time".into()),
    };
    if !c.done() {
        return Err("unexpected text at the end".into());
    }
    Ok(OffsetDateTime::new_in_offset(date, time, offset))
}

/// Parses an ISO 8601 duration (`P1Y2M3W4DT5H6M7.5S`, optionally signed).
/// A year is 365 days and a month 30 days, as in ARM.
pub fn parse_duration(s: &str) -> Result<SignedDuration, String> {
    let s = s.trim();
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let body = body
        .strip_prefix(['P', 'p'])
        .ok_or("a duration starts with 'P', e.g. P1D or PT1H")?;
    const DATE_UNITS: &[(u8, i128)] = &[
        (b'Y', 365 * NANOS_PER_DAY),
        (b'M', 30 * NANOS_PER_DAY),
        (b'W', 7 * NANOS_PER_DAY),
        (b'D', NANOS_PER_DAY),
    ];
    const TIME_UNITS: &[(u8, i128)] = &[
        (b'H', 3600 * NANOS_PER_SEC),
        (b'M', 60 * NANOS_PER_SEC),
        (b'S', NANOS_PER_SEC),
    ];
    let too_large = || "the duration is too large".to_string();
    let mut total: i128 = 0;
    let mut in_time = false;
    let mut next_unit = 0; // index into the current unit table: units must come in order
    let mut components = 0;
    let mut time_components = 0;
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'T' || bytes[i] == b't' {
            if in_time {
                return Err("'T' appears twice".into());
            }
            in_time = true;
            next_unit = 0;
            i += 1;
            continue;
        }
        // A number: digits with an optional fraction.
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let int_part = &body[start..i];
        let mut frac_part = "";
        if i < bytes.len() && (bytes[i] == b'.' || bytes[i] == b',') {
            i += 1;
            let fstart = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            frac_part = &body[fstart..i];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(format!("expected a number at {:?}", &body[start..]));
        }
        let unit = bytes
            .get(i)
            .map(u8::to_ascii_uppercase)
            .ok_or("a number must be followed by a unit (Y, M, W, D, H or S)")?;
        i += 1;
        let table = if in_time { TIME_UNITS } else { DATE_UNITS };
        let pos = table[next_unit..]
            .iter()
            .position(|(u, _)| *u == unit)
            .map(|p| p + next_unit)
            .ok_or_else(|| {
                if table.iter().any(|(u, _)| *u == unit) {
                    format!("the unit '{}' is out of order or repeated", unit as char)
                } else if in_time {
                    format!("'{}' is not a time unit (H, M or S)", unit as char)
                } else {
                    format!(
                        "'{}' is not a date unit (Y, M, W or D); put time units after 'T'",
                        unit as char
                    )
                }
            })?;
        next_unit = pos + 1;
        let per = table[pos].1;
        if int_part.len() > 20 || frac_part.len() > 9 {
            return Err(too_large());
        }
        let whole: i128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| too_large())?
        };
        let mut nanos = whole.checked_mul(per).ok_or_else(too_large)?;
        if !frac_part.is_empty() {
            let frac: i128 = frac_part.parse().map_err(|_| too_large())?;
            let scale = 10i128.pow(frac_part.len() as u32);
            nanos = nanos
                .checked_add(frac * per / scale)
                .ok_or_else(too_large)?;
        }
        total = total.checked_add(nanos).ok_or_else(too_large)?;
        components += 1;
        if in_time {
            time_components += 1;
        }
    }
    if in_time && time_components == 0 {
        return Err("'T' must be followed by hours, minutes or seconds".into());
    }
    if components == 0 {
        return Err("a duration needs at least one component, e.g. P1D or PT1H".into());
    }
    if negative {
        total = -total;
    }
    let secs = i64::try_from(total / NANOS_PER_SEC).map_err(|_| too_large())?;
    // |remainder| < 1e9, so it fits and `new` does not carry.
    let sub = (total % NANOS_PER_SEC) as i32;
    Ok(SignedDuration::new(secs, sub))
}

// ---------------------------------------------------------------------------
// .NET format strings

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// The custom pattern behind a .NET standard format (invariant culture), and
/// whether the value is shown in UTC.
fn standard_pattern(c: char) -> Option<(&'static str, bool)> {
    Some(match c {
        'd' => ("MM/dd/yyyy", false),
        'D' => ("dddd, dd MMMM yyyy", false),
        'f' => ("dddd, dd MMMM yyyy HH:mm", false),
        'F' => ("dddd, dd MMMM yyyy HH:mm:ss", false),
        'g' => ("MM/dd/yyyy HH:mm", false),
        'G' => ("MM/dd/yyyy HH:mm:ss", false),
        'M' | 'm' => ("MMMM dd", false),
        'O' | 'o' => ("yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK", false),
        'R' | 'r' => ("ddd, dd MMM yyyy HH':'mm':'ss 'GMT'", true),
        's' => ("yyyy'-'MM'-'dd'T'HH':'mm':'ss", false),
        't' => ("HH:mm", false),
        'T' => ("HH:mm:ss", false),
        'u' => ("yyyy'-'MM'-'dd HH':'mm':'ss'Z'", true),
        'U' => ("dddd, dd MMMM yyyy HH:mm:ss", true),
        'Y' | 'y' => ("yyyy MMMM", false),
        _ => return None,
    })
}

/// Formats `dt` with a .NET date/time format string.
pub fn format_dotnet(dt: OffsetDateTime, fmt: &str) -> Result<String, String> {
    if fmt.is_empty() {
        return Ok(iso(dt));
    }
    let mut chars = fmt.chars();
    if let (Some(c), None) = (chars.next(), chars.next()) {
        let (pattern, utc) = standard_pattern(c).ok_or_else(|| {
            format!(
                "{fmt:?} is not a standard date format (d, D, f, F, g, G, M, o, r, s, t, T, u, \
                 U, Y); use %{c} for the custom specifier alone"
            )
        })?;
        let dt = if utc { to_utc(dt)? } else { dt };
        return format_custom(dt, pattern);
    }
    format_custom(dt, fmt)
}

/// Formats `dt` with a .NET custom date/time format string.
fn format_custom(dt: OffsetDateTime, fmt: &str) -> Result<String, String> {
    let chars: Vec<char> = fmt.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        // Length of the run of the same letter.
        let mut run = 1;
        while i + run < chars.len() && chars[i + run] == c {
            run += 1;
        }
        match c {
            'y' => {
                let y = dt.year();
                match run {
                    1 => out.push_str(&(y.rem_euclid(100)).to_string()),
                    2 => out.push_str(&format!("{:02}", y.rem_euclid(100))),
                    n => out.push_str(&format!("{y:0n$}")),
                }
            }
            'M' => {
                let m = u8::from(dt.month());
                match run {
                    1 => out.push_str(&m.to_string()),
                    2 => out.push_str(&format!("{m:02}")),
                    3 => out.push_str(&MONTHS[usize::from(m - 1)][..3]),
                    _ => out.push_str(MONTHS[usize::from(m - 1)]),
                }
            }
            'd' => {
                let day_name = DAYS[usize::from(dt.weekday().number_days_from_monday())];
                match run {
                    1 => out.push_str(&dt.day().to_string()),
                    2 => out.push_str(&format!("{:02}", dt.day())),
                    3 => out.push_str(&day_name[..3]),
                    _ => out.push_str(day_name),
                }
            }
            'H' => match run {
                1 => out.push_str(&dt.hour().to_string()),
                _ => out.push_str(&format!("{:02}", dt.hour())),
            },
            'h' => {
                let h12 = match dt.hour() % 12 {
                    0 => 12,
                    h => h,
                };
                match run {
                    1 => out.push_str(&h12.to_string()),
                    _ => out.push_str(&format!("{h12:02}")),
                }
            }
            'm' => match run {
                1 => out.push_str(&dt.minute().to_string()),
                _ => out.push_str(&format!("{:02}", dt.minute())),
            },
            's' => match run {
                1 => out.push_str(&dt.second().to_string()),
                _ => out.push_str(&format!("{:02}", dt.second())),
            },
            'f' | 'F' => {
                if run > 7 {
                    return Err(format!("{fmt:?} has more than 7 '{c}' fraction digits"));
                }
                let digits = format!("{:09}", dt.nanosecond());
                let digits = &digits[..run];
                if c == 'f' {
                    out.push_str(digits);
                } else {
                    let trimmed = digits.trim_end_matches('0');
                    if trimmed.is_empty() {
                        // .NET drops a decimal point right before an empty F.
                        if out.ends_with('.') {
                            out.pop();
                        }
                    } else {
                        out.push_str(trimmed);
                    }
                }
            }
            't' => {
                let ampm = if dt.hour() < 12 { "AM" } else { "PM" };
                match run {
                    1 => out.push_str(&ampm[..1]),
                    _ => out.push_str(ampm),
                }
            }
            'g' => out.push_str("A.D."),
            'z' => {
                let secs = dt.offset().whole_seconds();
                let sign = if secs < 0 { '-' } else { '+' };
                let secs = secs.unsigned_abs();
                let (h, m) = (secs / 3600, (secs / 60) % 60);
                match run {
                    1 => out.push_str(&format!("{sign}{h}")),
                    2 => out.push_str(&format!("{sign}{h:02}")),
                    _ => out.push_str(&format!("{sign}{h:02}:{m:02}")),
                }
            }
            'K' => {
                for _ in 0..run {
                    out.push_str(&offset_text(dt.offset(), true));
                }
            }
            '\'' | '"' => {
                // A quoted literal.
                let close = chars[i + 1..]
                    .iter()
                    .position(|x| *x == c)
                    .ok_or_else(|| format!("{fmt:?} has an unclosed {c} quote"))?;
                out.extend(&chars[i + 1..i + 1 + close]);
                i += close + 2;
                continue;
            }
            '\\' => {
                let next = chars
                    .get(i + 1)
                    .ok_or_else(|| format!("{fmt:?} ends with a lone backslash"))?;
                out.push(*next);
                i += 2;
                continue;
            }
            '%' => {
                // `%d` is the custom specifier `d` on its own.
                if chars.get(i + 1).is_none_or(|n| *n == '%') {
                    return Err(format!(
                        "{fmt:?} has a '%' that is not followed by a specifier"
                    ));
                }
                i += 1;
                continue;
            }
            _ => {
                for _ in 0..run {
                    out.push(c);
                }
            }
        }
        i += run;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    fn add(base: &str, dur: &str) -> String {
        date_time_add(base.into(), dur.into(), None).unwrap_or_else(|e| panic!("{e:#}"))
    }

    #[test]
    fn date_time_add_arm_docs_examples() {
        assert_eq!(add("2023-01-01 00:00:00Z", "P1Y"), "2024-01-01T00:00:00Z");
        assert_eq!(add("2024-01-01 00:00:00Z", "P1Y"), "2024-12-31T00:00:00Z");
        assert_eq!(add("2023-02-01 00:00:00Z", "P1M"), "2023-03-03T00:00:00Z");
        assert_eq!(add("2024-02-01 00:00:00Z", "P1M"), "2024-03-02T00:00:00Z");
        // ARM's other examples (base 2020-04-07 14:53:14Z).
        assert_eq!(add("2020-04-07 14:53:14Z", "P3Y"), "2023-04-07T14:53:14Z");
        assert_eq!(add("2020-04-07 14:53:14Z", "-P9D"), "2020-03-29T14:53:14Z");
        assert_eq!(add("2020-04-07 14:53:14Z", "PT1H"), "2020-04-07T15:53:14Z");
    }

    #[test]
    fn date_time_add_durations() {
        let base = "2024-03-05T17:53:18Z";
        assert_eq!(add(base, "P1D"), "2024-03-06T17:53:18Z");
        assert_eq!(add(base, "-P1D"), "2024-03-04T17:53:18Z");
        assert_eq!(add(base, "+PT30M"), "2024-03-05T18:23:18Z");
        assert_eq!(add(base, "P2W"), "2024-03-19T17:53:18Z");
        assert_eq!(add(base, "P1DT1H1M1S"), "2024-03-06T18:54:19Z");
        assert_eq!(add(base, "PT0.5S"), "2024-03-05T17:53:18.5Z");
        assert_eq!(add(base, "PT1,25S"), "2024-03-05T17:53:19.25Z");
        assert_eq!(add(base, "P0.5D"), "2024-03-06T05:53:18Z");
        assert_eq!(add(base, "PT36H"), "2024-03-07T05:53:18Z");
        assert_eq!(add(base, "p1dt1h"), "2024-03-06T18:53:18Z");
        assert_eq!(add(base, "P0D"), base);
    }

    #[test]
    fn date_time_add_bases() {
        assert_eq!(add("2024-03-05", "P1D"), "2024-03-06T00:00:00Z");
        assert_eq!(add("20240305T175318Z", "PT1S"), "2024-03-05T17:53:19Z");
        assert_eq!(add("2024-03-05T17:53", "PT1M"), "2024-03-05T17:54:00Z");
        assert_eq!(add("2024-03-05T17:53:18", "PT1M"), "2024-03-05T17:54:18Z");
        assert_eq!(
            add("2024-03-05T17:53:18+02:00", "PT1H"),
            "2024-03-05T18:53:18+02:00"
        );
        assert_eq!(
            add("2024-03-05T17:53:18-0530", "PT1H"),
            "2024-03-05T18:53:18-05:30"
        );
        assert_eq!(
            add("2024-03-05T17:53:18.1234567Z", "PT0S"),
            "2024-03-05T17:53:18.1234567Z"
        );
        assert_eq!(
            add(" 2024-03-05T00:00:00z ", "PT0S"),
            "2024-03-05T00:00:00Z"
        );
    }

    #[test]
    fn date_time_add_formats() {
        let f = |fmt: &str| {
            date_time_add(
                "2024-03-05T07:03:08.25Z".into(),
                "P0D".into(),
                Some(fmt.into()),
            )
            .unwrap_or_else(|e| panic!("{fmt}: {e:#}"))
        };
        assert_eq!(f("yyyy-MM-dd"), "2024-03-05");
        assert_eq!(f("d"), "03/05/2024");
        assert_eq!(f("D"), "Tuesday, 05 March 2024");
        assert_eq!(f("u"), "2024-03-05 07:03:08Z");
        assert_eq!(f("s"), "2024-03-05T07:03:08");
        assert_eq!(f("o"), "2024-03-05T07:03:08.2500000Z");
        assert_eq!(f("r"), "Tue, 05 Mar 2024 07:03:08 GMT");
        assert_eq!(f("t"), "07:03");
        assert_eq!(f("T"), "07:03:08");
        assert_eq!(f("g"), "03/05/2024 07:03");
        assert_eq!(f("G"), "03/05/2024 07:03:08");
        assert_eq!(f("M"), "March 05");
        assert_eq!(f("Y"), "2024 March");
        assert_eq!(f("M/d/yy h:m:s tt"), "3/5/24 7:3:8 AM");
        assert_eq!(f("%d"), "5");
        assert_eq!(f("%M"), "3");
        assert_eq!(f("ddd MMM"), "Tue Mar");
        assert_eq!(f("HH:mm:ss.fff"), "07:03:08.250");
        assert_eq!(f("HH:mm:ss.FFF"), "07:03:08.25");
        assert_eq!(f("zzz"), "+00:00");
        assert_eq!(f("'Year' yyyy"), "Year 2024");
        assert_eq!(f("\"q\"yyyy"), "q2024");
        assert_eq!(f("\\y\\e\\s"), "yes");
        assert_eq!(f("yyyyMMddTHHmmssZ"), "20240305T070308Z");
        assert_eq!(f(""), "2024-03-05T07:03:08.25Z");
        let whole = date_time_add(
            "2024-03-05T15:00:00Z".into(),
            "P0D".into(),
            Some("HH:mm:ss.FFF t".into()),
        )
        .unwrap();
        assert_eq!(whole, "15:00:00 P");
    }

    #[test]
    fn date_time_add_errors() {
        let e = |b: &str, d: &str| {
            date_time_add(b.into(), d.into(), None)
                .unwrap_err()
                .detail()
                .unwrap_or_default()
                .to_string()
        };
        assert!(e("2024-13-01", "P1D").contains("month 13 does not exist"));
        assert!(e("2023-02-29", "P1D").contains("not a valid date"));
        assert!(e("2024-03-05T25:00", "P1D").contains("not a valid time of day"));
        assert!(e("2024-03-05T10:00:00+25:00", "P1D").contains("offset is out of range"));
        assert!(e("yesterday", "P1D").contains(r#"invalid base time "yesterday""#));
        assert!(e("2024-03-05T10:00:00Zjunk", "P1D").contains("unexpected text"));
        assert!(e("2024-03-05T10:00:00.", "P1D").contains("digits after the decimal point"));
        assert!(e("2024-03-05", "1D").contains("starts with 'P'"));
        assert!(e("2024-03-05", "P").contains("at least one component"));
        assert!(e("2024-03-05", "PT").contains("'T' must be followed"));
        assert!(e("2024-03-05", "P1H").contains("not a date unit"));
        assert!(e("2024-03-05", "PT1D").contains("not a time unit"));
        assert!(e("2024-03-05", "P1D1Y").contains("out of order"));
        assert!(e("2024-03-05", "P1D1D").contains("out of order or repeated"));
        assert!(e("2024-03-05", "PT1HT1M").contains("'T' appears twice"));
        assert!(e("2024-03-05", "P1").contains("followed by a unit"));
        assert!(e("2024-03-05", "PXD").contains("expected a number"));
        assert!(e("2024-03-05", "P99999999999999999999999Y").contains("too large"));
        assert!(e("2024-03-05", "P99999999999999999999Y").contains("too large"));
        assert!(e("2024-03-05", "P9999999999D").contains("outside the supported range"));
        assert!(e("2024-03-05", "-P9999999999D").contains("outside the supported range"));
        let edge = date_time_add(
            "9999-12-31T23:00:00-05:00".into(),
            "P0D".into(),
            Some("u".into()),
        )
        .unwrap_err();
        assert!(
            edge.detail()
                .unwrap()
                .contains("outside the supported range")
        );
        assert!(err("date_time_add(1, 'P1D')").contains("the base time must be a string, got int"));
        assert!(err("date_time_add('2024-03-05', none)").contains("the duration must be a string"));
        assert!(
            err("date_time_add('2024-03-05', 'P1D', 'Q')").contains("not a standard date format")
        );
        assert!(err("date_time_add('2024-03-05', 'P1D', 'yyyy \\'x')").contains("unclosed"));
        assert!(err("date_time_add('2024-03-05', 'P1D', 'ffffffff')").contains("more than 7"));
        assert!(
            err("date_time_add('2024-03-05', 'P1D', 'yyyy%')")
                .contains("not followed by a specifier")
        );
        assert!(err("date_time_add('2024-03-05', 'P1D', 'yyyy\\\\')").contains("lone backslash"));
    }

    #[test]
    fn utc_now_uses_the_injected_clock() {
        assert_eq!(json("utc_now()"), r#""20240305T175318Z""#);
        assert_eq!(json("utc_now('u')"), r#""2024-03-05 17:53:18Z""#);
        assert_eq!(json("utc_now('d')"), r#""03/05/2024""#);
        assert_eq!(json("utc_now('M d')"), r#""3 5""#);
        assert_eq!(json("utc_now(none)"), r#""20240305T175318Z""#);
        assert_eq!(
            json("date_time_add(utc_now(), 'P1D')"),
            r#""2024-03-06T17:53:18Z""#
        );
        assert!(err("utc_now(5)").contains("utc_now(): the format must be a string"));
        // A non-UTC clock is shown in UTC.
        let now = ::time::macros::datetime!(2024-03-05 19:53:18 +02:00);
        assert_eq!(utc_now(now, None).unwrap(), "20240305T175318Z");
        let edge = ::time::macros::datetime!(9999-12-31 23:00:00 -05:00);
        assert!(utc_now(edge, None).is_err());
    }
}
