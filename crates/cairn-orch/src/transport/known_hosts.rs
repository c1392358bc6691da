//! OpenSSH `known_hosts` files: which host keys a host may present.
//!
//! Read as `sshd(8)` documents them: `[@marker] patterns keytype base64
//! [comment]`, patterns comma-separated with `*`/`?` wildcards and `!`
//! negation, a non-22 port written `[host]:port`, and hashed names
//! (`|1|salt|hmac`, what `HashKnownHosts yes` and `ssh-keygen -H` write).
//! `@cert-authority` lines are skipped (cairn does not take host
//! certificates); `@revoked` lines refuse their key outright.
//!
//! russh's own helper matches only exact or hashed names, splits on single
//! spaces, and miscounts lines after a comment, which would send a user to
//! the wrong line of a mismatch; hence this reader.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use russh::keys::{Algorithm, PublicKey};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Entries of one or more files, in the order read.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

#[derive(Clone)]
struct Entry {
    /// `FILE:LINE`, for messages.
    origin: String,
    revoked: bool,
    patterns: Vec<Pattern>,
    key: PublicKey,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("origin", &self.origin)
            .field("revoked", &self.revoked)
            .field("key", &openssh_line(&self.key))
            .finish()
    }
}

#[derive(Debug, Clone)]
enum Pattern {
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    Glob { negated: bool, glob: String },
}

#[derive(Debug, Error)]
#[error("known_hosts {path}: {source}")]
pub struct KnownHostsError {
    pub path: String,
    pub source: std::io::Error,
}

/// One line that names a host (see [`KnownHosts::lines_for`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownLine {
    /// `FILE:LINE`, for messages.
    pub origin: String,
    pub revoked: bool,
    /// `TYPE BASE64`.
    pub key: String,
}

/// What the files say of a key a host presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A line names the host with this key (`FILE:LINE`).
    Known { origin: String },
    /// Lines name the host, none with this key: the first line that does
    /// not match, and its key.
    Mismatch { origin: String, expected: String },
    /// A `@revoked` line names this key.
    Revoked { origin: String },
    /// No line names the host.
    Unknown,
}

impl KnownHosts {
    pub fn new() -> KnownHosts {
        KnownHosts::default()
    }

    /// Reads files in order; a file that does not exist is empty, as for
    /// `ssh` (a user's `~/.ssh/known_hosts` often does not exist yet).
    pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<KnownHosts, KnownHostsError> {
        let mut all = KnownHosts::new();
        for path in paths {
            let path = path.as_ref();
            match std::fs::read_to_string(path) {
                Ok(text) => all.add(&text, &path.display().to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(KnownHostsError {
                        path: path.display().to_string(),
                        source,
                    });
                }
            }
        }
        Ok(all)
    }

    /// Adds the lines of one file named `file` in messages. Lines that do
    /// not parse are skipped, as `ssh` skips them.
    pub fn add(&mut self, text: &str, file: &str) {
        for (i, line) in text.lines().enumerate() {
            let origin = format!("{file}:{}", i + 1);
            if let Some(entry) = parse_line(line, origin) {
                self.entries.push(entry);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Judges `key` presented by the host reached at `host` (the address
    /// connected to) and `port`.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> Verdict {
        let name = lookup_name(host, port);
        let mut mismatch = None;
        for e in self.entries.iter().filter(|e| e.matches(&name)) {
            let same = e.key.key_data() == key.key_data();
            if e.revoked {
                if same {
                    return Verdict::Revoked {
                        origin: e.origin.clone(),
                    };
                }
                continue;
            }
            if same {
                return Verdict::Known {
                    origin: e.origin.clone(),
                };
            }
            if mismatch.is_none() {
                mismatch = Some(Verdict::Mismatch {
                    origin: e.origin.clone(),
                    expected: openssh_line(&e.key),
                });
            }
        }
        mismatch.unwrap_or(Verdict::Unknown)
    }

    /// The lines that name the host reached at `host` and `port`, as
    /// [`KnownHosts::applying`] takes them back: all a check of that host
    /// reads, for a process that checks it on our behalf (the connection
    /// keeper) without the whole files.
    pub fn lines_for(&self, host: &str, port: u16) -> Vec<KnownLine> {
        let name = lookup_name(host, port);
        self.entries
            .iter()
            .filter(|e| e.matches(&name))
            .map(|e| KnownLine {
                origin: e.origin.clone(),
                revoked: e.revoked,
                key: openssh_line(&e.key),
            })
            .collect()
    }

    /// The lines [`KnownHosts::lines_for`] gave, as naming `host` at
    /// `port` exactly (in their order; one that does not parse is
    /// skipped, as in a file).
    pub fn applying(host: &str, port: u16, lines: &[KnownLine]) -> KnownHosts {
        let glob = lookup_name(host, port).to_ascii_lowercase();
        let entries = lines
            .iter()
            .filter_map(|l| {
                Some(Entry {
                    origin: l.origin.clone(),
                    revoked: l.revoked,
                    patterns: vec![Pattern::Glob {
                        negated: false,
                        glob: glob.clone(),
                    }],
                    key: parse_public_key(&l.key)?,
                })
            })
            .collect();
        KnownHosts { entries }
    }

    /// The key algorithms lines give for the host, so that the server is
    /// asked for a key we can check rather than another one it also has.
    pub fn algorithms(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let name = lookup_name(host, port);
        let mut out: Vec<Algorithm> = Vec::new();
        for e in self
            .entries
            .iter()
            .filter(|e| !e.revoked && e.matches(&name))
        {
            let a = e.key.algorithm();
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }
}

/// How `ssh` names a host in known_hosts: bare on port 22, else
/// `[host]:port`.
fn lookup_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

impl Entry {
    fn matches(&self, name: &str) -> bool {
        let mut hit = false;
        for p in &self.patterns {
            match p {
                Pattern::Hashed { salt, hash } => {
                    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
                    if ring::hmac::verify(&key, name.as_bytes(), hash).is_ok() {
                        hit = true;
                    }
                }
                Pattern::Glob { negated, glob } => {
                    if glob_match(glob.as_bytes(), name.as_bytes()) {
                        // A negated pattern that matches rules the line
                        // out, whatever else matches.
                        if *negated {
                            return false;
                        }
                        hit = true;
                    }
                }
            }
        }
        hit
    }
}

fn parse_line(line: &str, origin: String) -> Option<Entry> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    let mut revoked = false;
    if let Some(marker) = first.strip_prefix('@') {
        match marker {
            "revoked" => revoked = true,
            _ => return None,
        }
        first = fields.next()?;
    }
    let patterns = first
        .split(',')
        .filter(|p| !p.is_empty())
        .map(parse_pattern)
        .collect::<Option<Vec<_>>>()?;
    let kind = fields.next()?;
    let data = fields.next()?;
    let key = PublicKey::from_openssh(&format!("{kind} {data}")).ok()?;
    Some(Entry {
        origin,
        revoked,
        patterns,
        key,
    })
}

fn parse_pattern(p: &str) -> Option<Pattern> {
    if let Some(rest) = p.strip_prefix("|1|") {
        let (salt, hash) = rest.split_once('|')?;
        return Some(Pattern::Hashed {
            salt: B64.decode(salt).ok()?,
            hash: B64.decode(hash).ok()?,
        });
    }
    let (negated, glob) = match p.strip_prefix('!') {
        Some(g) => (true, g),
        None => (false, p),
    };
    // Host names are case-insensitive; addresses have no case.
    Some(Pattern::Glob {
        negated,
        glob: glob.to_ascii_lowercase(),
    })
}

/// `*` any run, `?` one character; the name is lowercased like the glob.
fn glob_match(glob: &[u8], name: &[u8]) -> bool {
    let (mut g, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let c = name[n].to_ascii_lowercase();
        match glob.get(g) {
            Some(b'*') => {
                star = Some((g, n));
                g += 1;
            }
            Some(&b) if b == b'?' || b == c => {
                g += 1;
                n += 1;
            }
            _ => match star {
                Some((sg, sn)) => {
                    g = sg + 1;
                    n = sn + 1;
                    star = Some((sg, sn + 1));
                }
                None => return false,
            },
        }
    }
    glob[g..].iter().all(|&b| b == b'*')
}

/// `TYPE BASE64` of a key, as known_hosts and `host_key` records hold it.
pub fn openssh_line(key: &PublicKey) -> String {
    let mut key = key.clone();
    key.set_comment("");
    key.to_openssh()
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| key.algorithm().to_string())
}

/// Reads a recorded host key (`TYPE BASE64 [COMMENT]`), or a known_hosts
/// line whose key part is that.
pub fn parse_public_key(line: &str) -> Option<PublicKey> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    fields
        .windows(2)
        .find_map(|w| PublicKey::from_openssh(&format!("{} {}", w[0], w[1])).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED1: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPiDLmvZWaokszhVRsSnUQ6SmJ5qTn4zrEteRCIO1OUb";
    const ED2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHzs0QL7529vUV0hcoY2+78KE7sJDWogSPkyExhn1N0n";

    fn key(s: &str) -> PublicKey {
        parse_public_key(s).unwrap()
    }

    #[test]
    fn plain_ported_and_commented_lines_name_their_line() {
        let mut kh = KnownHosts::new();
        kh.add(
            &format!("# a comment\n\n10.0.0.1,web-1 {ED1} root@x\n[10.0.0.2]:2222 {ED2}\n"),
            "kh",
        );
        assert_eq!(
            kh.check("web-1", 22, &key(ED1)),
            Verdict::Known {
                origin: "kh:3".into()
            }
        );
        assert_eq!(
            kh.check("10.0.0.1", 22, &key(ED2)),
            Verdict::Mismatch {
                origin: "kh:3".into(),
                expected: ED1.into()
            }
        );
        assert_eq!(kh.check("10.0.0.1", 2222, &key(ED1)), Verdict::Unknown);
        assert_eq!(
            kh.check("10.0.0.2", 2222, &key(ED2)),
            Verdict::Known {
                origin: "kh:4".into()
            }
        );
        assert_eq!(kh.check("10.0.0.2", 22, &key(ED2)), Verdict::Unknown);
    }

    #[test]
    fn hashed_names_match_what_ssh_keygen_wrote() {
        // `ssh-keygen -H` of "127.0.10.1 ED1" and "[127.0.10.2]:2222 ED2".
        let text = format!(
            "|1|I5ZTD3eaG0ZlQ0LXdqShO5ZFzRM=|mPaWl09IiAG/noRZDjnzOJI25U0= {ED1}\n\
             |1|z3IY/F19sR+88NUQJ625n57hyq8=|PjBS2ZrZConCWGFh6RFsn/fWy9Q= {ED2}\n"
        );
        let mut kh = KnownHosts::new();
        kh.add(&text, "kh");
        assert!(matches!(
            kh.check("127.0.10.1", 22, &key(ED1)),
            Verdict::Known { .. }
        ));
        assert!(matches!(
            kh.check("127.0.10.2", 2222, &key(ED2)),
            Verdict::Known { .. }
        ));
        assert!(matches!(
            kh.check("127.0.10.1", 22, &key(ED2)),
            Verdict::Mismatch { .. }
        ));
        assert_eq!(kh.check("127.0.10.3", 22, &key(ED1)), Verdict::Unknown);
    }

    #[test]
    fn wildcards_negation_and_revocation() {
        let mut kh = KnownHosts::new();
        kh.add(
            &format!("*.example.com,!bad.example.com {ED1}\n@revoked * {ED2}\n"),
            "kh",
        );
        assert!(matches!(
            kh.check("Web.Example.com", 22, &key(ED1)),
            Verdict::Known { .. }
        ));
        assert_eq!(kh.check("bad.example.com", 22, &key(ED1)), Verdict::Unknown);
        assert_eq!(
            kh.check("web.example.com", 22, &key(ED2)),
            Verdict::Revoked {
                origin: "kh:2".into()
            }
        );
        assert!(glob_match(b"10.0.*.?", b"10.0.33.7"));
        assert!(!glob_match(b"10.0.*.?", b"10.0.33.17"));
    }

    #[test]
    fn the_lines_for_one_host_judge_it_as_the_files_do() {
        let mut kh = KnownHosts::new();
        kh.add(
            &format!("*.example.com,!bad.example.com {ED1}\n@revoked * {ED2}\nother.org {ED2}\n[web.example.com]:2222 {ED2}\n"),
            "kh",
        );
        for (host, port) in [
            ("web.example.com", 22),
            ("bad.example.com", 22),
            ("web.example.com", 2222),
            ("10.1.2.3", 22),
        ] {
            let lines = kh.lines_for(host, port);
            let alone = KnownHosts::applying(host, port, &lines);
            for k in [ED1, ED2] {
                assert_eq!(
                    alone.check(host, port, &key(k)),
                    kh.check(host, port, &key(k)),
                    "{host}:{port}"
                );
            }
            assert_eq!(alone.algorithms(host, port), kh.algorithms(host, port));
        }
        // Only what names the host travels: not other.org's line.
        assert_eq!(kh.lines_for("web.example.com", 22).len(), 2);
        assert_eq!(kh.lines_for("web.example.com", 22)[0].origin, "kh:1");
    }
}
