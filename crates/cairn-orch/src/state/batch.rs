//! Several scripts in one exec: the probes of a host's states read in one
//! go, and the next state's probe riding on an apply step.
//!
//! Every exec costs the host a channel, a session process and a login
//! shell (README, "Orchestration": a few ms of CPU each, where a `stat`
//! costs well under one), so a host's states read it in one script. Each
//! part runs apart, so an `exit` or a `set -e` in one ends only that one:
//! each in a subshell, as `eval` of its text (its line numbers start at 1,
//! as alone); a probe with /dev/null for stdin, the leading part, an apply
//! step, with the exec's stdin (a file's content comes that way) and none
//! of the batch's variables. A subshell is a fork; a `sh -c` of its own
//! was that and a program start more for every change. After each part the script prints a frame line on stdout,
//! `\n<nonce> <tag> <status>\n`, and one on stderr, `\n<nonce> <tag>\n`,
//! so each part's output, errors and exit status come back apart and
//! byte-exact (a binary file, a file without a last newline, an empty
//! one), with the errors they would print alone. The nonce is 128 random bits drawn for this exec; the parts
//! cannot know it, and an output that somehow held a frame would add one,
//! so [`Batch::split`] takes only output with exactly one frame per part,
//! in order, and nothing after the last: anything else is refused whole,
//! never guessed at.

use ring::rand::{SecureRandom, SystemRandom};

use crate::remote::{Output, quote};

/// Tag of the leading part's frames (probes are numbered from 0).
const LEAD: &str = "s";

/// One script holding several: an optional leading step, then probes.
#[derive(Debug, Clone)]
pub(crate) struct Batch {
    nonce: String,
    lead: bool,
    probes: usize,
    script: String,
}

/// A batch's output, part by part.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Split {
    pub lead: Option<Output>,
    pub probes: Vec<Output>,
}

impl Batch {
    /// `lead` runs first with the exec's stdin, and its status is the
    /// exec's; then each of `probes`, in order, whatever became of it.
    /// `None` when no random nonce could be drawn (callers then run each
    /// script on its own).
    pub fn new(lead: Option<&str>, probes: &[&str]) -> Option<Batch> {
        let mut bytes = [0u8; 16];
        SystemRandom::new().fill(&mut bytes).ok()?;
        let nonce = hex::encode(bytes);
        Some(Batch::with_nonce(nonce, lead, probes))
    }

    /// With a nonce given (tests).
    pub fn with_nonce(nonce: String, lead: Option<&str>, probes: &[&str]) -> Batch {
        // The nonce appears in the script only after `N=`, never after a
        // newline: a host process that can read our command line (`ps`)
        // still does not print a frame.
        let mut s = format!("N={nonce}\n");
        let frame = |s: &mut String, tag: &str, status: &str| {
            s.push_str(&format!(
                "printf '\\n%s %s %d\\n' \"$N\" {tag} \"{status}\"\nprintf '\\n%s %s\\n' \"$N\" {tag} >&2\n"
            ));
        };
        if let Some(lead) = lead {
            // The step may be a user's command: it sees none of our
            // variables (the nonce least of all), and reads as alone but
            // that dash names `eval` in a syntax error or a command not
            // found (`sh: 1: eval: foo: not found`).
            s.push_str(&format!("( unset N r; eval {} )\nr=$?\n", quote(lead)));
            frame(&mut s, LEAD, "$r");
        }
        for (k, probe) in probes.iter().enumerate() {
            // `eval` starts the probe's line numbers at 1, so its errors
            // read as alone (`sh: 1: cd: can't cd to ...`); probes are
            // cairn's own scripts, whose syntax is right.
            s.push_str(&format!("( eval {} ) </dev/null\n", quote(probe)));
            frame(&mut s, &k.to_string(), "$?");
        }
        if lead.is_some() {
            s.push_str("exit \"$r\"\n");
        }
        Batch {
            nonce,
            lead: lead.is_some(),
            probes: probes.len(),
            script: s,
        }
    }

    pub fn script(&self) -> &str {
        &self.script
    }

    /// Each part's output, or `None` when `out` is not exactly what the
    /// script prints (the shell was killed midway, or a part printed a
    /// frame of its own).
    pub fn split(&self, out: &Output) -> Option<Split> {
        let mut tags = Vec::with_capacity(self.probes + 1);
        if self.lead {
            tags.push(LEAD.to_string());
        }
        tags.extend((0..self.probes).map(|k| k.to_string()));
        let stdout = cut(&out.stdout, &self.nonce, &tags, true)?;
        let stderr = cut(&out.stderr, &self.nonce, &tags, false)?;
        let mut parts = stdout
            .into_iter()
            .zip(stderr)
            .map(|((stdout, status), (stderr, _))| Output {
                status,
                stdout,
                stderr,
            });
        let lead = if self.lead { parts.next() } else { None };
        Some(Split {
            lead,
            probes: parts.collect(),
        })
    }
}

/// Cuts `bytes` at its frames, which must be exactly `tags`, in order,
/// with a status each when `status` (stdout) and none otherwise (stderr).
fn cut(
    bytes: &[u8],
    nonce: &str,
    tags: &[String],
    status: bool,
) -> Option<Vec<(Vec<u8>, Option<i32>)>> {
    let marker = format!("\n{nonce} ");
    let marker = marker.as_bytes();
    if count(bytes, marker) != tags.len() {
        return None;
    }
    let mut parts = Vec::with_capacity(tags.len());
    let mut rest = bytes;
    for tag in tags {
        let at = find(rest, marker)?;
        let part = &rest[..at];
        let after = &rest[at + marker.len()..];
        let end = after.iter().position(|b| *b == b'\n')?;
        let line = std::str::from_utf8(&after[..end]).ok()?;
        let code = if status {
            let (t, code) = line.split_once(' ')?;
            if t != tag {
                return None;
            }
            Some(code.parse::<i32>().ok()?)
        } else if line == tag {
            None
        } else {
            return None;
        };
        parts.push((part.to_vec(), code));
        rest = &after[end + 1..];
    }
    rest.is_empty().then_some(parts)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    let mut n = 0;
    let mut rest = hay;
    while let Some(at) = find(rest, needle) {
        n += 1;
        rest = &rest[at + needle.len()..];
    }
    n
}

#[cfg(test)]
mod tests;
