//! `file(path)`: the text of a file next to the template.
//!
//! The path is relative to the template's directory and may not leave it:
//! absolute paths, paths whose `..` climb above it, and symbolic links that
//! point outside it are refused, so a template cannot read arbitrary files.

use std::path::{Component, Path, PathBuf};

use minijinja::Error;
use minijinja::value::Value;

use super::args::{expect_str, invalid};

/// `file(path)`: the UTF-8 text of `path`, relative to `base_dir`.
pub fn file(base_dir: &Path, path: Value) -> Result<String, Error> {
    const F: &str = "file";
    let raw = expect_str(F, "the path", &path)?;
    let relative = check_relative(raw).map_err(|why| invalid(format!("{F}({raw:?}): {why}")))?;
    let full = base_dir.join(&relative);

    // Resolve symbolic links on both sides and check containment again.
    let base_real = base_dir.canonicalize().map_err(|e| {
        invalid(format!(
            "{F}({raw:?}): cannot resolve the template directory {}: {e}",
            base_dir.display()
        ))
    })?;
    let real = full.canonicalize().map_err(|e| {
        invalid(format!(
            "{F}({raw:?}): cannot read {}: {}",
            full.display(),
            describe_io(&e)
        ))
    })?;
    if !real.starts_with(&base_real) {
        return Err(invalid(format!(
            "{F}({raw:?}): the path leads outside the template directory {} (through a \
             symbolic link)",
            base_dir.display()
        )));
    }
    if real.is_dir() {
        return Err(invalid(format!(
            "{F}({raw:?}): {} is a directory, not a file",
            full.display()
        )));
    }
    let bytes = std::fs::read(&real).map_err(|e| {
        invalid(format!(
            "{F}({raw:?}): cannot read {}: {}",
            full.display(),
            describe_io(&e)
        ))
    })?;
    String::from_utf8(bytes).map_err(|_| {
        invalid(format!(
            "{F}({raw:?}): {} is not UTF-8 text",
            full.display()
        ))
    })
}

/// A short description of an I/O error.
fn describe_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Checks that `raw` is a relative path that stays inside its base
/// directory, and returns it with `.` and inner `..` resolved lexically.
fn check_relative(raw: &str) -> Result<PathBuf, String> {
    if raw.is_empty() {
        return Err("the path is empty".into());
    }
    if raw.contains('\0') {
        return Err("the path contains a NUL character".into());
    }
    let path = Path::new(raw);
    // `\` or a drive letter is absolute on Windows even when Unix disagrees.
    let windows_absolute = raw.starts_with('\\')
        || raw.as_bytes().get(1) == Some(&b':') && raw.as_bytes()[0].is_ascii_alphabetic();
    if path.is_absolute() || path.has_root() || windows_absolute {
        return Err(
            "absolute paths are not allowed; give a path relative to the template's directory"
                .into(),
        );
    }
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err(
                        "the path leads outside the template's directory ('..' is not allowed \
                         to climb above it)"
                            .into(),
                    );
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err("absolute paths are not allowed".into());
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err("the path names the template's directory itself, not a file".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::env_with;
    use super::*;

    /// A fresh scratch directory under the system temp dir.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "cairn-functions-files-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        dir
    }

    fn read(base: &Path, path: &str) -> Result<String, String> {
        file(base, path.into()).map_err(|e| e.detail().unwrap_or_default().to_string())
    }

    #[test]
    fn reads_relative_files() {
        let dir = scratch("ok");
        std::fs::write(dir.join("a.txt"), "hello\n").unwrap();
        std::fs::write(dir.join("sub/b.sh"), "#!/bin/sh\necho hi\n").unwrap();
        assert_eq!(read(&dir, "a.txt").unwrap(), "hello\n");
        assert_eq!(read(&dir, "./a.txt").unwrap(), "hello\n");
        assert_eq!(read(&dir, "sub/b.sh").unwrap(), "#!/bin/sh\necho hi\n");
        assert_eq!(read(&dir, "sub/../a.txt").unwrap(), "hello\n");

        let env = env_with(dir.clone(), false);
        let out = env.render_str("{{ file('sub/b.sh') }}", ()).unwrap();
        assert_eq!(out, "#!/bin/sh\necho hi\n");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refuses_escapes() {
        let dir = scratch("escape");
        std::fs::write(dir.join("a.txt"), "x").unwrap();
        let e = read(&dir, "../a.txt").unwrap_err();
        assert!(e.contains(r#"file("../a.txt")"#), "{e}");
        assert!(e.contains("outside the template's directory"), "{e}");
        assert!(
            read(&dir, "sub/../../a.txt")
                .unwrap_err()
                .contains("outside")
        );
        let e = read(&dir, "/etc/passwd").unwrap_err();
        assert!(e.contains(r#"file("/etc/passwd")"#), "{e}");
        assert!(e.contains("absolute paths are not allowed"), "{e}");
        assert!(
            read(&dir, "\\\\server\\share")
                .unwrap_err()
                .contains("absolute")
        );
        assert!(read(&dir, "C:\\x").unwrap_err().contains("absolute"));
        assert!(read(&dir, "").unwrap_err().contains("empty"));
        assert!(read(&dir, ".").unwrap_err().contains("directory itself"));
        assert!(read(&dir, "a\0b").unwrap_err().contains("NUL"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn refuses_symlinks_leading_outside() {
        let dir = scratch("symlink");
        let outside = scratch("symlink-target");
        std::fs::write(outside.join("secret.txt"), "s").unwrap();
        std::os::unix::fs::symlink(outside.join("secret.txt"), dir.join("link.txt")).unwrap();
        std::fs::write(dir.join("in.txt"), "in").unwrap();
        std::os::unix::fs::symlink(dir.join("in.txt"), dir.join("inside-link.txt")).unwrap();
        let e = read(&dir, "link.txt").unwrap_err();
        assert!(e.contains("outside the template directory"), "{e}");
        assert_eq!(read(&dir, "inside-link.txt").unwrap(), "in");
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&outside);
    }

    #[test]
    fn clear_errors_for_missing_and_bad_files() {
        let dir = scratch("missing");
        let e = read(&dir, "nope.txt").unwrap_err();
        assert!(e.contains(r#"file("nope.txt")"#), "{e}");
        assert!(e.contains("no such file"), "{e}");
        assert!(read(&dir, "sub").unwrap_err().contains("is a directory"));
        std::fs::write(dir.join("bin"), [0xff, 0xfe, 0x00]).unwrap();
        assert!(read(&dir, "bin").unwrap_err().contains("not UTF-8"));
        let e = file(&dir, Value::from(3)).unwrap_err();
        assert!(
            e.detail()
                .unwrap()
                .contains("file(): the path must be a string, got int")
        );
        let e = read(&dir.join("does-not-exist"), "a.txt").unwrap_err();
        assert!(e.contains("cannot resolve the template directory"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
