//! Running a server with `runc`: an OCI bundle that cairn writes, an
//! overlay root (the image read-only below, the server's own layer above,
//! kept across restarts), and runc's `run -d`, `kill`, `delete`, `exec` and
//! `state`.
//!
//! runc is the reference OCI runtime and needs no daemon: after `run -d`
//! no runc process stays, the container's init is a child of the system.
//! The distribution's crun 1.8.1 refuses these machines' hybrid cgroup
//! layout; runc 1.1's cgroup v1 driver works with it.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value as Json, json};
use tokio::process::Command;

use super::command::Cmd;
use super::error::HostError;

/// Where runc, run as root without `--root`, keeps its containers' state.
const RUNC_ROOT: &str = "/run/runc";

/// Where a server's `user_data` lives inside it (run once by the init).
pub const USER_DATA_PATH: &str = "/etc/cairn/user_data";
/// Present when the server has a key pair: only then does its init start
/// sshd (a host key alone is not a reason to listen on port 22).
pub const SSH_MARKER: &str = "/etc/cairn/ssh";
/// Where the cairn binary is mounted inside every server.
pub const CAIRN_PATH: &str = "/usr/local/bin/cairn";
/// Where the agent's binary is mounted, beside it (when it ships).
pub const AGENT_PATH: &str = "/usr/local/bin/cairn-agent";

/// PID 1 of a server: cairn's own init (`cairn init`, see
/// `crate::init`) from the bind-mounted binary. It runs `user_data` once,
/// sshd when the server has a key pair, and the services enabled in the
/// server's `multi-user.target.wants`, reaps orphans and answers
/// `cairn service` on its socket. `-v`: its service events go to the
/// console log too (`cairn local logs`).
pub const INIT_ARGS: &[&str] = &[CAIRN_PATH, "init", "-v"];

/// Where `systemctl enable` links the services that start at boot; a new
/// server starts without the ones its image enabled (see
/// [`Server::mask_image_services`]).
const BOOT_WANTS: &str = "/etc/systemd/system/multi-user.target.wants";

/// Docker's default capabilities: enough for root in a server to run apt,
/// sshd and services; no NET_ADMIN (a server cannot change its address and
/// so its identity for the firewalls), no SYS_ADMIN.
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// What a server is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// The container's id, unique on the machine.
    pub id: String,
    /// The server's hostname (its name).
    pub hostname: String,
    /// The server's own directory: layer, mount point, bundle, console log.
    pub dir: PathBuf,
    /// The image's root, below the layer.
    pub image: PathBuf,
    /// A layer captured from another server (an `image` resource), copied
    /// as this server's own layer when it has none yet. Copied rather than
    /// stacked as a second lower directory: overlayfs refuses a lower
    /// directory beneath another (ELOOP), and `image: host`'s is `/`.
    pub seed: Option<PathBuf>,
    /// Written as `/etc/resolv.conf` at every start (the cloud's DNS is on
    /// the link, whose address may change when the cloud starts again).
    pub resolv_conf: Option<String>,
    /// The network namespace it joins (made by `network`).
    pub netns: PathBuf,
    /// The cairn binary, mounted read-only at [`CAIRN_PATH`].
    pub cairn_binary: PathBuf,
    /// PID 1's command line: [`INIT_ARGS`] (cairn's init), or another
    /// init where the runtime is tested without a cairn binary.
    pub init: Vec<String>,
    /// The cgroup the container goes under, relative to cairn's own.
    pub cgroup_parent: String,
    /// More environment for the init and every `exec` (`NAME=value`), such
    /// as `CAIRN_ADDRESS`, the server's address, where `cairn util`
    /// commands listen by default.
    pub env: Vec<String>,
}

/// A command's result inside a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its exit code (128 + signal if killed).
    pub code: i32,
    /// What it printed.
    pub stdout: String,
    /// What it printed on stderr.
    pub stderr: String,
}

/// runc's view of a container (`runc state`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct State {
    /// The container's id.
    pub id: String,
    /// Its init's pid on the machine (0 once stopped).
    pub pid: i64,
    /// `created`, `running`, `paused` or `stopped`.
    pub status: String,
    /// Its bundle directory.
    pub bundle: String,
}

/// A server run by runc.
#[derive(Debug, Clone)]
pub struct Server {
    spec: ServerSpec,
}

/// Refuses paths that would break an overlay's option string or
/// /proc/mounts matching.
fn check_path(path: &Path) -> Result<(), HostError> {
    let s = path.to_string_lossy();
    let reason = if !path.is_absolute() {
        Some("it must be absolute")
    } else if s.contains([',', ':', '\\']) || s.chars().any(char::is_whitespace) {
        Some("it contains ',', ':', '\\' or whitespace")
    } else {
        None
    };
    match reason {
        None => Ok(()),
        Some(r) => Err(HostError::InvalidPath {
            path: path.to_path_buf(),
            reason: r.to_string(),
        }),
    }
}

impl Server {
    /// A server, its paths checked.
    pub fn new(spec: ServerSpec) -> Result<Server, HostError> {
        for p in [&spec.dir, &spec.image, &spec.netns, &spec.cairn_binary]
            .into_iter()
            .chain(&spec.seed)
        {
            check_path(p)?;
        }
        for (what, name) in [("container id", &spec.id), ("hostname", &spec.hostname)] {
            let ok = !name.is_empty()
                && name.len() <= 63
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok {
                return Err(HostError::InvalidName {
                    what,
                    name: name.clone(),
                    reason: "use 1 to 63 letters, digits, '-', '_' or '.'".into(),
                });
            }
        }
        Ok(Server { spec })
    }

    /// Its spec.
    pub fn spec(&self) -> &ServerSpec {
        &self.spec
    }

    /// The mount point of its root (the overlay).
    pub fn rootfs(&self) -> PathBuf {
        self.spec.dir.join("rootfs")
    }

    /// Its own writable layer (the overlay's upper directory).
    pub fn upper(&self) -> PathBuf {
        self.spec.dir.join("layer/upper")
    }

    fn work(&self) -> PathBuf {
        self.spec.dir.join("layer/work")
    }

    fn bundle(&self) -> PathBuf {
        self.spec.dir.join("bundle")
    }

    /// The file the init's stdout and stderr (and runc's errors) go to.
    pub fn console_log(&self) -> PathBuf {
        self.spec.dir.join("console.log")
    }

    /// The bundle's config.json.
    pub fn config(&self) -> Json {
        let mut config = self.config_base();
        // The small agent binary, when it ships beside cairn: the init's
        // `cairn agent` runs it (README, "Agents").
        if let Some(agent) = cairn_orch::agent::binary_beside(&self.spec.cairn_binary)
            && let Some(mounts) = config["mounts"].as_array_mut()
        {
            mounts.push(
                json!({ "destination": AGENT_PATH, "type": "bind", "source": agent,
                                "options": ["bind", "ro"] }),
            );
        }
        config
    }

    fn config_base(&self) -> Json {
        let caps = CAPABILITIES;
        let mut env = vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            "HOME=/root".to_string(),
            "LANG=C.UTF-8".to_string(),
        ];
        env.extend(self.spec.env.iter().cloned());
        json!({
            "ociVersion": "1.0.2-dev",
            "process": {
                "terminal": false,
                "user": { "uid": 0, "gid": 0 },
                "args": self.spec.init,
                "env": env,
                "cwd": "/",
                "capabilities": { "bounding": caps, "effective": caps, "permitted": caps },
                // No rlimits: runc would set RLIMIT_NOFILE above the caller's hard
                // limit and fail without CAP_SYS_RESOURCE; the server inherits ours.
                "noNewPrivileges": false,
            },
            "root": { "path": self.rootfs(), "readonly": false },
            "hostname": self.spec.hostname,
            "mounts": [
                { "destination": "/proc", "type": "proc", "source": "proc" },
                { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                  "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
                { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
                  "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
                { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                  "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
                { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                  "options": ["nosuid", "noexec", "nodev"] },
                { "destination": "/sys", "type": "sysfs", "source": "sysfs",
                  "options": ["nosuid", "noexec", "nodev", "ro"] },
                { "destination": "/run", "type": "tmpfs", "source": "tmpfs",
                  "options": ["nosuid", "nodev", "mode=755", "size=16m"] },
                { "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                  "options": ["nosuid", "nodev", "mode=1777"] },
                { "destination": CAIRN_PATH, "type": "bind", "source": self.spec.cairn_binary,
                  "options": ["bind", "ro"] },
            ],
            "linux": {
                "cgroupsPath": format!("{}/{}", self.spec.cgroup_parent, self.spec.id),
                "resources": { "devices": [ { "allow": false, "access": "rwm" } ] },
                "namespaces": [
                    { "type": "pid" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" },
                    { "type": "network", "path": self.spec.netns },
                ],
                "maskedPaths": [
                    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                    "/proc/scsi",
                ],
                "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
            },
        })
    }

    /// Whether its root is mounted.
    pub fn is_mounted(&self) -> Result<bool, HostError> {
        is_mount_point(&self.rootfs())
    }

    /// Mounts its root (the overlay), unless it is mounted; makes the
    /// layer on first use. Its "source" is the container id, so
    /// /proc/mounts tells whose it is.
    pub async fn mount_root(&self) -> Result<(), HostError> {
        if let Some(seed) = &self.spec.seed
            && !self.upper().exists()
        {
            let layer = self.spec.dir.join("layer");
            std::fs::create_dir_all(&layer)
                .map_err(|e| HostError::io(format!("create {}", layer.display()), e))?;
            // `cp -a`: overlay whiteouts and opaque-directory xattrs keep
            // their meaning in the new upper directory.
            let copying = self.spec.dir.join("layer/upper.copying");
            let _ = std::fs::remove_dir_all(&copying);
            Cmd::new("cp")
                .args(["-a", "--"])
                .arg(seed)
                .arg(&copying)
                .run()
                .await?;
            std::fs::rename(&copying, self.upper())
                .map_err(|e| HostError::io(format!("rename {}", copying.display()), e))?;
        }
        for dir in [self.upper(), self.work(), self.rootfs(), self.bundle()] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| HostError::io(format!("create {}", dir.display()), e))?;
        }
        if self.is_mounted()? {
            return Ok(());
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.spec.image.display(),
            self.upper().display(),
            self.work().display()
        );
        Cmd::new("mount")
            .args(["-t", "overlay", &self.spec.id, "-o", &options])
            .arg(self.rootfs())
            .run()
            .await?;
        Ok(())
    }

    /// Writes a file into the server's root (through the overlay, so it
    /// lands in its layer). The root must be mounted.
    pub fn write_file(&self, path: &str, contents: &[u8], mode: u32) -> Result<(), HostError> {
        use std::os::unix::fs::PermissionsExt;
        let target = self.rootfs().join(path.trim_start_matches('/'));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| HostError::io(format!("create {}", parent.display()), e))?;
        }
        // Replace, not write through: the lower file may be the image's.
        let _ = std::fs::remove_file(&target);
        std::fs::write(&target, contents)
            .map_err(|e| HostError::io(format!("write {}", target.display()), e))?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
            .map_err(|e| HostError::io(format!("chmod {}", target.display()), e))
    }

    /// Hides the services its image enabled (the machine's own, for
    /// `image: host`: nginx, postgresql...; the image's ssh.service) from
    /// a new server's init, by removing the image's boot wants directory
    /// through the overlay (the image is untouched: the removal is a
    /// whiteout in the server's layer). A service enabled later, by
    /// `cairn service NAME enable` or a package's postinst, starts at boot
    /// as on any host. sshd is the init's own when the server has a key
    /// pair. The root must be mounted.
    pub fn mask_image_services(&self) -> Result<(), HostError> {
        let dir = self.rootfs().join(BOOT_WANTS.trim_start_matches('/'));
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(HostError::io(format!("remove {}", dir.display()), e))
            }
            _ => Ok(()),
        }
    }

    /// Starts the server: mounts its root, writes its hostname and
    /// bundle, and runs it detached (`runc run -d`), stdio to the console
    /// log. If it does not start, its root is unmounted again and the error
    /// carries runc's words.
    pub async fn start(&self) -> Result<(), HostError> {
        self.mount_root().await?;
        let result = self.run().await;
        if result.is_err() {
            let _ = Cmd::new("runc")
                .args(["delete", "-f", &self.spec.id])
                .output()
                .await;
            let _ = Cmd::new("umount").arg(self.rootfs()).output().await;
        }
        result
    }

    async fn run(&self) -> Result<(), HostError> {
        self.write_file(
            "/etc/hostname",
            format!("{}\n", self.spec.hostname).as_bytes(),
            0o644,
        )?;
        if let Some(text) = &self.spec.resolv_conf {
            self.write_file("/etc/resolv.conf", text.as_bytes(), 0o644)?;
        }
        let config = self.bundle().join("config.json");
        std::fs::write(&config, format!("{:#}\n", self.config()))
            .map_err(|e| HostError::io(format!("write {}", config.display()), e))?;
        // A container of this id that stopped without being deleted (the
        // machine or cairn died) would block the id. runc keeps a
        // container's state in a directory named after it: without one,
        // there is none, and no `runc state` process is needed to know.
        if Path::new(RUNC_ROOT).join(&self.spec.id).exists() && self.state().await?.is_some() {
            Cmd::new("runc")
                .args(["delete", "-f", &self.spec.id])
                .run()
                .await?;
        }
        let log_path = self.console_log();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| HostError::io(format!("open {}", log_path.display()), e))?;
        let offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let stderr = log
            .try_clone()
            .map_err(|e| HostError::io(format!("open {}", log_path.display()), e))?;
        let cmd = Cmd::new("runc")
            .args(["run", "-d", "--bundle"])
            .arg(self.bundle())
            .arg("--pid-file")
            .arg(self.spec.dir.join("init.pid"))
            .arg(&self.spec.id);
        // With terminal false and -d, runc hands its own stdio to the init:
        // the console log, which also gets runc's own errors.
        let started = Instant::now();
        let status = Command::new("runc")
            .args(["run", "-d", "--bundle"])
            .arg(self.bundle())
            .arg("--pid-file")
            .arg(self.spec.dir.join("init.pid"))
            .arg(&self.spec.id)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .status()
            .await
            .map_err(|source| HostError::Spawn {
                command: cmd.line(),
                source,
            })?;
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            program = "runc",
            "{}",
            cmd.line()
        );
        if status.success() {
            return Ok(());
        }
        let written = std::fs::read(&log_path).unwrap_or_default();
        let tail = String::from_utf8_lossy(written.get(offset as usize..).unwrap_or_default());
        Err(HostError::NotStarted {
            id: self.spec.id.clone(),
            reason: format!("`{}` failed ({status}): {}", cmd.line(), tail.trim()),
        })
    }

    /// runc's state of the container; `None` if runc has none.
    pub async fn state(&self) -> Result<Option<State>, HostError> {
        let cmd = Cmd::new("runc").args(["state", &self.spec.id]);
        let out = cmd.output().await?;
        if !out.status.success() {
            if String::from_utf8_lossy(&out.stderr).contains("does not exist") {
                return Ok(None);
            }
            cmd.check(&out)?;
        }
        serde_json::from_slice(&out.stdout)
            .map(Some)
            .map_err(|e| HostError::Output {
                command: cmd.line(),
                reason: e.to_string(),
            })
    }

    /// Runs `args` inside the running server (as root, in `/`, with the
    /// init's environment), to its end.
    pub async fn exec<S: AsRef<str>>(&self, args: &[S]) -> Result<ExecOutput, HostError> {
        let out = Cmd::new("runc")
            .args(["exec", &self.spec.id])
            .args(args.iter().map(AsRef::as_ref))
            .output()
            .await?;
        let code = out.status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + out.status.signal().unwrap_or(0)
        });
        Ok(ExecOutput {
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Stops the server: TERM to its init, up to `grace` for it to exit,
    /// then `runc delete -f` (KILL), unmount its root, remove the cgroup
    /// directories runc leaves. Its layer stays (a start brings it back
    /// with its files). Whatever is already gone is skipped.
    pub async fn stop(&self, grace: Duration) -> Result<(), HostError> {
        if let Some(state) = self.state().await? {
            if state.status == "running" {
                let _ = Cmd::new("runc")
                    .args(["kill", &self.spec.id, "TERM"])
                    .output()
                    .await;
                let deadline = Instant::now() + grace;
                while Instant::now() < deadline {
                    match self.state().await? {
                        Some(s) if s.status != "stopped" => {
                            tokio::time::sleep(Duration::from_millis(20)).await
                        }
                        _ => break,
                    }
                }
            }
            Cmd::new("runc")
                .args(["delete", "-f", &self.spec.id])
                .run()
                .await?;
        }
        if self.is_mounted()? {
            Cmd::new("umount").arg(self.rootfs()).run().await?;
        }
        remove_cgroups(&self.spec.cgroup_parent, &self.spec.id)
    }

    /// Stops the server and removes its directory (layer included).
    pub async fn destroy(&self) -> Result<(), HostError> {
        self.stop(Duration::ZERO).await?;
        if self.is_mounted()? {
            return Err(HostError::io(
                format!("remove {}", self.spec.dir.display()),
                std::io::ErrorKind::ResourceBusy.into(),
            ));
        }
        match std::fs::remove_dir_all(&self.spec.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(HostError::io(
                format!("remove {}", self.spec.dir.display()),
                e,
            )),
            _ => Ok(()),
        }
    }
}

/// Whether `path` is a mount point (in /proc/self/mounts).
pub fn is_mount_point(path: &Path) -> Result<bool, HostError> {
    let mounts = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|e| HostError::io("read /proc/self/mounts", e))?;
    Ok(mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .any(|m| Path::new(m) == path))
}

/// The cgroup directories of `parent/id` under cairn's own cgroup, in
/// every hierarchy this process is in (v1 and v2 alike).
pub fn cgroup_dirs(parent: &str, id: &str) -> Result<Vec<PathBuf>, HostError> {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| HostError::io("read /proc/self/cgroup", e))?;
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let mut dirs = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrl, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        let hierarchy = match ctrl {
            "" if unified => PathBuf::from("/sys/fs/cgroup"),
            "" => PathBuf::from("/sys/fs/cgroup/unified"),
            c => PathBuf::from("/sys/fs/cgroup").join(c.strip_prefix("name=").unwrap_or(c)),
        };
        let base = hierarchy.join(path.trim_start_matches('/')).join(parent);
        dirs.push(base.join(id));
        dirs.push(base);
    }
    Ok(dirs)
}

/// Removes the container's cgroup (runc usually has) and the shared parent
/// once empty (runc never does); a parent still in use stays.
fn remove_cgroups(parent: &str, id: &str) -> Result<(), HostError> {
    for dir in cgroup_dirs(parent, id)? {
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound
                        | std::io::ErrorKind::DirectoryNotEmpty
                        | std::io::ErrorKind::ResourceBusy
                ) => {}
            Err(e) => return Err(HostError::io(format!("remove cgroup {}", dir.display()), e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ServerSpec {
        ServerSpec {
            id: "cairn-ab12-web0".into(),
            hostname: "web0".into(),
            dir: "/var/lib/cairn/servers/web0".into(),
            image: "/".into(),
            seed: None,
            resolv_conf: None,
            netns: "/run/netns/cairn-ab12-web0".into(),
            cairn_binary: "/usr/bin/cairn".into(),
            init: INIT_ARGS.iter().map(|a| a.to_string()).collect(),
            cgroup_parent: "cairn-ab12".into(),
            env: vec!["CAIRN_ADDRESS=10.0.0.10".into()],
        }
    }

    #[test]
    fn the_bundle_joins_the_servers_netns_and_mounts_cairn_read_only() {
        let config = Server::new(spec()).unwrap().config();
        assert_eq!(config["hostname"], "web0");
        assert_eq!(config["root"]["path"], "/var/lib/cairn/servers/web0/rootfs");
        assert_eq!(config["process"]["terminal"], false);
        assert_eq!(config["process"]["env"][3], "CAIRN_ADDRESS=10.0.0.10");
        assert_eq!(
            config["process"]["args"],
            json!(["/usr/local/bin/cairn", "init", "-v"])
        );
        assert!(config["process"].get("rlimits").is_none());
        let namespaces = config["linux"]["namespaces"].as_array().unwrap();
        let types: Vec<&str> = namespaces
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["pid", "ipc", "uts", "mount", "network"]);
        assert_eq!(namespaces[4]["path"], "/run/netns/cairn-ab12-web0");
        let mounts = config["mounts"].as_array().unwrap();
        let cairn = mounts
            .iter()
            .find(|m| m["destination"] == CAIRN_PATH)
            .unwrap();
        assert_eq!(cairn["source"], "/usr/bin/cairn");
        assert_eq!(cairn["options"], json!(["bind", "ro"]));
        for d in ["/proc", "/dev", "/dev/pts", "/sys"] {
            assert!(mounts.iter().any(|m| m["destination"] == d), "{d}");
        }
        assert_eq!(config["linux"]["cgroupsPath"], "cairn-ab12/cairn-ab12-web0");
    }

    /// The agent's binary is mounted beside cairn's when it ships with it,
    /// and not otherwise (the init's `cairn agent` then runs in place).
    #[test]
    fn the_agent_binary_is_mounted_when_it_lies_beside_cairn() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec();
        spec.cairn_binary = dir.path().join("cairn");
        std::fs::write(&spec.cairn_binary, "#!").unwrap();
        let agent_mounts = |spec: ServerSpec| {
            let config = Server::new(spec).unwrap().config();
            config["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["destination"] == AGENT_PATH)
                .cloned()
                .collect::<Vec<_>>()
        };
        assert!(agent_mounts(spec.clone()).is_empty());
        std::fs::write(dir.path().join("cairn-agent"), "#!").unwrap();
        let mounts = agent_mounts(spec);
        assert_eq!(mounts.len(), 1, "{mounts:?}");
        assert_eq!(
            mounts[0]["source"],
            dir.path().join("cairn-agent").display().to_string()
        );
        assert_eq!(mounts[0]["options"], json!(["bind", "ro"]));
    }

    #[test]
    fn paths_that_break_an_overlay_mount_are_refused() {
        let mut s = spec();
        s.dir = "/var/lib/a,b".into();
        let err = Server::new(s).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot be used in an overlay mount"),
            "{err}"
        );
        let mut s = spec();
        s.hostname = "web 0".into();
        assert!(Server::new(s).is_err());
    }

    #[test]
    fn cgroup_dirs_are_under_our_own_cgroup() {
        let dirs = cgroup_dirs("cairn-x", "c1").unwrap();
        assert!(!dirs.is_empty());
        assert!(dirs.iter().all(|d| d.starts_with("/sys/fs/cgroup")));
        assert!(dirs.iter().any(|d| d.ends_with("cairn-x/c1")));
        assert!(dirs.iter().any(|d| d.ends_with("cairn-x")));
    }
}
