//! `facts`: what a host is (Salt's grains, Ansible's `setup`), read in one
//! script and returned as `data`. Never changes anything.

use async_trait::async_trait;
use serde_json::{Value as J, json};

use super::args::{ArgReader, Args};
use super::contract::{Module, RunContext};
use super::error::ModuleError;
use super::host::{self, kv};
use super::outcome::Outcome;
use crate::remote::Remote;

const IP_MARK: &str = "--cairn-ip--\n";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts;

pub const SCRIPT: &str = r#"if [ -r /etc/os-release ]; then
  ( . /etc/os-release; printf 'os_id=%s\nos_version=%s\nos_name=%s\n' "$ID" "$VERSION_ID" "$PRETTY_NAME" )
fi
echo "kernel=$(uname -r)"
echo "arch=$(uname -m)"
echo "hostname=$(hostname 2>/dev/null || uname -n)"
echo "fqdn=$(hostname -f 2>/dev/null || hostname 2>/dev/null || uname -n)"
echo "cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null)"
if [ -r /proc/meminfo ]; then awk '/^MemTotal:/ { printf "memory_mb=%d\n", $2 / 1024 }' /proc/meminfo; fi
if [ -d /run/systemd/system ]; then echo init=systemd; else echo "init=$(cat /proc/1/comm 2>/dev/null || echo unknown)"; fi
if ip -j addr >/dev/null 2>&1; then printf '%s' '--cairn-ip--
'; ip -j addr; else echo "addresses=$(hostname -I 2>/dev/null)"; fi
"#;

impl Facts {
    pub fn new(args: &Args) -> Result<Facts, ModuleError> {
        ArgReader::new("facts", args).finish()?;
        Ok(Facts)
    }

    /// The grains, from what [`SCRIPT`] printed.
    pub fn grains(stdout: &str) -> J {
        let (head, ip) = match stdout.split_once(IP_MARK) {
            Some((h, ip)) => (h, Some(ip)),
            None => (stdout, None),
        };
        let m = kv(head);
        let s = |k: &str| m.get(k).cloned().map(J::String).unwrap_or(J::Null);
        let n = |k: &str| {
            m.get(k)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(J::from)
                .unwrap_or(J::Null)
        };
        let addresses: Vec<J> = match ip {
            Some(json) => addresses_from_ip(json),
            None => m
                .get("addresses")
                .map(|a| {
                    a.split_whitespace()
                        .map(|x| json!({ "address": x }))
                        .collect()
                })
                .unwrap_or_default(),
        };
        json!({
            "os": { "id": s("os_id"), "version": s("os_version"), "name": s("os_name") },
            "kernel": s("kernel"),
            "arch": s("arch"),
            "hostname": s("hostname"),
            "fqdn": s("fqdn"),
            "cpus": n("cpus"),
            "memory_mb": n("memory_mb"),
            "init": s("init"),
            "addresses": addresses,
        })
    }
}

/// `ip -j addr`'s interfaces flattened to `{interface, address, prefix,
/// family}`, loopback left out (every host has it; inventories want the
/// others).
fn addresses_from_ip(json: &str) -> Vec<J> {
    let Ok(J::Array(links)) = serde_json::from_str::<J>(json) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for link in &links {
        let iface = link["ifname"].as_str().unwrap_or("");
        if iface == "lo" {
            continue;
        }
        for a in link["addr_info"].as_array().into_iter().flatten() {
            out.push(json!({
                "interface": iface,
                "address": a["local"],
                "prefix": a["prefixlen"],
                "family": a["family"],
            }));
        }
    }
    out
}

#[async_trait]
impl Module for Facts {
    fn name(&self) -> &str {
        "facts"
    }

    async fn run(&self, host: &dyn Remote, ctx: &RunContext) -> Result<Outcome, ModuleError> {
        let out = host::must(
            "facts",
            "reading facts",
            host,
            ctx,
            SCRIPT.to_string(),
            None,
        )
        .await?;
        let data = Facts::grains(&out.stdout_str());
        Ok(Outcome {
            summary: format!(
                "{} ({} {})",
                data["hostname"].as_str().unwrap_or("?"),
                data["os"]["id"].as_str().unwrap_or("?"),
                data["os"]["version"].as_str().unwrap_or("")
            ),
            data,
            ..Outcome::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::testkit::{assert_sh, run};

    #[test]
    fn grains_from_a_made_up_reading() {
        let g = Facts::grains(concat!(
            "os_id=debian\nos_version=12\nos_name=Debian GNU/Linux 12\nkernel=6.1.0\narch=x86_64\n",
            "hostname=web1\nfqdn=web1.example.org\ncpus=4\nmemory_mb=7962\ninit=systemd\n",
            "--cairn-ip--\n",
            r#"[{"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},"#,
            r#"{"ifname":"eth0","addr_info":[{"family":"inet","local":"10.0.0.5","prefixlen":24},{"family":"inet6","local":"fe80::1","prefixlen":64}]}]"#,
        ));
        assert_eq!(g["os"]["id"], "debian");
        assert_eq!(g["cpus"], 4);
        assert_eq!(g["memory_mb"], 7962);
        assert_eq!(g["addresses"].as_array().unwrap().len(), 2);
        assert_eq!(g["addresses"][0]["address"], "10.0.0.5");
        assert_eq!(g["addresses"][0]["interface"], "eth0");
        let old = Facts::grains("hostname=h\naddresses=10.0.0.1 10.0.0.2 \n");
        assert_eq!(old["addresses"][1]["address"], "10.0.0.2");
        assert!(old["cpus"].is_null());
    }

    #[tokio::test]
    async fn this_machine_has_a_hostname_and_cpus() {
        assert_sh(SCRIPT);
        let o = run("facts", &[], &Default::default()).await.unwrap();
        assert!(!o.changed);
        assert!(
            !o.data["hostname"].as_str().unwrap().is_empty(),
            "{}",
            o.data
        );
        assert!(o.data["cpus"].as_u64().unwrap() >= 1, "{}", o.data);
        assert!(o.data["kernel"].as_str().is_some());
        assert!(run("grains.items", &[], &Default::default()).await.is_ok());
    }
}
