//! Who holds a lease, and whether that process is still alive.
//!
//! A lease names its holder's user, host and pid. A pid alone cannot say
//! that the holder is gone: pids are reused, and two machines (or two
//! containers) may share a hostname. So a holder also records its process
//! identity: the kernel's boot id, its pid namespace and the process's
//! start time in clock ticks since boot (field 22 of `/proc/PID/stat`).
//! A later run that sees the same boot id and pid namespace is on the same
//! host, where `/proc` answers for certain whether that very process still
//! runs. Anywhere else the lease still waits for its expiry.

use crate::store::Owner;

/// This process's identity, `BOOT_ID:PID_NAMESPACE:START_TICKS`, or `None`
/// where `/proc` does not tell.
pub fn this_process() -> Option<String> {
    identity_of(std::process::id())
}

/// The identity of the running process `pid` as seen from here.
fn identity_of(pid: u32) -> Option<String> {
    let (boot, namespace) = host_identity()?;
    let ticks = start_ticks(pid)?;
    Some(format!("{boot}:{namespace}:{ticks}"))
}

/// The boot id and the pid namespace: together they name one kernel's view
/// of processes, which is what "the same host" means for a pid.
fn host_identity() -> Option<(String, String)> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some((
        boot.trim().to_string(),
        namespace.to_string_lossy().into_owned(),
    ))
}

fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_ticks(&stat)
}

/// Field 22 of `/proc/PID/stat`. The second field (the command) is in
/// parentheses and may itself hold spaces and parentheses, so fields are
/// counted after its last `)`.
fn parse_start_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the command come fields 3, 4, ...: field 22 is the 20th.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the lease holder `owner` is known to be gone: it ran on this
/// host (same boot, same pid namespace) and its pid is free or belongs to
/// a process started at another time. `false` whenever that cannot be
/// known for certain: another host, or a holder that recorded no identity.
pub fn holder_is_gone(owner: &Owner) -> bool {
    let Some(recorded) = owner.process.as_deref() else {
        return false;
    };
    let Some((boot, namespace)) = host_identity() else {
        return false;
    };
    is_gone(recorded, &boot, &namespace, owner.pid, start_ticks)
}

fn is_gone(
    recorded: &str,
    boot: &str,
    namespace: &str,
    pid: u32,
    ticks_of: impl Fn(u32) -> Option<u64>,
) -> bool {
    let mut parts = recorded.rsplitn(2, ':');
    let (Some(ticks), Some(place)) = (parts.next(), parts.next()) else {
        return false;
    };
    let Ok(ticks) = ticks.parse::<u64>() else {
        return false;
    };
    if place != format!("{boot}:{namespace}") {
        return false;
    }
    ticks_of(pid) != Some(ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_are_field_22_even_when_the_command_holds_parentheses() {
        let stat = "1235 (cairn (up) x) S 1 1235 1235 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 \
                    3 0 987654 1000 100 18446744073709551615";
        assert_eq!(parse_start_ticks(stat), Some(987_654));
        assert_eq!(parse_start_ticks("12 (x) S 1"), None);
        assert_eq!(parse_start_ticks("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_recorded_identity_round_trips() {
        let me = this_process().expect("/proc tells on Linux");
        let owner = Owner {
            user: "ann".into(),
            host: "box".into(),
            pid: std::process::id(),
            process: Some(me.clone()),
        };
        assert!(!holder_is_gone(&owner), "{me}");
    }

    #[test]
    fn gone_only_on_the_same_host_when_the_pid_is_free_or_reused() {
        let alive = |_| Some(500);
        let free = |_| None;
        let reused = |_| Some(501);
        let rec = "boot-1:pid:[4026531836]:500";
        assert!(!is_gone(rec, "boot-1", "pid:[4026531836]", 7, alive));
        assert!(is_gone(rec, "boot-1", "pid:[4026531836]", 7, free));
        assert!(is_gone(rec, "boot-1", "pid:[4026531836]", 7, reused));
        // Another boot, another pid namespace: not this host's to judge.
        assert!(!is_gone(rec, "boot-2", "pid:[4026531836]", 7, free));
        assert!(!is_gone(rec, "boot-1", "pid:[4026532000]", 7, free));
        // What cannot be read is never taken for dead.
        assert!(!is_gone("nonsense", "boot-1", "pid:[4026531836]", 7, free));
        assert!(!is_gone("a:b:c:x", "a", "b:c", 7, free));
        let nobody = Owner {
            user: "ann".into(),
            host: "box".into(),
            pid: 1,
            process: None,
        };
        assert!(!holder_is_gone(&nobody));
    }
}
