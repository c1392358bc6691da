//! Ansible's connection variables and the typed fields they set.

use serde_json::Value as J;

use super::host::Host;

/// The variables that set a [`Host`]'s fields instead of staying variables.
pub const CONNECTION_VARS: &[&str] = &[
    "ansible_host",
    "ansible_ssh_host",
    "ansible_port",
    "ansible_ssh_port",
    "ansible_user",
    "ansible_ssh_user",
    "ansible_ssh_private_key_file",
    "ansible_private_key_file",
    "ansible_become",
];

impl Host {
    /// Sets a host variable, a connection variable going to its field.
    pub fn set_var(&mut self, key: &str, value: J) -> Result<(), String> {
        set(self, key, value)
    }
}

pub fn set(host: &mut Host, key: &str, value: J) -> Result<(), String> {
    match key {
        "ansible_host" | "ansible_ssh_host" => host.address = Some(string(key, &value)?),
        "ansible_port" | "ansible_ssh_port" => host.port = Some(port(key, &value)?),
        "ansible_user" | "ansible_ssh_user" => host.user = Some(string(key, &value)?),
        "ansible_ssh_private_key_file" | "ansible_private_key_file" => {
            host.key_file = Some(string(key, &value)?)
        }
        "ansible_become" => host.r#become = Some(boolean(key, &value)?),
        _ => {
            host.vars.insert(key.to_string(), value);
        }
    }
    Ok(())
}

fn string(key: &str, v: &J) -> Result<String, String> {
    match v {
        J::String(s) => Ok(s.clone()),
        J::Number(n) => Ok(n.to_string()),
        other => Err(format!("{key} must be a string, not {other}")),
    }
}

fn port(key: &str, v: &J) -> Result<u16, String> {
    let n = match v {
        J::Number(n) => n.as_u64(),
        J::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.and_then(|n| u16::try_from(n).ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{key} must be a port number (1-65535), not {v}"))
}

/// Ansible's booleans: true/false, yes/no, on/off, 1/0, any case.
fn boolean(key: &str, v: &J) -> Result<bool, String> {
    match v {
        J::Bool(b) => Ok(*b),
        J::Number(n) if n.as_u64() == Some(1) => Ok(true),
        J::Number(n) if n.as_u64() == Some(0) => Ok(false),
        J::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" | "y" | "t" => Ok(true),
            "false" | "no" | "off" | "0" | "n" | "f" => Ok(false),
            _ => Err(format!("{key} must be a boolean, not {v}")),
        },
        _ => Err(format!("{key} must be a boolean, not {v}")),
    }
}
