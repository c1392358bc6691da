//! Turning `user_data` into a program to run: a shell script as it is, or
//! the `write_files` and `runcmd` parts of a cloud-config document.

use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

/// What the supervisor executes.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub program: PathBuf,
    pub args: Vec<String>,
}

#[derive(Deserialize, Default)]
struct CloudConfig {
    #[serde(default)]
    write_files: Vec<WriteFile>,
    #[serde(default)]
    runcmd: Vec<RunCmd>,
}

#[derive(Deserialize)]
struct WriteFile {
    path: Text,
    #[serde(default)]
    content: Option<Text>,
    permissions: Option<Text>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RunCmd {
    Line(Text),
    Argv(Vec<Text>),
}

/// A scalar as cloud-init takes it: `[sleep, 10]` and `content: 1` are text,
/// although YAML reads the 10 and the 1 as numbers. A number keeps its
/// digits, so `permissions: 0644` written without quotes still means 0644
/// (YAML 1.2 reads it as the integer 644, whose digits are the same); an
/// unquoted `0o644`, read as 420, must be quoted, as cloud-init's docs do.
#[derive(Deserialize)]
#[serde(untagged)]
enum Text {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Text {
    fn into_string(self) -> String {
        match self {
            Text::Str(s) => s,
            Text::Int(i) => i.to_string(),
            Text::Float(f) => f.to_string(),
            Text::Bool(b) => b.to_string(),
        }
    }
}

/// The document read with cairn's YAML reader (the core schema, like
/// templates); a document of only the header comment holds nothing.
fn cloud_config(user_data: &str) -> Result<CloudConfig, String> {
    let value = cairn_template::yaml::from_str(user_data).map_err(|e| e.to_string())?;
    if value.is_null() {
        return Ok(CloudConfig::default());
    }
    serde_json::from_value(value).map_err(|e| e.to_string())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A path inside the sandbox for a path as written (absolute ones too).
fn inside(sandbox: &Path, path: &str) -> Result<PathBuf, String> {
    let rel = Path::new(path.trim_start_matches('/'));
    if rel.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("write_files path {path} leaves the sandbox"));
    }
    Ok(sandbox.join(rel))
}

/// Writes the init script (and cloud-config files) into the sandbox.
pub fn prepare(sandbox: &Path, user_data: &str) -> Result<Prepared, String> {
    std::fs::create_dir_all(sandbox)
        .map_err(|e| format!("cannot create the sandbox {}: {e}", sandbox.display()))?;
    let script_path = sandbox.join("user-data");
    let script = if user_data.trim_start().starts_with("#cloud-config") {
        let cc = cloud_config(user_data)
            .map_err(|e| format!("user_data is not valid cloud-config: {e}"))?;
        for f in cc.write_files {
            let path = f.path.into_string();
            let target = inside(sandbox, &path)?;
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("write_files {path}: {e}"))?;
            }
            let content = f.content.map(Text::into_string).unwrap_or_default();
            std::fs::write(&target, content).map_err(|e| format!("write_files {path}: {e}"))?;
            if let Some(mode) = f.permissions.map(Text::into_string) {
                let mode = u32::from_str_radix(mode.trim_start_matches("0o"), 8)
                    .map_err(|_| format!("write_files {path}: permissions {mode} is not octal"))?;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| format!("write_files {path}: {e}"))?;
            }
        }
        let mut s = String::from("#!/bin/sh\nset -e\n");
        for c in cc.runcmd {
            match c {
                RunCmd::Line(l) => s.push_str(&l.into_string()),
                RunCmd::Argv(a) => s.push_str(
                    &a.into_iter()
                        .map(|x| shell_quote(&x.into_string()))
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
            }
            s.push('\n');
        }
        // Like an init process, the server lives as long as its commands
        // keep running; with nothing left in the foreground, it waits.
        s.push_str("wait\n");
        s
    } else if user_data.trim().is_empty() {
        "#!/bin/sh\nexec sleep infinity\n".to_string()
    } else if user_data.starts_with("#!") {
        user_data.to_string()
    } else {
        format!("#!/bin/sh\n{user_data}")
    };
    std::fs::write(&script_path, script)
        .map_err(|e| format!("cannot write {}: {e}", script_path.display()))?;
    std::fs::set_permissions(&script_path, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot make {} executable: {e}", script_path.display()))?;
    Ok(Prepared {
        program: script_path,
        args: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_that_yaml_reads_as_numbers_are_text() {
        let d = std::env::temp_dir().join(format!("cairn-user-data-{}", std::process::id()));
        let p = prepare(
            &d,
            "#cloud-config\nwrite_files:\n- path: /n.txt\n  content: 1\n  permissions: 0640\nruncmd:\n- [sleep, 10]\n- true\n",
        )
        .unwrap();
        let script = std::fs::read_to_string(&p.program).unwrap();
        assert_eq!(script, "#!/bin/sh\nset -e\n'sleep' '10'\ntrue\nwait\n");
        assert_eq!(std::fs::read_to_string(d.join("n.txt")).unwrap(), "1");
        let mode = std::fs::metadata(d.join("n.txt"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_header_alone_is_an_empty_config_and_errors_say_where() {
        assert!(cloud_config("#cloud-config\n").unwrap().runcmd.is_empty());
        let e = cloud_config("#cloud-config\nruncmd: [a\n").err().unwrap();
        assert!(e.contains("line"), "{e}");
        let e = cloud_config("#cloud-config\nruncmd: 3\n").err().unwrap();
        assert!(e.contains("invalid type"), "{e}");
    }
}
