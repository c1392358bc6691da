//! How one JSON value reads in a table cell, and what its column is called.
//!
//! The rule is chosen by the field's name, here and nowhere else:
//!
//! - `*_at` holding an integer is a time in epoch seconds: `2026-12-04 23:24:39Z` (UTC);
//!   `expires_at` is a deadline and also says how far off it is:
//!   `2026-12-04 23:24:39Z (in 28 s)` or `(28 s ago)`;
//! - `*_ms` holding an integer is a duration: `340 ms`, `1.2 s`, `2 min 5 s`;
//! - `changes`, `summary` and `counts` holding integers are change counts:
//!   `14 created, 1 updated`;
//! - any other list or object is flattened when short (`a, b`, `k=v, k=v`)
//!   and summarised otherwise (`[12 items]`, `{7 keys}`), as the az CLI does.
//!
//! Only tables (and, for [`duration`], progress messages) come here: JSON,
//! YAML and TSV keep the machine forms. A value a rule cannot read (a time
//! out of range, a negative duration) is shown as it is, never hidden.

use serde_json::Value as J;
use time::OffsetDateTime;

/// Epoch seconds, as the state stores times. The CLI passes the real clock;
/// tests pin it, since a deadline reads relative to it.
pub type Now = i64;

/// Most members of an object spelt out as `k=v`; more are `{N keys}`.
const FEW_MEMBERS: usize = 4;
/// Most items of a list spelt out before `+N more`.
const FEW_ITEMS: usize = 5;

/// What a field holds, known from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// A moment in the past or present: `started_at`, `acquired_at`.
    Time,
    /// A moment that matters relative to now: `expires_at`.
    Deadline,
    /// Milliseconds: `duration_ms`, `elapsed_ms`.
    Duration,
    /// Resources per action: a plan's `summary`, a run's `counts`.
    Counts,
    Plain,
}

fn field(key: Option<&str>) -> Field {
    match key {
        Some("expires_at") => Field::Deadline,
        Some(k) if k.ends_with("_at") => Field::Time,
        Some(k) if k.ends_with("_ms") => Field::Duration,
        Some("changes" | "summary" | "counts") => Field::Counts,
        _ => Field::Plain,
    }
}

/// The column title for a field: `instance_count` → `Instance Count`, as az
/// prints them; a `_ms` suffix is dropped since the cell carries its unit.
pub fn header(key: &str) -> String {
    let key = match field(Some(key)) {
        Field::Duration => key.strip_suffix("_ms").unwrap_or(key),
        _ => key,
    };
    key.split(['_', '-'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The text of `value` in a cell of the field `key` (`None`: a bare value,
/// such as a list item).
pub fn cell(key: Option<&str>, value: &J, now: Now) -> String {
    let int = value.as_i64();
    match (field(key), value, int) {
        (Field::Time, _, Some(t)) => utc(t).unwrap_or_else(|| t.to_string()),
        (Field::Deadline, _, Some(t)) => match utc(t) {
            Some(at) => format!("{at} ({})", relative(t, now)),
            None => t.to_string(),
        },
        (Field::Duration, _, Some(ms)) => match u64::try_from(ms) {
            Ok(ms) => duration(ms),
            Err(_) => ms.to_string(),
        },
        (Field::Counts, J::Object(m), _) => counts(m).unwrap_or_else(|| nested(value, now)),
        _ => nested(value, now),
    }
}

/// `2026-12-04 23:24:39Z`; `None` outside the years the calendar handles.
fn utc(epoch: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp(epoch)
        .is_ok()
        .then(|| cairn_engine::timefmt::utc(epoch))
}

/// `in 28 s`, `28 s ago`, `now`.
fn relative(at: i64, now: Now) -> String {
    cairn_engine::timefmt::relative(at, now)
}

/// `340 ms`, `1.2 s`, `2 min 5 s`, `1 h 3 min`: tables and progress
/// messages say durations alike.
pub fn duration(ms: u64) -> String {
    match ms {
        m if m < 1000 => format!("{m} ms"),
        m if m < 60_000 => format!("{:.1} s", m as f64 / 1000.0),
        m if m < 3_600_000 => format!("{} min {} s", m / 60_000, m % 60_000 / 1000),
        m => format!("{} h {} min", m / 3_600_000, m % 3_600_000 / 60_000),
    }
}

/// `14 created, 1 updated`: the non-zero counts in the order given, or
/// `no changes`; `None` unless every member is a count.
fn counts(m: &serde_json::Map<String, J>) -> Option<String> {
    let mut parts = Vec::new();
    for (k, v) in m {
        let n = v.as_u64()?;
        if n > 0 {
            parts.push(format!("{n} {}", action_word(k)));
        }
    }
    Some(if parts.is_empty() {
        "no changes".into()
    } else {
        parts.join(", ")
    })
}

/// The plan says `create`, the run's report `created`: both read `created`.
fn action_word(key: &str) -> &str {
    match key {
        "create" | "created" => "created",
        "update" | "updated" => "updated",
        "replace" | "replaced" => "replaced",
        "delete" | "deleted" => "deleted",
        "no_op" => "unchanged",
        other => other,
    }
}

fn is_scalar(v: &J) -> bool {
    !matches!(v, J::Array(_) | J::Object(_))
}

/// Scalars as they are; short lists and objects flattened, others counted.
fn nested(value: &J, now: Now) -> String {
    match value {
        J::Null => String::new(),
        J::String(s) => s.clone(),
        J::Bool(_) | J::Number(_) => value.to_string(),
        J::Array(items) if items.iter().all(is_scalar) => {
            let mut shown: Vec<String> = items
                .iter()
                .take(FEW_ITEMS)
                .map(|i| cell(None, i, now))
                .collect();
            if items.len() > FEW_ITEMS {
                shown.push(format!("+{} more", items.len() - FEW_ITEMS));
            }
            shown.join(", ")
        }
        J::Array(items) => plural(items.len(), "[", "item", "]"),
        J::Object(m) if m.len() <= FEW_MEMBERS && m.values().all(is_scalar) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", cell(Some(k), v, now)))
            .collect::<Vec<_>>()
            .join(", "),
        J::Object(m) => plural(m.len(), "{", "key", "}"),
    }
}

fn plural(n: usize, open: &str, noun: &str, close: &str) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("{open}{n} {noun}{s}{close}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 2026-12-04 23:24:39Z.
    const NOW: Now = 1_796_426_679;

    fn c(key: &str, v: J) -> String {
        cell(Some(key), &v, NOW)
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(c("started_at", json!(NOW)), "2026-12-04 23:24:39Z");
        assert_eq!(c("finished_at", json!(0)), "1970-01-01 00:00:00Z");
        assert_eq!(c("acquired_at", json!(NOW - 5)), "2026-12-04 23:24:34Z");
        assert_eq!(
            c("created_at", json!(1_700_000_000)),
            "2023-11-14 22:13:20Z"
        );
    }

    #[test]
    fn a_time_out_of_range_is_shown_as_it_is() {
        assert_eq!(c("started_at", json!(i64::MAX)), i64::MAX.to_string());
        assert_eq!(c("expires_at", json!(i64::MIN)), i64::MIN.to_string());
    }

    #[test]
    fn an_at_field_that_is_not_an_integer_is_left_alone() {
        assert_eq!(c("started_at", json!("yesterday")), "yesterday");
        assert_eq!(c("started_at", json!(1.5)), "1.5");
        assert_eq!(c("started_at", J::Null), "");
    }

    #[test]
    fn a_deadline_says_how_far_off_it_is() {
        assert_eq!(
            c("expires_at", json!(NOW + 28)),
            "2026-12-04 23:25:07Z (in 28 s)"
        );
        assert_eq!(
            c("expires_at", json!(NOW - 28)),
            "2026-12-04 23:24:11Z (28 s ago)"
        );
        assert_eq!(c("expires_at", json!(NOW)), "2026-12-04 23:24:39Z (now)");
        assert_eq!(
            c("expires_at", json!(NOW + 600)),
            "2026-12-04 23:34:39Z (in 10 min)"
        );
        assert_eq!(
            c("expires_at", json!(NOW - 3 * 3600)),
            "2026-12-04 20:24:39Z (3 h ago)"
        );
        assert_eq!(
            c("expires_at", json!(NOW + 3 * 86_400)),
            "2026-12-07 23:24:39Z (in 3 d)"
        );
    }

    #[test]
    fn durations_read_in_their_unit() {
        assert_eq!(c("duration_ms", json!(0)), "0 ms");
        assert_eq!(c("duration_ms", json!(340)), "340 ms");
        assert_eq!(c("duration_ms", json!(1200)), "1.2 s");
        assert_eq!(c("elapsed_ms", json!(3000)), "3.0 s");
        assert_eq!(c("duration_ms", json!(125_000)), "2 min 5 s");
        assert_eq!(c("duration_ms", json!(3_780_000)), "1 h 3 min");
    }

    #[test]
    fn a_negative_duration_is_shown_as_it_is() {
        assert_eq!(c("duration_ms", json!(-5)), "-5");
    }

    #[test]
    fn change_counts_read_as_a_sentence() {
        let plan = json!({"create": 14, "update": 1, "replace": 0, "delete": 0, "no_op": 3});
        assert_eq!(c("changes", plan), "14 created, 1 updated, 3 unchanged");
        let report = json!({"created": 0, "updated": 0, "replaced": 1, "deleted": 2, "failed": 1});
        assert_eq!(c("counts", report), "1 replaced, 2 deleted, 1 failed");
        assert_eq!(c("summary", json!({"create": 0, "no_op": 0})), "no changes");
        assert_eq!(c("changes", json!({})), "no changes");
    }

    #[test]
    fn counts_that_are_not_counts_are_summarised_as_any_object() {
        assert_eq!(c("changes", json!({"create": "many"})), "create=many");
        assert_eq!(c("changes", json!({"create": -1})), "create=-1");
        assert_eq!(c("changes", J::Null), "");
        assert_eq!(c("changes", json!(["a"])), "a");
    }

    #[test]
    fn short_lists_are_joined_and_long_ones_cut() {
        assert_eq!(c("depends_on", json!(["net", "db"])), "net, db");
        assert_eq!(c("depends_on", json!([])), "");
        assert_eq!(
            c("ports", json!([1, 2, 3, 4, 5, 6, 7])),
            "1, 2, 3, 4, 5, +2 more"
        );
        assert_eq!(
            c("rules", json!([{"port": 80}, {"port": 443}])),
            "[2 items]"
        );
        assert_eq!(c("rules", json!([[1]])), "[1 item]");
    }

    #[test]
    fn small_objects_are_flattened_and_large_ones_counted() {
        assert_eq!(
            c("tags", json!({"team": "web", "tier": "front"})),
            "team=web, tier=front"
        );
        assert_eq!(c("tags", json!({})), "");
        assert_eq!(
            c(
                "attributes",
                json!({"a": 1, "b": 2, "c": 3, "d": 4, "e": 5})
            ),
            "{5 keys}"
        );
        assert_eq!(c("attributes", json!({"a": {"b": 1}})), "{1 key}");
        // Members follow their own field's rule.
        assert_eq!(
            c(
                "lease",
                json!({"owner": "alice", "acquired_at": NOW, "ttl_ms": 500})
            ),
            "owner=alice, acquired_at=2026-12-04 23:24:39Z, ttl_ms=500 ms"
        );
    }

    #[test]
    fn scalars_read_as_they_are() {
        assert_eq!(c("id", json!("db-1")), "db-1");
        assert_eq!(c("serial", json!(7)), "7");
        assert_eq!(c("locked", json!(true)), "true");
        assert_eq!(cell(None, &json!(1_700_000_000), NOW), "1700000000");
    }

    #[test]
    fn headers_are_titles_and_units_move_to_the_cell() {
        assert_eq!(header("instance_count"), "Instance Count");
        assert_eq!(header("duration_ms"), "Duration");
        assert_eq!(header("started_at"), "Started At");
        assert_eq!(header("data-holding"), "Data Holding");
    }
}
