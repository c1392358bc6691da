//! An app as the template declares it (`apps:`), typed from its evaluated
//! value. The template checked the keys where they are written; here the
//! values are checked, after their expressions ran.
//!
//! ```yaml
//! apps:
//!   hello:
//!     build: {command: "make dist", dir: app, output: dist}
//!     install: /srv/hello                # releases/VERSION and `current` under it
//!     service: {command: "exec ./serve", stop_timeout: 10s}
//!     port: 8081                         # where the service listens; the balancer's backend port
//!     health: {path: /healthz, timeout: 30s, interval: 500ms}
//!     load_balancer: "{{ app_lb.id }}"
//!     servers: "G@role:web"              # a target expression, or a list of names
//!     hooks: {pre: "./migrate", post: "echo done"}
//!     keep: 5
//!     heal: {grace: 30s, restart: true, replace: true, interval: 5s}
//! ```

use std::time::Duration;

use serde_json::Value as J;

/// A value of an app that is not what it must be.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("app `{app}`: `{key}` {problem}")]
pub struct AppError {
    pub app: String,
    pub key: String,
    pub problem: String,
}

/// How the app is built into an artifact (`cairn artifact build`).
#[derive(Debug, Clone, PartialEq)]
pub struct BuildDecl {
    pub command: String,
    /// The source directory, relative to the template's directory.
    pub dir: String,
    /// The directory the build leaves its result in, relative to `dir`.
    pub output: String,
}

/// How the app runs on a host: a command run from `current`, kept with a
/// pid file; stopped with TERM to its process group, KILL after `stop_timeout`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceDecl {
    /// What runs, from `current` (empty for a `unit` the host already
    /// has, or that the release installs).
    pub command: String,
    pub stop_timeout: Duration,
    pub user: Option<String>,
    /// A unit the host's init supervises (systemd, or cairn's own init on
    /// a local server) instead of cairn's pid file: with `command`, cairn
    /// writes `/etc/systemd/system/UNIT.service` for it (restarted when it
    /// dies, enabled at boot).
    pub unit: Option<String>,
}

/// The health gate after a restart: `GET http://ADDRESS:PORT/PATH` on the
/// host answers 2xx within `timeout`, tried every `interval`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthDecl {
    pub path: String,
    pub port: u16,
    pub timeout: Duration,
    pub interval: Duration,
}

/// How `cairn heal` treats a server whose health check fails: after
/// `grace` of failing it is restarted (when `restart`), and if it still
/// fails, replaced by the engine (when `replace`). Checked every
/// `interval`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealPolicy {
    pub grace: Duration,
    pub interval: Duration,
    pub restart: bool,
    pub replace: bool,
}

/// Where the app runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Servers {
    /// A target expression (Salt's compound grammar or Ansible's patterns).
    Target(String),
    /// Inventory names.
    Names(Vec<String>),
}

/// Commands run once per release, on the first host of the rollout: `pre`
/// in the new release's directory before any host switches (migrations),
/// `post` in `current` after every host switched.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hooks {
    pub pre: Option<String>,
    pub post: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppSpec {
    pub name: String,
    pub description: Option<String>,
    pub build: Option<BuildDecl>,
    pub install: String,
    pub service: ServiceDecl,
    pub port: u16,
    pub health: HealthDecl,
    /// The provider id of the load balancer its servers are behind.
    pub load_balancer: Option<String>,
    pub servers: Servers,
    pub hooks: Hooks,
    /// Releases kept on each host, the live one included.
    pub keep: usize,
    /// The artifact store (`file:PATH`, a path, `s3://bucket/prefix`).
    pub store: Option<String>,
    /// Self-healing (`cairn heal`); none when the app declares no `heal`.
    pub heal: Option<HealPolicy>,
}

impl AppSpec {
    /// Reads the app `name` from its evaluated declaration.
    pub fn from_json(name: &str, value: &J) -> Result<AppSpec, AppError> {
        let err = |key: &str, problem: &str| AppError {
            app: name.to_string(),
            key: key.to_string(),
            problem: problem.to_string(),
        };
        let map = value
            .as_object()
            .ok_or_else(|| err("(the app)", "must be a map of settings"))?;
        let string = |key: &str| -> Result<Option<String>, AppError> {
            match map.get(key) {
                None | Some(J::Null) => Ok(None),
                Some(J::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
                Some(_) => Err(err(key, "must be a non-empty string")),
            }
        };
        let install = string("install")?.ok_or_else(|| err("install", "is required"))?;
        if !install.starts_with('/') || install.split('/').any(|c| c == "..") || install == "/" {
            return Err(err(
                "install",
                "must be an absolute path below `/` without `..` (such as /srv/NAME)",
            ));
        }
        let port = match map.get("port") {
            None | Some(J::Null) => None,
            Some(v) => Some(port_of(v).ok_or_else(|| err("port", "must be a port, 1 to 65535"))?),
        };
        let service = match map.get("service") {
            Some(J::String(cmd)) => ServiceDecl {
                command: cmd.clone(),
                stop_timeout: Duration::from_secs(10),
                user: None,
                unit: None,
            },
            Some(J::Object(s)) => {
                let unit = match s.get("unit") {
                    None | Some(J::Null) => None,
                    Some(J::String(u))
                        if !u.is_empty()
                            && u.len() <= 64
                            && u.chars().all(|c| {
                                c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@')
                            })
                            && !u.starts_with(['-', '.']) =>
                    {
                        Some(u.trim_end_matches(".service").to_string())
                    }
                    Some(_) => {
                        return Err(err(
                            "service.unit",
                            "must be a unit name (letters, digits, `-`, `_`, `.`, `@`)",
                        ));
                    }
                };
                let command = match s.get("command") {
                    Some(J::String(c)) if !c.trim().is_empty() => c.clone(),
                    None | Some(J::Null) if unit.is_some() => String::new(),
                    _ => {
                        return Err(err(
                            "service.command",
                            "is required (a shell command), unless `unit` names one the host has",
                        ));
                    }
                };
                ServiceDecl {
                    unit,
                    command,
                    stop_timeout: duration(s.get("stop_timeout"), Duration::from_secs(10))
                        .map_err(|p| err("service.stop_timeout", &p))?,
                    user: match s.get("user") {
                        None | Some(J::Null) => None,
                        Some(J::String(u)) => Some(u.clone()),
                        Some(_) => return Err(err("service.user", "must be a user name")),
                    },
                }
            }
            None | Some(J::Null) => return Err(err("service", "is required")),
            Some(_) => {
                return Err(err(
                    "service",
                    "must be a command or {command, stop_timeout, user, unit}",
                ));
            }
        };
        let health = match map.get("health") {
            None | Some(J::Null) => HealthDecl {
                path: "/".into(),
                port: port.ok_or_else(|| err("port", "is required when `health` is not given"))?,
                timeout: Duration::from_secs(60),
                interval: Duration::from_millis(500),
            },
            Some(J::Object(h)) => {
                let path = match h.get("path") {
                    None | Some(J::Null) => "/".to_string(),
                    Some(J::String(p)) if p.starts_with('/') => p.clone(),
                    Some(_) => return Err(err("health.path", "must start with `/`")),
                };
                let hport = match h.get("port") {
                    None | Some(J::Null) => port.ok_or_else(|| {
                        err("health.port", "is required when the app has no `port`")
                    })?,
                    Some(v) => port_of(v)
                        .ok_or_else(|| err("health.port", "must be a port, 1 to 65535"))?,
                };
                HealthDecl {
                    path,
                    port: hport,
                    timeout: duration(h.get("timeout"), Duration::from_secs(60))
                        .map_err(|p| err("health.timeout", &p))?,
                    interval: duration(h.get("interval"), Duration::from_millis(500))
                        .map_err(|p| err("health.interval", &p))?,
                }
            }
            Some(_) => {
                return Err(err(
                    "health",
                    "must be a map {path, port, timeout, interval}",
                ));
            }
        };
        let servers = match map.get("servers") {
            Some(J::String(t)) if !t.trim().is_empty() => Servers::Target(t.clone()),
            Some(J::Array(items)) if !items.is_empty() => Servers::Names(
                items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| err("servers", "must list server names (strings)"))?,
            ),
            _ => {
                return Err(err(
                    "servers",
                    "must be a target expression (G@role:web) or a non-empty list of server names",
                ));
            }
        };
        let build = match map.get("build") {
            None | Some(J::Null) => None,
            Some(J::String(cmd)) => Some(BuildDecl {
                command: cmd.clone(),
                dir: ".".into(),
                output: ".".into(),
            }),
            Some(J::Object(b)) => {
                let field = |k: &str| match b.get(k) {
                    None | Some(J::Null) => Ok(".".to_string()),
                    Some(J::String(s)) if relative(s) => Ok(s.clone()),
                    Some(_) => Err(err(
                        &format!("build.{k}"),
                        "must be a relative path without `..`",
                    )),
                };
                Some(BuildDecl {
                    command: match b.get("command") {
                        Some(J::String(c)) if !c.trim().is_empty() => c.clone(),
                        _ => return Err(err("build.command", "is required (a shell command)")),
                    },
                    dir: field("dir")?,
                    output: field("output")?,
                })
            }
            Some(_) => return Err(err("build", "must be a command or {command, dir, output}")),
        };
        let hooks = match map.get("hooks") {
            None | Some(J::Null) => Hooks::default(),
            Some(J::Object(h)) => {
                let hook = |k: &str| match h.get(k) {
                    None | Some(J::Null) => Ok(None),
                    Some(J::String(s)) => Ok(Some(s.clone())),
                    Some(_) => Err(err(&format!("hooks.{k}"), "must be a shell command")),
                };
                Hooks {
                    pre: hook("pre")?,
                    post: hook("post")?,
                }
            }
            Some(_) => return Err(err("hooks", "must be a map {pre, post}")),
        };
        let keep = match map.get("keep") {
            None | Some(J::Null) => 5,
            Some(J::Number(n)) => match n.as_u64() {
                Some(k) if (2..=100).contains(&k) => k as usize,
                _ => return Err(err("keep", "must be a whole number from 2 to 100")),
            },
            Some(_) => return Err(err("keep", "must be a whole number from 2 to 100")),
        };
        let heal = match map.get("heal") {
            None | Some(J::Null) => None,
            Some(J::Object(h)) => {
                if matches!(map.get("health"), None | Some(J::Null)) {
                    return Err(err(
                        "heal",
                        "needs a `health` check to judge servers by (health: {path, port, timeout})",
                    ));
                }
                let flag = |k: &str| match h.get(k) {
                    None | Some(J::Null) => Ok(true),
                    Some(J::Bool(b)) => Ok(*b),
                    Some(_) => Err(err(&format!("heal.{k}"), "must be true or false")),
                };
                let interval = duration(h.get("interval"), Duration::from_secs(5))
                    .map_err(|p| err("heal.interval", &p))?;
                if interval < Duration::from_millis(100) {
                    return Err(err("heal.interval", "must be at least 100ms"));
                }
                Some(HealPolicy {
                    grace: duration(h.get("grace"), Duration::from_secs(30))
                        .map_err(|p| err("heal.grace", &p))?,
                    interval,
                    restart: flag("restart")?,
                    replace: flag("replace")?,
                })
            }
            Some(_) => {
                return Err(err(
                    "heal",
                    "must be a map {grace, restart, replace, interval}",
                ));
            }
        };
        Ok(AppSpec {
            name: name.to_string(),
            description: string("description")?,
            build,
            install,
            service,
            port: port.unwrap_or(health.port),
            health,
            load_balancer: string("load_balancer")?,
            servers,
            hooks,
            keep,
            store: string("store")?,
            heal,
        })
    }
}

fn port_of(v: &J) -> Option<u16> {
    let n = match v {
        J::Number(n) => n.as_u64()?,
        J::String(s) => s.parse().ok()?,
        _ => return None,
    };
    u16::try_from(n).ok().filter(|p| *p > 0)
}

fn relative(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('/') && !s.split('/').any(|c| c == "..")
}

fn duration(v: Option<&J>, default: Duration) -> Result<Duration, String> {
    match v {
        None | Some(J::Null) => Ok(default),
        Some(J::String(s)) => cairn_engine::schema::parse_duration_ms(s)
            .map(Duration::from_millis)
            .ok_or_else(|| format!("must be a duration such as 30s or 500ms, not `{s}`")),
        Some(J::Number(n)) => n
            .as_f64()
            .filter(|f| *f >= 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| "must be a duration such as 30s".into()),
        Some(_) => Err("must be a duration such as 30s or 500ms".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_app_is_read_with_its_defaults() {
        let app = AppSpec::from_json(
            "hello",
            &json!({
                "install": "/srv/hello",
                "service": "exec ./serve",
                "port": 8081,
                "servers": "G@role:web",
                "load_balancer": "lb-1",
                "build": {"command": "make", "output": "dist"},
                "health": {"path": "/healthz", "timeout": "5s"},
            }),
        )
        .unwrap();
        assert_eq!(app.health.port, 8081);
        assert_eq!(app.health.timeout, Duration::from_secs(5));
        assert_eq!(app.health.interval, Duration::from_millis(500));
        assert_eq!(app.service.stop_timeout, Duration::from_secs(10));
        assert_eq!(app.keep, 5);
        assert_eq!(app.service.unit, None);
        // A unit the host has: no command needed; `.service` is implied.
        let unit = AppSpec::from_json(
            "hello",
            &json!({"install": "/srv/hello", "service": {"unit": "hello.service"}, "port": 8081,
                    "servers": ["a"]}),
        )
        .unwrap();
        assert_eq!(unit.service.unit.as_deref(), Some("hello"));
        assert_eq!(unit.service.command, "");
        assert_eq!(app.build.unwrap().dir, ".");
        assert_eq!(app.servers, Servers::Target("G@role:web".into()));
        assert_eq!(app.heal, None);
    }

    #[test]
    fn a_heal_policy_has_defaults_and_needs_a_health_check() {
        let base = json!({"install": "/srv/a", "service": "x", "port": 80, "servers": ["a"],
                          "health": {"path": "/healthz"}});
        let with = |heal: J| {
            let mut m = base.clone();
            m["heal"] = heal;
            AppSpec::from_json("a", &m)
        };
        assert_eq!(
            with(json!({})).unwrap().heal,
            Some(HealPolicy {
                grace: Duration::from_secs(30),
                interval: Duration::from_secs(5),
                restart: true,
                replace: true,
            })
        );
        let p = with(json!({"grace": "2s", "interval": "500ms", "replace": false}))
            .unwrap()
            .heal
            .unwrap();
        assert_eq!(
            (p.grace, p.interval, p.restart, p.replace),
            (
                Duration::from_secs(2),
                Duration::from_millis(500),
                true,
                false
            )
        );
        let bad = |heal: J| with(heal).unwrap_err().to_string();
        assert_eq!(
            bad(json!({"grace": "soon"})),
            "app `a`: `heal.grace` must be a duration such as 30s or 500ms, not `soon`"
        );
        assert_eq!(
            bad(json!({"restart": "yes"})),
            "app `a`: `heal.restart` must be true or false"
        );
        assert_eq!(
            bad(json!({"interval": "10ms"})),
            "app `a`: `heal.interval` must be at least 100ms"
        );
        assert_eq!(
            bad(json!(true)),
            "app `a`: `heal` must be a map {grace, restart, replace, interval}"
        );
        let mut no_health = base.clone();
        no_health.as_object_mut().unwrap().remove("health");
        no_health["heal"] = json!({});
        assert_eq!(
            AppSpec::from_json("a", &no_health).unwrap_err().to_string(),
            "app `a`: `heal` needs a `health` check to judge servers by (health: {path, port, timeout})"
        );
    }

    #[test]
    fn bad_values_name_the_key_and_what_it_must_be() {
        let base = json!({"install": "/srv/a", "service": "x", "port": 80, "servers": ["a"]});
        let bad = |k: &str, v: J| {
            let mut m = base.clone();
            m[k] = v;
            AppSpec::from_json("a", &m).unwrap_err().to_string()
        };
        assert_eq!(
            bad("install", json!("srv/a")),
            "app `a`: `install` must be an absolute path below `/` without `..` (such as /srv/NAME)"
        );
        assert_eq!(
            bad("port", json!(70000)),
            "app `a`: `port` must be a port, 1 to 65535"
        );
        assert_eq!(
            bad("service", json!({"unit": "../etc/passwd"})),
            "app `a`: `service.unit` must be a unit name (letters, digits, `-`, `_`, `.`, `@`)"
        );
        assert_eq!(
            bad("service", json!({"stop_timeout": "5s"})),
            "app `a`: `service.command` is required (a shell command), unless `unit` names one the host has"
        );
        assert_eq!(
            bad("servers", json!([])),
            "app `a`: `servers` must be a target expression (G@role:web) or a non-empty list of server names"
        );
        assert_eq!(
            bad("health", json!({"timeout": "soon"})),
            "app `a`: `health.timeout` must be a duration such as 30s or 500ms, not `soon`"
        );
        assert_eq!(
            bad("build", json!({"command": "make", "dir": "../up"})),
            "app `a`: `build.dir` must be a relative path without `..`"
        );
        assert_eq!(
            bad("keep", json!(1)),
            "app `a`: `keep` must be a whole number from 2 to 100"
        );
        let mut no_port = base.clone();
        no_port.as_object_mut().unwrap().remove("port");
        assert_eq!(
            AppSpec::from_json("a", &no_port).unwrap_err().to_string(),
            "app `a`: `port` is required when `health` is not given"
        );
    }
}
