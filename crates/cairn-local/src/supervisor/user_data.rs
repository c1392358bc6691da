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

#[derive(Deserialize)]
struct CloudConfig {
    #[serde(default)]
    write_files: Vec<WriteFile>,
    #[serde(default)]
    runcmd: Vec<RunCmd>,
}

#[derive(Deserialize)]
struct WriteFile {
    path: String,
    #[serde(default)]
    content: String,
    permissions: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RunCmd {
    Line(String),
    Argv(Vec<String>),
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
        let cc: CloudConfig = serde_yaml::from_str(user_data)
            .map_err(|e| format!("user_data is not valid cloud-config: {e}"))?;
        for f in &cc.write_files {
            let target = inside(sandbox, &f.path)?;
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("write_files {}: {e}", f.path))?;
            }
            std::fs::write(&target, &f.content)
                .map_err(|e| format!("write_files {}: {e}", f.path))?;
            if let Some(mode) = &f.permissions {
                let mode = u32::from_str_radix(mode.trim_start_matches("0o"), 8).map_err(|_| {
                    format!("write_files {}: permissions {mode} is not octal", f.path)
                })?;
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| format!("write_files {}: {e}", f.path))?;
            }
        }
        let mut s = String::from("#!/bin/sh\nset -e\n");
        for c in &cc.runcmd {
            match c {
                RunCmd::Line(l) => s.push_str(l),
                RunCmd::Argv(a) => s.push_str(
                    &a.iter()
                        .map(|x| shell_quote(x))
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
