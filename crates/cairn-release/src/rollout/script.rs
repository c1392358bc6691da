//! The scripts a release runs on a host, each one POSIX `sh` round trip
//! through a [`cairn_orch::Remote`]; moving a host (switch, restart,
//! health) is one round trip of three parts ([`move_to`]). Layout under
//! the app's install path:
//!
//! ```text
//! INSTALL/releases/VERSION/   one directory per installed release
//! INSTALL/current             symlink to releases/VERSION, switched by rename
//! INSTALL/.cairn/service.pid  the service's process group leader
//! INSTALL/.cairn/service.log  its output
//! ```
//!
//! The service is a command run from `current` in its own session
//! (`setsid`), so that stopping it signals its whole process group: a
//! shell wrapper and what it started go together. A host needs `sh`,
//! coreutils and `setsid` (util-linux), and curl, wget or python3 for the
//! health check.

use cairn_orch::remote::quote;

use crate::app::AppSpec;

/// Exit codes the scripts use for what a person must be told apart.
pub const EXIT_NOT_INSTALLED: i32 = 3;
pub const EXIT_SERVICE_EXITED: i32 = 4;
pub const EXIT_UNHEALTHY: i32 = 5;

/// Prints the version `current` points at, or nothing on a host that never
/// had a release.
pub fn current_version(app: &AppSpec) -> String {
    format!(
        "t=$(readlink {}/current 2>/dev/null) || exit 0\nprintf '%s\\n' \"${{t##*/}}\"\n",
        quote(&app.install)
    )
}

/// Points `current` at `releases/VERSION` with one rename (never a moment
/// without `current`), or removes it when `version` is `None` (back past
/// the first release).
pub fn switch(app: &AppSpec, version: Option<&str>) -> String {
    let install = quote(&app.install);
    match version {
        Some(v) => {
            let v = quote(v);
            format!(
                "set -eu\ncd {install}\n\
                 [ -d releases/{v} ] || {{ echo \"release \"{v}\" is not installed in \"{install}\" on this host\" >&2; exit {EXIT_NOT_INSTALLED}; }}\n\
                 ln -sfn releases/{v} .current.$$\nmv -T .current.$$ current\n"
            )
        }
        None => format!("set -eu\nrm -f {install}/current\n"),
    }
}

/// Shell functions shared by the service scripts: where its pid file is,
/// and whether a pid still runs (a zombie does not).
fn service_prelude(app: &AppSpec) -> String {
    let watch = match &app.service.unit {
        // The init's word, not a pid of ours: it restarts what dies.
        Some(unit) => format!(
            r#"running() {{
  if [ -S /run/cairn/init.sock ]; then cairn service {u} status >/dev/null 2>&1
  else systemctl is-active --quiet {u}
  fi
}}
show_log() {{
  if [ -f /var/log/cairn/{u}.log ]; then tail -n 5 /var/log/cairn/{u}.log
  else journalctl -u {u} -n 5 --no-pager 2>/dev/null
  fi
}}
log="the log of unit "{u}
"#,
            u = quote(unit)
        ),
        None => r#"running() {
  pid=$(cat "$pidf" 2>/dev/null || true)
  [ -n "$pid" ] && alive "$pid"
}
show_log() { tail -n 5 "$log"; }
"#
        .to_string(),
    };
    format!(
        r#"set -u
state={install}/.cairn
pidf="$state/service.pid"
log="$state/service.log"
mkdir -p "$state"
alive() {{
  [ -r "/proc/$1/stat" ] || return 1
  s=$(sed 's/.*) //' "/proc/$1/stat" | cut -c1)
  [ "$s" != Z ]
}}
{watch}"#,
        install = quote(&app.install)
    )
}

/// Stops the service (TERM to its process group, KILL after its
/// `stop_timeout`), then starts it from `current` when there is one.
/// `kill -SIG -PGID` without `--`: dash's `kill` (Debian's `sh`) refuses
/// `--`, and the group would never be signalled, only its leader.
/// `address` is the host's address, given to the service as
/// `CAIRN_ADDRESS` (with `PORT`, `CAIRN_APP`, `CAIRN_VERSION`).
pub fn restart(app: &AppSpec, address: &str) -> String {
    if let Some(unit) = &app.service.unit {
        return restart_unit(app, unit, address);
    }
    let tenths = (app.service.stop_timeout.as_millis() / 100).max(1);
    let run = match &app.service.user {
        Some(user) => format!(
            "su -s /bin/sh {} -c {}",
            quote(user),
            quote(&app.service.command)
        ),
        None => format!("sh -c {}", quote(&app.service.command)),
    };
    format!(
        r#"{prelude}if [ -f "$pidf" ]; then
  pid=$(cat "$pidf")
  if [ -n "$pid" ] && alive "$pid"; then
    kill -TERM "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    i=0
    while alive "$pid" && [ $i -lt {tenths} ]; do sleep 0.1; i=$((i+1)); done
    if alive "$pid"; then
      echo "the service did not stop within {stop}s: killed" >&2
      kill -KILL "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
    fi
  fi
  rm -f "$pidf"
fi
[ -e {install}/current ] || exit 0
cd {install}/current
t=$(readlink {install}/current)
CAIRN_APP={name} CAIRN_VERSION="${{t##*/}}" CAIRN_ADDRESS={address} PORT={port}
export CAIRN_APP CAIRN_VERSION CAIRN_ADDRESS PORT
echo "--- $(date -u +%FT%TZ) starting $CAIRN_VERSION" >>"$log"
setsid {run} </dev/null >>"$log" 2>&1 &
echo $! >"$pidf"
"#,
        prelude = service_prelude(app),
        install = quote(&app.install),
        stop = app.service.stop_timeout.as_secs_f64(),
        name = quote(&app.name),
        address = quote(address),
        port = app.port,
    )
}

/// [`restart`] for a `unit`: with a `command`, writes the runner (the
/// command with the release's environment, from `current`) and the unit
/// file that starts it, then has the host's init enable and restart the
/// unit (stop it when there is no `current`): cairn's own init on a local
/// server (its socket), else systemd.
fn restart_unit(app: &AppSpec, unit: &str, address: &str) -> String {
    let install = quote(&app.install);
    let u = quote(unit);
    let write_unit = if app.service.command.is_empty() {
        String::new()
    } else {
        let user = app
            .service
            .user
            .as_ref()
            .map(|u| format!("User={u}\n"))
            .unwrap_or_default();
        format!(
            r#"runner="$state/run-service"
cat >"$runner.new" <<'CAIRN_RUNNER'
#!/bin/sh
cd {install}/current || exit 1
t=$(readlink {install}/current)
CAIRN_APP={name} CAIRN_VERSION="${{t##*/}}" CAIRN_ADDRESS={address} PORT={port}
export CAIRN_APP CAIRN_VERSION CAIRN_ADDRESS PORT
exec sh -c {command}
CAIRN_RUNNER
chmod 755 "$runner.new" && mv -f "$runner.new" "$runner"
unit_file=/etc/systemd/system/{u}.service
cat >"$unit_file.new" <<CAIRN_UNIT
# Written by cairn for app {app}: it is rewritten on every release.
[Unit]
Description=cairn app {app}

[Service]
ExecStart=/bin/sh $runner
{user}TimeoutStopSec={stop}
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
CAIRN_UNIT
mv -f "$unit_file.new" "$unit_file"
"#,
            name = quote(&app.name),
            address = quote(address),
            port = app.port,
            command = quote(&app.service.command),
            app = app.name,
            stop = app.service.stop_timeout.as_secs().max(1),
        )
    };
    format!(
        r#"{prelude}{write_unit}if [ -S /run/cairn/init.sock ]; then
  ctl() {{ cairn service {u} "$1" >/dev/null; }}
elif [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  ctl() {{ systemctl "$1" {u}; }}
else
  echo "unit "{u}" needs systemd or cairn's init on this host" >&2
  exit 6
fi
if [ -e {install}/current ]; then
  ctl enable && ctl restart
else
  ctl stop; ctl disable
fi
"#,
        prelude = service_prelude(app),
    )
}

/// Waits for `GET http://ADDRESS:PORT/PATH` to answer 2xx, up to the
/// health timeout; fails at once when the service exited (with the end of
/// its log, which says why).
pub fn health(app: &AppSpec, address: &str) -> String {
    let h = &app.health;
    let host = if address.contains(':') {
        format!("[{address}]")
    } else {
        address.to_string()
    };
    let url = format!("http://{host}:{}{}", h.port, h.path);
    let interval = h.interval.as_secs_f64().max(0.05);
    let tries = (h.timeout.as_secs_f64() / interval).ceil().max(1.0) as u64;
    format!(
        r#"{prelude}url={url}
get() {{
  if command -v curl >/dev/null 2>&1; then curl -fsS -o /dev/null --max-time 2 "$url"
  elif command -v wget >/dev/null 2>&1; then wget -q -O /dev/null -T 2 "$url"
  elif command -v python3 >/dev/null 2>&1; then python3 -c 'import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$url"
  else echo "no curl, wget or python3 on this host to check $url (apt install curl)" >&2; return 127
  fi
}}
i=0
while :; do
  if err=$(get 2>&1); then exit 0; fi
  if ! running; then
    echo "the service exited before $url answered; the end of $log:" >&2
    show_log >&2
    exit {EXIT_SERVICE_EXITED}
  fi
  i=$((i+1))
  if [ $i -ge {tries} ]; then
    echo "$url did not answer 2xx within {timeout}s: $err" >&2
    exit {EXIT_UNHEALTHY}
  fi
  sleep {interval}
done
"#,
        prelude = service_prelude(app),
        url = quote(&url),
        timeout = h.timeout.as_secs_f64(),
    )
}

/// What [`move_to`] prints after each part that succeeded: the part's name
/// and the milliseconds since the script started.
pub const STEP_MARK: &str = "cairn-step";

/// Moves a host to `version` in one round trip: [`switch`], [`restart`],
/// then, unless `version` is `None`, [`health`]; each in a subshell (its
/// `exit` ends only that part), the first to fail ends the script with its
/// own exit code. After each part it prints `cairn-step NAME MS` (ms since
/// the start, GNU `date`), so the caller knows which part failed and when
/// each ended. Three round trips cost two more latencies per host, which
/// on a loaded machine or a far network is most of a batch's overhead.
pub fn move_to(app: &AppSpec, version: Option<&str>, address: &str) -> String {
    parts(app, Some(version), address)
}

/// [`restart`] then [`health`] in one round trip, marked as [`move_to`]
/// marks them, with `current` left as it is (`cairn heal`).
pub fn restart_in_place(app: &AppSpec, address: &str) -> String {
    parts(app, None, address)
}

/// The parts of a move: a switch to `to` when given, the restart, and the
/// health check unless `current` is removed.
fn parts(app: &AppSpec, to: Option<Option<&str>>, address: &str) -> String {
    let mut parts = Vec::new();
    if let Some(version) = to {
        parts.push(("switch", switch(app, version)));
    }
    parts.push(("restart", restart(app, address)));
    if to != Some(None) {
        parts.push(("health", health(app, address)));
    }
    let mut out = format!(
        "t0=$(date +%s%N)\nmark() {{ echo \"{STEP_MARK} $1 $(( ($(date +%s%N) - t0) / 1000000 ))\"; }}\n"
    );
    for (name, body) in parts {
        out.push_str(&format!("(\n{body}) || exit $?\nmark {name}\n"));
    }
    out
}

/// Runs a hook in `dir` (relative to the install path) with the service's
/// environment.
pub fn hook(app: &AppSpec, dir: &str, command: &str, version: &str, address: &str) -> String {
    format!(
        "set -eu\ncd {install}/{dir}\nCAIRN_APP={name} CAIRN_VERSION={version} CAIRN_ADDRESS={address} PORT={port}\n\
         export CAIRN_APP CAIRN_VERSION CAIRN_ADDRESS PORT\nsh -c {command}\n",
        install = quote(&app.install),
        dir = quote(dir),
        name = quote(&app.name),
        version = quote(version),
        address = quote(address),
        port = app.port,
        command = quote(command),
    )
}

/// Removes releases beyond the newest `keep` (by when they were installed),
/// never the ones named in `protect` (the live one and the one before).
pub fn prune(app: &AppSpec, protect: &[&str]) -> String {
    let keep: Vec<String> = protect.iter().map(|v| quote(v)).collect();
    format!(
        r#"set -eu
cd {install}/releases 2>/dev/null || exit 0
n=0
for v in $(ls -1t); do
  n=$((n+1))
  [ $n -le {keep} ] && continue
  case " {protect} " in *" $v "*) continue ;; esac
  rm -rf -- "$v"
  echo "$v"
done
"#,
        install = quote(&app.install),
        keep = app.keep,
        protect = keep.join(" "),
    )
}
