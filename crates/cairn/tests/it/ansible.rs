//! Real Ansible reads `cairn inventory` as an inventory script: ansible-core
//! from PyPI in a venv under ~/.cache/cairn/ansible-venv (made once, then
//! reused). Skipped, saying why, when python3 or PyPI is not there.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value as J, json};

use crate::cairn;

const FILE: &str = "tests/fixtures/inventory/hosts.ini";

/// The venv's `bin/`, made with `python3 -m venv` and `pip install
/// ansible-core` if it is not there yet; `Err` says why not.
pub(crate) fn ansible_bin() -> Result<PathBuf, String> {
    let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
    let venv = PathBuf::from(home).join(".cache/cairn/ansible-venv");
    let bin = venv.join("bin");
    if bin.join("ansible-inventory").is_file() {
        return Ok(bin);
    }
    let run = |cmd: &mut Command, what: &str| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.trim_end().lines().last().unwrap_or("").to_string();
            Err(format!("{what} failed ({}): {last}", out.status))
        }
    };
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    )?;
    run(
        Command::new(bin.join("pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--timeout",
            "30",
            "ansible-core",
        ]),
        "pip install ansible-core (is PyPI reachable?)",
    )
    .inspect_err(|_| {
        // A half-made venv would be taken as ready next time.
        let _ = std::fs::remove_dir_all(&venv);
    })?;
    Ok(bin)
}

fn ansible_inventory(bin: &Path, script: &Path, args: &[&str]) -> J {
    let out = Command::new(bin.join("ansible-inventory"))
        .arg("-i")
        .arg(script)
        .args(args)
        .env("ANSIBLE_LOCALHOST_WARNING", "false")
        .env("ANSIBLE_INVENTORY_UNPARSED_WARNING", "false")
        .env("ANSIBLE_NOCOLOR", "1")
        .output()
        .expect("ansible-inventory runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ansible-inventory {args:?}: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn ansible_inventory_reads_cairn_inventory_as_a_script() {
    let bin = match ansible_bin() {
        Ok(bin) => bin,
        Err(why) => {
            eprintln!("skipped: no ansible-core: {why}");
            return;
        }
    };
    let dir = std::env::temp_dir().join(format!("cairn-it-ansible-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join(FILE);
    let script = dir.join("cairn-inventory.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec '{}' inventory -i '{}' \"$@\"\n",
            env!("CARGO_BIN_EXE_cairn"),
            fixture.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let ours = cairn(&["inventory", "-i", FILE, "--list"]);
    assert_eq!(ours.code, 0, "{}", ours.snapshot());
    let ours: J = serde_json::from_str(&ours.stdout).unwrap();
    let theirs = ansible_inventory(&bin, &script, &["--list"]);

    // The same hosts.
    let keys = |v: &J| -> Vec<String> {
        let mut k: Vec<String> = v["_meta"]["hostvars"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    };
    assert_eq!(keys(&ours), keys(&theirs));
    // The same groups, members and children (Ansible leaves out empty lists).
    let groups = ours.as_object().unwrap();
    for (name, body) in groups.iter().filter(|(n, _)| *n != "_meta") {
        for field in ["hosts", "children"] {
            let mine = body.get(field).cloned().unwrap_or(json!([]));
            let seen = theirs[name].get(field).cloned().unwrap_or(json!([]));
            assert_eq!(mine, seen, "{name}.{field}");
        }
    }
    // Each host's variables, its groups' included, as Ansible resolves them.
    for host in keys(&ours) {
        let mine = cairn(&["inventory", "-i", FILE, "--host", &host]);
        let mine: J = serde_json::from_str(&mine.stdout).unwrap();
        assert_eq!(
            mine,
            ansible_inventory(&bin, &script, &["--host", &host]),
            "{host}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
