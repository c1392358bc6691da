//! The install of an artifact on a host, as a POSIX sh script that cairn
//! generates and the caller runs there with the archive on its stdin. Hosts
//! need no cairn and no compiler: only openssl (3, for ed25519), zstd, tar
//! and coreutils, which the script checks for first.
//!
//! The script trusts nothing it received before checking it: the manifest's
//! signature first, then the archive's size and sha256 against the signed
//! manifest, then, unpacked, every file. All of that happens in
//! `<install>/.incoming/<version>.<pid>`, removed on every exit; only a
//! fully checked tree is renamed to `<install>/releases/<version>`, so a
//! failure at any point leaves `releases/` as it was. The manifest is kept
//! in the release as `.cairn-manifest.json`, which is how a second install
//! of the same version is recognised (a no-op) or refused (other content).
//!
//! The lists of file checksums and symlinks are written into the script by
//! cairn from the same manifest bytes whose signature the script checks;
//! the script is as trustworthy as the channel that carries it (the
//! transport's), the artifact store is not trusted at all.
//!
//! Size: the script grows with the number of files (about 70 bytes each on
//! top of the manifest's base64) and soon passes Linux's 128 KiB limit on
//! one argument (`sh -c SCRIPT`). [`install_command`] avoids that: it reads
//! the script from stdin ahead of the archive.

use base64::Engine as _;

use crate::artifact::manifest::{INSTALLED_MANIFEST, Manifest, sha256_hex};
use crate::artifact::sign::{PublicKey, Signature};
use crate::error::{ReleaseError, Result};

/// How the script ended; each failure also prints one line on stderr,
/// starting `cairn-install: `.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallExit {
    /// Installed, or already there with the same content (stdout says
    /// `installed PATH` or `unchanged PATH`).
    Ok = 0,
    /// openssl, zstd, tar or a coreutils tool is missing, or openssl is
    /// older than 3 (the message names the Debian package).
    MissingTool = 10,
    BadSignature = 11,
    /// The archive or one of its files is not what the manifest says
    /// (the message names which).
    ChecksumMismatch = 12,
    NoSpace = 13,
    /// `releases/<version>` exists with other content (or was changed
    /// after its install).
    VersionExists = 14,
    /// Any other failure to write (permissions, a read-only file system).
    Io = 15,
    /// tar or zstd could not read the archive although its digest matched.
    BadArchive = 16,
}

impl InstallExit {
    pub fn from_code(code: i32) -> Option<InstallExit> {
        use InstallExit::*;
        [
            Ok,
            MissingTool,
            BadSignature,
            ChecksumMismatch,
            NoSpace,
            VersionExists,
            Io,
            BadArchive,
        ]
        .into_iter()
        .find(|e| *e as i32 == code)
    }

    pub fn code(self) -> i32 {
        self as i32
    }
}

/// The script: see the module's notes. `install_path` is absolute; the
/// release lands in `<install_path>/releases/<version>`.
pub fn install_script(
    install_path: &str,
    version: &str,
    manifest_bytes: &[u8],
    signature: &Signature,
    public_key: &PublicKey,
) -> Result<String> {
    if !install_path.starts_with('/') || install_path.chars().any(char::is_control) {
        return Err(ReleaseError::Manifest(format!(
            "install path `{install_path}` must be absolute, without control characters"
        )));
    }
    crate::artifact::name::check_name("version", version)?;
    let manifest = Manifest::from_bytes(manifest_bytes)?;
    if manifest.version != version {
        return Err(crate::error::VerifyError::WrongArtifact {
            expected: format!("{} {version}", manifest.app),
            found: format!("{} {}", manifest.app, manifest.version),
        }
        .into());
    }
    let install = install_path.trim_end_matches('/');
    let install = if install.is_empty() { "/" } else { install };

    let mut sums = String::new();
    let mut links = String::new();
    for f in &manifest.files {
        match &f.link {
            Some(target) => {
                links.push_str(&format!(
                    "  check_link \"$1\" {} {} \"$2\" \"$3\"\n",
                    sh_quote(&f.path),
                    sh_quote(target)
                ));
            }
            None => sums.push_str(&format!("{}  ./{}\n", f.sha256, f.path)),
        }
    }
    let sums_fn = if sums.is_empty() {
        "sums() { :; }\nHAVE_SUMS=\n".to_string()
    } else {
        format!("sums() {{\n  cat <<'CAIRN_SUMS'\n{sums}CAIRN_SUMS\n}}\nHAVE_SUMS=1\n")
    };
    let links_fn = format!("links() {{\n  :\n{links}}}\n");
    let b64 = base64::engine::general_purpose::STANDARD;
    let key_pem = public_key.to_pem();
    let script = fill(
        TEMPLATE,
        &[
            ("APP", manifest.app.as_str()),
            ("VERSION_Q", &sh_quote(version)),
            ("INSTALL_Q", &sh_quote(install)),
            ("INSTALLED_MANIFEST", INSTALLED_MANIFEST),
            ("MANIFEST_SHA", &sha256_hex(manifest_bytes)),
            ("ARCHIVE_SHA", &manifest.archive.sha256),
            ("ARCHIVE_SIZE", &manifest.archive.size.to_string()),
            ("KEY_HEX", &public_key.to_hex()),
            ("PUBLIC_KEY_PEM", key_pem.trim_end()),
            ("SIGNATURE_B64", &wrap(&b64.encode(signature.0))),
            ("MANIFEST_B64", &wrap(&b64.encode(manifest_bytes))),
            ("SUMS_FN", &sums_fn),
            ("LINKS_FN", &links_fn),
        ],
    );
    Ok(script)
}

/// A short command that reads `script_len` bytes of script from stdin, then
/// runs it with the rest of stdin (the archive) as its stdin: send the
/// script's bytes, then the archive's, on one stream. GNU `head -c` reads
/// no further than asked, so the archive starts exactly after the script.
pub fn install_command(script_len: usize) -> String {
    format!(
        "f=$(mktemp) || exit 15; trap 'rm -f \"$f\"' EXIT; \
         head -c {script_len} >\"$f\" || exit 15; sh \"$f\""
    )
}

/// Replaces each `@NAME@` of the template in one pass, so a value that
/// happens to contain another placeholder's text stays as it is.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find('@') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let value = after.find('@').and_then(|end| {
            let name = &after[..end];
            values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (end, *v))
        });
        match value {
            Some((end, v)) => {
                out.push_str(v);
                rest = &after[end + 1..];
            }
            None => {
                out.push('@');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn wrap(b64: &str) -> String {
    b64.as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect::<Vec<_>>()
        .join("\n")
}

const TEMPLATE: &str = r#"#!/bin/sh
# cairn: install @APP@ into @INSTALL_Q@/releases/@VERSION_Q@; the archive comes on stdin.
set -u
umask 022
INSTALL=@INSTALL_Q@
VERSION=@VERSION_Q@
RELEASE="$INSTALL/releases/$VERSION"
MANIFEST_SHA=@MANIFEST_SHA@
ARCHIVE_SHA=@ARCHIVE_SHA@
ARCHIVE_SIZE=@ARCHIVE_SIZE@
STAGE=

fail() {
  printf 'cairn-install: %s\n' "$2" >&2
  exit "$1"
}
cleanup() {
  if [ -n "$STAGE" ]; then rm -rf "$STAGE"; fi
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

need() {
  command -v "$1" >/dev/null 2>&1 || fail 10 "missing tool: $1 (install the Debian package $2)"
}
need openssl openssl
need zstd zstd
need tar tar
for t in sha256sum base64 mktemp readlink head tail wc cat mv cp rm mkdir sync; do
  need "$t" coreutils
done
need sed sed
need awk mawk
need find findutils

# io CODE WHAT COMMAND...: runs COMMAND with its stderr held in memory (a
# full disk cannot take a log file); a full disk has its own exit code.
io() {
  code=$1
  what=$2
  shift 2
  if err=$("$@" 2>&1); then return 0; fi
  case $err in
    *"No space left on device"* | *"Disk quota exceeded"*)
      fail 13 "no space left on device under $INSTALL ($what)" ;;
  esac
  fail "$code" "$what failed: $(printf '%s\n' "$err" | tail -n 1)"
}

sha_of() {
  set -- $(sha256sum <"$1")
  printf '%s' "${1:-}"
}

@SUMS_FN@
check_link() {
  found=$(readlink -- "$1/$2" 2>/dev/null) || found=
  [ "$found" = "$3" ] || fail "$4" "$5: symlink $2 points to '$found', the manifest says '$3'"
}
@LINKS_FN@
# check_files DIR CODE MESSAGE: every file and symlink as the manifest says.
check_files() {
  if [ -n "$HAVE_SUMS" ]; then
    if ! out=$(cd "$1" && sums | sha256sum -c --quiet --strict - 2>&1); then
      bad=$(printf '%s\n' "$out" | sed -n 's/^\.\/\(.*\): FAILED.*$/\1/p' | head -n 1)
      if [ -z "$bad" ]; then
        fail "$2" "$3: $(printf '%s\n' "$out" | tail -n 1)"
      fi
      expected=$(sums | awk -v p="./$bad" 'substr($0, 67) == p { print substr($0, 1, 64); exit }')
      if [ -f "$1/$bad" ]; then found=$(sha_of "$1/$bad"); else found="nothing (missing)"; fi
      fail "$2" "$3: file $bad has sha256 $found, the manifest says $expected"
    fi
  fi
  links "$1" "$2" "$3"
}

# existing_release: a no-op when releases/VERSION is this very artifact,
# untouched since; a refusal when it is anything else.
existing_release() {
  have=none
  if [ -f "$RELEASE/@INSTALLED_MANIFEST@" ]; then have=$(sha_of "$RELEASE/@INSTALLED_MANIFEST@"); fi
  if [ "$have" != "$MANIFEST_SHA" ]; then
    fail 14 "release $VERSION already exists in $INSTALL/releases with other content (its manifest sha256 $have, this artifact's $MANIFEST_SHA)"
  fi
  check_files "$RELEASE" 14 "release $VERSION in $INSTALL/releases was changed after its install"
  printf 'unchanged %s\n' "$RELEASE"
  exit 0
}

io 15 "creating $INSTALL/.incoming and $INSTALL/releases" mkdir -p "$INSTALL/.incoming" "$INSTALL/releases"
# Staging directories of installs that died without their trap (SIGKILL,
# a crash) end in the pid of a process that is gone: remove them. This
# one's own name can only be such a leftover, pids being unique among the living.
for old in "$INSTALL/.incoming/"*.*; do
  [ -e "$old" ] || continue
  [ -d "/proc/${old##*.}" ] || rm -rf "$old"
done
STAGE="$INSTALL/.incoming/$VERSION.$$"
rm -rf "$STAGE"
io 15 "creating $STAGE" mkdir "$STAGE"

receive() { cat >"$STAGE/artifact.tar.zst"; }
io 15 "receiving the archive" receive

write_manifest() {
  base64 -d >"$STAGE/manifest.json" <<'CAIRN_MANIFEST'
@MANIFEST_B64@
CAIRN_MANIFEST
}
write_signature() {
  base64 -d >"$STAGE/manifest.sig" <<'CAIRN_SIGNATURE'
@SIGNATURE_B64@
CAIRN_SIGNATURE
}
write_key() {
  cat >"$STAGE/key.pem" <<'CAIRN_KEY'
@PUBLIC_KEY_PEM@
CAIRN_KEY
}
io 15 "writing the manifest" write_manifest
io 15 "writing the signature" write_signature
io 15 "writing the public key" write_key

if ! out=$(openssl pkeyutl -verify -pubin -inkey "$STAGE/key.pem" -rawin \
    -in "$STAGE/manifest.json" -sigfile "$STAGE/manifest.sig" 2>&1); then
  case $out in
    *"nknown option"* | *"nrecognized"*)
      fail 10 "missing tool: openssl 3 (pkeyutl -rawin for ed25519; install the Debian package openssl from bookworm or later)" ;;
    *"Verification Failure"*)
      fail 11 "bad signature: the manifest of $VERSION does not verify with the public key @KEY_HEX@" ;;
  esac
  fail 11 "bad signature: the manifest of $VERSION could not be verified with the public key @KEY_HEX@: $(printf '%s\n' "$out" | tail -n 1)"
fi
if [ "$(sha_of "$STAGE/manifest.json")" != "$MANIFEST_SHA" ]; then
  fail 11 "bad signature: the manifest received is not the one this script was made for"
fi

if [ -e "$RELEASE" ] || [ -L "$RELEASE" ]; then existing_release; fi

size=$(wc -c <"$STAGE/artifact.tar.zst")
size=$((size + 0))
if [ "$size" != "$ARCHIVE_SIZE" ]; then
  fail 12 "checksum mismatch: the archive is $size bytes, the manifest says $ARCHIVE_SIZE"
fi
sha=$(sha_of "$STAGE/artifact.tar.zst")
if [ "$sha" != "$ARCHIVE_SHA" ]; then
  fail 12 "checksum mismatch: the archive's sha256 is $sha, the manifest says $ARCHIVE_SHA"
fi

io 15 "creating $STAGE/tree" mkdir "$STAGE/tree"
unpack() {
  zstd -dcq "$STAGE/artifact.tar.zst" | tar -x -p -m --no-same-owner -f - -C "$STAGE/tree"
}
io 16 "unpacking the archive" unpack
check_files "$STAGE/tree" 12 "checksum mismatch after unpacking"
io 15 "keeping the manifest in the release" cp "$STAGE/manifest.json" "$STAGE/tree/@INSTALLED_MANIFEST@"
# The files must be on disk before the name that says they are complete:
# each file and directory of the release, not the whole file system
# (`sync -f`), which also waits for every other write on the machine.
sync_tree() { find "$STAGE/tree" -exec sync -- {} +; }
io 15 "syncing the release to disk" sync_tree

# mv -T never moves into an existing directory: if another install of this
# version finished meanwhile, the rename fails and that install is judged.
if ! err=$(mv -T "$STAGE/tree" "$RELEASE" 2>&1); then
  if [ -e "$RELEASE" ]; then existing_release; fi
  case $err in
    *"No space left on device"*) fail 13 "no space left on device under $INSTALL (renaming into releases)" ;;
  esac
  fail 15 "renaming into $RELEASE failed: $err"
fi
printf 'installed %s\n' "$RELEASE"
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::manifest::tests::sample;
    use crate::artifact::sign::SigningKey;

    #[test]
    fn the_script_embeds_what_it_checks_and_quotes_the_path() {
        let key = SigningKey::generate().unwrap();
        let m = sample();
        let bytes = m.canonical_bytes();
        let script = install_script(
            "/srv/it's/web/",
            "v1",
            &bytes,
            &key.sign(&bytes),
            &key.public(),
        )
        .unwrap();
        assert!(script.contains(r#"INSTALL='/srv/it'\''s/web'"#), "{script}");
        assert!(script.contains(&format!("{}  ./bin/web\n", m.files[0].sha256)));
        assert!(script.contains("check_link \"$1\" 'current-config' 'etc/web.cfg'"));
        assert!(script.contains(&format!("ARCHIVE_SHA={}", m.archive.sha256)));
        for name in [
            "APP",
            "INSTALL_Q",
            "MANIFEST_B64",
            "SUMS_FN",
            "LINKS_FN",
            "KEY_HEX",
        ] {
            assert!(
                !script.contains(&format!("@{name}@")),
                "{name} left: {script}"
            );
        }
    }

    #[test]
    fn a_script_for_another_version_or_a_relative_path_is_refused() {
        let key = SigningKey::generate().unwrap();
        let bytes = sample().canonical_bytes();
        let sig = key.sign(&bytes);
        assert!(install_script("/srv/web", "v2", &bytes, &sig, &key.public()).is_err());
        assert!(install_script("srv/web", "v1", &bytes, &sig, &key.public()).is_err());
    }

    #[test]
    fn placeholders_are_filled_once() {
        let out = fill("a @X@ b @Y@ c@d", &[("X", "@Y@"), ("Y", "y")]);
        assert_eq!(out, "a @Y@ b y c@d");
    }

    #[test]
    fn exit_codes_round_trip() {
        for code in [0, 10, 11, 12, 13, 14, 15, 16] {
            assert_eq!(InstallExit::from_code(code).unwrap().code(), code);
        }
        assert_eq!(InstallExit::from_code(1), None);
    }
}
