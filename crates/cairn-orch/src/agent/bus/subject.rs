//! The subjects masters and agents talk on, and the names that may be
//! part of one.

/// The queue group of a fleet's masters, for what one of them handles.
pub const MASTERS_GROUP: &str = "cairn-masters";

pub fn hello_subject(id: &str) -> String {
    format!("cairn.hello.{id}")
}

pub fn job_subject(id: &str) -> String {
    format!("cairn.agent.{id}.job")
}

pub fn ctl_subject(id: &str) -> String {
    format!("cairn.agent.{id}.ctl")
}

pub fn result_subject(master: &str) -> String {
    format!("cairn.master.{master}.result")
}

/// Where the NATS server says a job found no subscriber: the reply
/// subject of every job a master publishes (the result goes to the one
/// the signed body names). `serial`: the master's registration of the
/// agent the job was sent to, so a late answer cannot drop it once back.
pub fn absent_subject(master: &str, id: &str, serial: &str) -> String {
    format!("cairn.master.{master}.absent.{id}.{serial}")
}

pub fn event_subject(id: &str) -> String {
    format!("cairn.event.{id}")
}

/// The agent id a subject `PREFIX.ID[.SUFFIX]` names.
pub fn subject_id<'a>(subject: &'a str, prefix: &str) -> Option<&'a str> {
    subject
        .strip_prefix(prefix)?
        .strip_prefix('.')?
        .split('.')
        .next()
        .filter(|s| !s.is_empty())
}

/// A name usable as one subject token (agent ids, master names): no dots,
/// wildcards or whitespace, which would address other subjects.
pub fn check_token(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty()
        || s.len() > 128
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    {
        return Err(format!(
            "{what} `{s}` cannot be used on the bus: use letters, digits, `-` and `_` (at most 128)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_their_agent_and_names_stay_one_token() {
        assert_eq!(subject_id(&hello_subject("a1"), "cairn.hello"), Some("a1"));
        assert_eq!(subject_id(&job_subject("a-2"), "cairn.agent"), Some("a-2"));
        assert_eq!(subject_id("cairn.hellox.a1", "cairn.hello"), None);
        assert_eq!(subject_id("cairn.hello.", "cairn.hello"), None);
        check_token("id", "web-01_a").unwrap();
        for bad in ["a.b", "a*", ">", "a b", ""] {
            assert!(check_token("id", bad).is_err(), "{bad}");
        }
    }
}
