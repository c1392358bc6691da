//! Enabling a service as `systemctl enable` does, so that one state file
//! serves a systemd host and a local server alike: a symlink to the unit
//! file in `CONFIG_DIR/TARGET.wants/` for every target of its
//! `[Install] WantedBy=`. The init starts the services wanted by
//! [`BOOT_TARGET`] at boot.

use std::path::{Path, PathBuf};

use super::control::ServiceError;
use super::unit::Unit;

/// The target whose wanted services start at boot.
pub const BOOT_TARGET: &str = "multi-user.target";

/// The services enabled for boot, by name, sorted.
pub fn enabled_at_boot(config_dir: &Path) -> Vec<String> {
    let dir = config_dir.join(format!("{BOOT_TARGET}.wants"));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".service").map(String::from)
        })
        .collect();
    names.sort();
    names
}

/// Every `*.wants/NAME.service` link there is.
pub fn wants_links(config_dir: &Path, name: &str) -> Vec<PathBuf> {
    std::fs::read_dir(config_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wants"))
        .map(|e| e.path().join(format!("{name}.service")))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect()
}

/// A symlink to the unit file in the wants directory of every target of
/// its WantedBy=; one already there is left as it is.
pub fn enable(config_dir: &Path, unit: &Unit) -> Result<(), ServiceError> {
    let name = &unit.name;
    if unit.wanted_by.is_empty() {
        return Err(ServiceError::Failed(format!(
            "{name} has no WantedBy= in an [Install] section, so it cannot be enabled \
             (add `[Install]` and `WantedBy=multi-user.target` to {})",
            unit.path.display()
        )));
    }
    for target in &unit.wanted_by {
        let dir = config_dir.join(format!("{target}.wants"));
        let link = dir.join(format!("{name}.service"));
        let failed = |e: std::io::Error| {
            ServiceError::Failed(format!("{name}: linking {}: {e}", link.display()))
        };
        if std::fs::read_link(&link).is_ok_and(|t| t == unit.path) {
            continue;
        }
        std::fs::create_dir_all(&dir).map_err(failed)?;
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&unit.path, &link).map_err(failed)?;
    }
    Ok(())
}

/// Removes every wants link of the service.
pub fn disable(config_dir: &Path, name: &str) -> Result<(), ServiceError> {
    for link in wants_links(config_dir, name) {
        std::fs::remove_file(&link).map_err(|e| {
            ServiceError::Failed(format!("{name}: removing {}: {e}", link.display()))
        })?;
    }
    Ok(())
}
