//! What a target refuses that the portable types allow (ELB checks health
//! every 5 to 300 s; the local balancer every 100 ms if asked). Checked
//! when a template is evaluated for an environment of that target, so
//! `cairn validate -e aws` and `cairn plan` point at the value
//! (file:line:col) instead of the apply failing halfway; the target's own
//! code asks the same function before it calls its API, so the rule lives
//! once.
//!
//! Why data here rather than a `Provider::validate` call: validation runs
//! without a provider (no credentials, no daemon), and only the evaluator
//! still knows where each value was written.

use serde_json::Value as Json;

use super::parse_duration_ms;

/// One value a target refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    /// Where, from the resource's properties (`["health_check", "timeout"]`).
    pub path: Vec<&'static str>,
    /// Why, and what the target takes instead.
    pub message: String,
}

/// The breaches of target `target`'s limits by a `kind` resource whose
/// properties are `props` (a JSON object; values not known yet are absent
/// or null and pass).
pub fn check(target: &str, kind: &str, props: &Json) -> Vec<Breach> {
    match (target, kind) {
        ("aws", "load_balancer") => elb_health_check(props.get("health_check")),
        _ => Vec::new(),
    }
}

/// Seconds of a duration property (`"30s"`, or a number of seconds).
pub fn seconds(v: Option<&Json>) -> Option<i64> {
    match v? {
        Json::Number(n) => n.as_f64().map(|s| s.round() as i64),
        Json::String(s) => parse_duration_ms(s).map(|ms| (ms / 1000) as i64),
        _ => None,
    }
}

/// ELB's health check: every 5 to 300 s, a timeout of 2 s or more and
/// shorter than the interval, 2 to 10 checks to change state. A template
/// asking for something else is refused rather than bent: a silently
/// different value would show as drift forever.
fn elb_health_check(hc: Option<&Json>) -> Vec<Breach> {
    let mut out = Vec::new();
    let Some(hc) = hc.filter(|h| h.is_object()) else {
        return out;
    };
    let interval = seconds(hc.get("interval"));
    if let Some(i) = interval
        && !(5..=300).contains(&i)
    {
        out.push(Breach {
            path: vec!["health_check", "interval"],
            message: format!("health_check.interval {i}s: ELB checks every 5s to 300s"),
        });
    }
    let effective = interval.unwrap_or(30);
    if let Some(t) = seconds(hc.get("timeout"))
        && !(2..effective).contains(&t)
    {
        out.push(Breach {
            path: vec!["health_check", "timeout"],
            message: format!(
                "health_check.timeout {t}s: ELB wants 2s or more and less than the interval ({effective}s)"
            ),
        });
    }
    for key in ["healthy", "unhealthy"] {
        if let Some(n) = hc.get(key).and_then(Json::as_i64)
            && !(2..=10).contains(&n)
        {
            out.push(Breach {
                path: vec!["health_check", key],
                message: format!("health_check.{key} {n}: ELB counts 2 to 10 checks"),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn breaches(hc: Json) -> Vec<String> {
        check("aws", "load_balancer", &json!({ "health_check": hc }))
            .into_iter()
            .map(|b| format!("{}: {}", b.path.join("."), b.message))
            .collect()
    }

    #[test]
    fn elb_limits_name_the_value_and_what_elb_takes() {
        assert!(breaches(json!({"interval": "30s", "timeout": "5s", "healthy": 3})).is_empty());
        assert!(breaches(json!({})).is_empty());
        assert_eq!(
            breaches(json!({"interval": "2s", "timeout": "1s", "healthy": 1, "unhealthy": 11})),
            [
                "health_check.interval: health_check.interval 2s: ELB checks every 5s to 300s",
                "health_check.timeout: health_check.timeout 1s: ELB wants 2s or more and less than the interval (2s)",
                "health_check.healthy: health_check.healthy 1: ELB counts 2 to 10 checks",
                "health_check.unhealthy: health_check.unhealthy 11: ELB counts 2 to 10 checks",
            ]
        );
        // The timeout against the default interval (30 s).
        assert_eq!(
            breaches(json!({"timeout": 30})),
            [
                "health_check.timeout: health_check.timeout 30s: ELB wants 2s or more and less than the interval (30s)"
            ]
        );
        // Unknown values (null) pass; other targets and types have none.
        assert!(breaches(json!({"interval": null})).is_empty());
        assert!(
            check(
                "local",
                "load_balancer",
                &json!({"health_check": {"interval": "1s"}})
            )
            .is_empty()
        );
        assert!(
            check(
                "aws",
                "server",
                &json!({"health_check": {"interval": "1s"}})
            )
            .is_empty()
        );
    }
}
