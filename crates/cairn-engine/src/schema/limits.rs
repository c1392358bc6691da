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

use super::parse::parse_duration_ms;

/// One value refused: by a target, or by a portable rule (see `firewall`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breach {
    /// Where, from the resource's properties (`health_check.timeout`,
    /// `backends[2].weight`).
    pub path: Vec<Step>,
    /// Why, and what the target takes instead.
    pub message: String,
}

/// One step into a properties value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Key(&'static str),
    Index(usize),
}

impl Breach {
    /// The path as people write it: `backends[2].weight`.
    pub fn path_text(&self) -> String {
        let mut s = String::new();
        for step in &self.path {
            match step {
                Step::Key(k) if s.is_empty() => s.push_str(k),
                Step::Key(k) => {
                    s.push('.');
                    s.push_str(k);
                }
                Step::Index(i) => s.push_str(&format!("[{i}]")),
            }
        }
        s
    }
}

/// The breaches of target `target`'s limits by a `kind` resource whose
/// properties are `props` (a JSON object; values not known yet are absent
/// or null and pass).
pub fn check(target: &str, kind: &str, props: &Json) -> Vec<Breach> {
    match (target, kind) {
        ("aws", "load_balancer") => {
            let mut found = elb_health_check(props.get("health_check"));
            found.extend(elb_weights(props.get("backends")));
            found
        }
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
            path: vec![Step::Key("health_check"), Step::Key("interval")],
            message: format!("health_check.interval {i}s: ELB checks every 5s to 300s"),
        });
    }
    let effective = interval.unwrap_or(30);
    if let Some(t) = seconds(hc.get("timeout"))
        && !(2..effective).contains(&t)
    {
        out.push(Breach {
            path: vec![Step::Key("health_check"), Step::Key("timeout")],
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
                path: vec![Step::Key("health_check"), Step::Key(key)],
                message: format!("health_check.{key} {n}: ELB counts 2 to 10 checks"),
            });
        }
    }
    out
}

/// An ELB target group sends every registered target an equal share: a
/// backend weight other than 1 would be dropped, so it is refused. (Unequal
/// shares on aws need target groups of their own, which cairn does not
/// make.)
fn elb_weights(backends: Option<&Json>) -> Vec<Breach> {
    let Some(list) = backends.and_then(Json::as_array) else {
        return Vec::new();
    };
    list.iter()
        .enumerate()
        .filter_map(|(i, b)| {
            let w = b.get("weight")?.as_i64()?;
            (w != 1).then(|| Breach {
                path: vec![Step::Key("backends"), Step::Index(i), Step::Key("weight")],
                message: format!(
                    "backends[{i}].weight {w}: an ELB target group gives every backend an equal share (weight 1)"
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn breaches(hc: Json) -> Vec<String> {
        check("aws", "load_balancer", &json!({ "health_check": hc }))
            .into_iter()
            .map(|b| format!("{}: {}", b.path_text(), b.message))
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

    #[test]
    fn elb_takes_equal_weights_only() {
        let lb = json!({"backends": ["10.0.0.1", {"address": "10.0.0.2", "weight": 1}, {"address": "10.0.0.3", "weight": 3}]});
        let found: Vec<String> = check("aws", "load_balancer", &lb)
            .iter()
            .map(|b| format!("{}: {}", b.path_text(), b.message))
            .collect();
        assert_eq!(
            found,
            [
                "backends[2].weight: backends[2].weight 3: an ELB target group gives every backend an equal share (weight 1)"
            ]
        );
        assert!(check("local", "load_balancer", &lb).is_empty());
    }
}
