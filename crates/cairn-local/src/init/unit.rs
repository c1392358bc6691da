//! systemd unit files, the subset a team writes for its own services:
//! `[Service]` ExecStart/ExecReload/ExecStop, User/Group,
//! WorkingDirectory, Environment/EnvironmentFile, Restart/RestartSec,
//! TimeoutStopSec, Type; `[Install]` WantedBy.
//!
//! A small parser rather than an INI crate: unit files have rules of their
//! own that generic INI readers get wrong (a trailing `\` continues the
//! line, a key may repeat and an empty assignment resets its list, values
//! are quoted word lists with `$VAR` and `%` specifiers), and errors must
//! name the line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a unit cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("{path}:{line}: {reason}")]
    Syntax {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// When a service that exited on its own is started again (`Restart=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    No,
    Always,
    OnSuccess,
    OnFailure,
    OnAbnormal,
    OnAbort,
}

/// How a service's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// systemd's "clean": exit 0, or killed by one of the signals a stop
    /// sends (HUP, INT, TERM, PIPE).
    pub fn is_clean(self) -> bool {
        match self {
            Exit::Code(c) => c == 0,
            Exit::Signal(s) => matches!(s, 1 | 2 | 13 | 15),
        }
    }

    /// Killed by a signal that is not a stop's (a crash, KILL, ABRT...).
    fn is_abnormal(self) -> bool {
        matches!(self, Exit::Signal(_)) && !self.is_clean()
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exited {c}"),
            Exit::Signal(s) => {
                let name = nix::sys::signal::Signal::try_from(*s)
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|_| format!("signal {s}"));
                write!(f, "killed by {name}")
            }
        }
    }
}

impl Restart {
    /// Whether a main process that ended with `exit` (not because of a
    /// stop) is started again.
    pub fn restarts_after(self, exit: Exit) -> bool {
        match self {
            Restart::No => false,
            Restart::Always => true,
            Restart::OnSuccess => exit.is_clean(),
            Restart::OnFailure => !exit.is_clean(),
            Restart::OnAbnormal => exit.is_abnormal(),
            Restart::OnAbort => exit.is_abnormal(),
        }
    }
}

/// One command line of an `Exec*=` key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exec {
    /// The program (absolute, or looked up on PATH).
    pub program: String,
    /// `argv[0]` when the `@` prefix gives one.
    pub argv0: Option<String>,
    pub args: Vec<String>,
    /// The `-` prefix: a failure of this command is not the service's.
    pub ignore_failure: bool,
    /// The `:` prefix: no `$VAR` expansion.
    raw: bool,
    /// The words as written, `$VAR`s still in them.
    words: Vec<String>,
}

/// A service as its unit file describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// `NAME` of `NAME.service`.
    pub name: String,
    pub path: PathBuf,
    pub description: Option<String>,
    pub exec_start: Exec,
    pub exec_reload: Vec<Exec>,
    pub exec_stop: Vec<Exec>,
    pub user: Option<String>,
    pub group: Option<String>,
    /// The directory and whether it may be missing (`-` prefix).
    pub working_directory: Option<(PathBuf, bool)>,
    /// `Environment=` in order (later wins).
    pub environment: Vec<(String, String)>,
    /// `EnvironmentFile=` paths and whether each may be missing.
    pub environment_files: Vec<(PathBuf, bool)>,
    pub restart: Restart,
    pub restart_sec: Duration,
    pub timeout_stop: Duration,
    pub wanted_by: Vec<String>,
    /// What the file has that this init does not do (logged when started).
    pub warnings: Vec<String>,
}

/// systemd's defaults.
const RESTART_SEC: Duration = Duration::from_millis(100);
const TIMEOUT_STOP: Duration = Duration::from_secs(10);
/// `infinity` for a timeout: long enough to never matter.
const INFINITY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Keys read elsewhere or meaningless here, which need no warning.
const QUIET: &[(&str, &str)] = &[
    ("Unit", "Description"),
    ("Unit", "Documentation"),
    ("Install", "Alias"),
];

/// The file's sections as (section, key, value, line), continuations joined.
fn entries(path: &Path, text: &str) -> Result<Vec<(String, String, String, usize)>, UnitError> {
    let mut out = Vec::new();
    let mut section: Option<String> = None;
    let mut lines = text.lines().enumerate();
    while let Some((i, raw)) = lines.next() {
        let number = i + 1;
        let mut line = raw.trim().to_string();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        // A trailing backslash joins the next line (comments in between
        // are skipped, as systemd does).
        while line.ends_with('\\') {
            line.pop();
            line.push(' ');
            match lines.next() {
                Some((_, next)) if next.trim_start().starts_with(['#', ';']) => continue,
                Some((_, next)) => line.push_str(next.trim()),
                None => break,
            }
        }
        let syntax = |reason: String| UnitError::Syntax {
            path: path.to_path_buf(),
            line: number,
            reason,
        };
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .ok_or_else(|| syntax(format!("`{line}` is not a [Section] header")))?;
            section = Some(name.to_string());
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| syntax(format!("`{line}` is not KEY=VALUE")))?;
        let section = section
            .clone()
            .ok_or_else(|| syntax(format!("`{}` comes before any [Section]", key.trim())))?;
        out.push((
            section,
            key.trim().to_string(),
            value.trim().to_string(),
            number,
        ));
    }
    Ok(out)
}

/// Splits a value into words as systemd does: whitespace separates,
/// double and single quotes group, backslash escapes.
pub fn words(value: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, c) if c.is_whitespace() => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => match chars.next() {
                    Some('n') => word.push('\n'),
                    Some('t') => word.push('\t'),
                    Some(c) => word.push(c),
                    None => return Err("a trailing backslash".into()),
                },
                (_, c) => word.push(c),
            }
        }
        if let Some(q) = quote {
            return Err(format!("an unclosed {q}"));
        }
        out.push(word);
    }
}

/// Replaces `%` specifiers.
fn specifiers(s: &str, name: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('n') => out.push_str(&format!("{name}.service")),
            Some('N' | 'p') => out.push_str(name),
            Some('i' | 'I') => {}
            Some('t') => out.push_str("/run"),
            Some('S') => out.push_str("/var/lib"),
            Some('C') => out.push_str("/var/cache"),
            Some('L') => out.push_str("/var/log"),
            Some('E') => out.push_str("/etc"),
            Some(o) => return Err(format!("the specifier %{o} is not supported")),
            None => return Err("a lone % at the end".into()),
        }
    }
    Ok(out)
}

fn parse_exec(value: &str, name: &str) -> Result<Option<Exec>, String> {
    let value = specifiers(value, name)?;
    let mut words = words(&value)?;
    if words.is_empty() {
        return Ok(None);
    }
    let first = words.remove(0);
    let mut ignore_failure = false;
    let mut raw = false;
    let mut at = false;
    let mut program = first.as_str();
    while let Some(c) = program.chars().next().filter(|c| "-@:+!".contains(*c)) {
        match c {
            '-' => ignore_failure = true,
            ':' => raw = true,
            '@' => at = true,
            // Privileged execution: the init runs as root, nothing to lift.
            _ => {}
        }
        program = &program[1..];
    }
    if program.is_empty() {
        return Err("no program".into());
    }
    let program = program.to_string();
    let argv0 = if at {
        if words.is_empty() {
            return Err("`@` needs argv[0] after the program".into());
        }
        Some(words.remove(0))
    } else {
        None
    };
    Ok(Some(Exec {
        program,
        argv0,
        args: Vec::new(),
        ignore_failure,
        raw,
        words,
    }))
}

/// Parses a time span: `10`, `10s`, `500ms`, `1min 30s`, `infinity`.
pub fn duration(value: &str) -> Result<Duration, String> {
    let v = value.trim();
    if v == "infinity" {
        return Ok(INFINITY);
    }
    let mut total = Duration::ZERO;
    let mut rest = v;
    if rest.is_empty() {
        return Err("an empty time span".into());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{value}` is not a time span"))?;
        rest = rest[digits..].trim_start();
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c.is_whitespace())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "" | "s" | "sec" | "second" | "seconds" => 1.0,
            "ms" | "msec" => 0.001,
            "us" | "usec" => 0.000_001,
            "m" | "min" | "minute" | "minutes" => 60.0,
            "h" | "hr" | "hour" | "hours" => 3600.0,
            "d" | "day" | "days" => 86400.0,
            u => return Err(format!("`{u}` in `{value}` is not a time unit")),
        };
        total += Duration::from_secs_f64(number * seconds);
        rest = rest[unit_end..].trim_start();
    }
    Ok(total)
}

/// Reads `KEY=VALUE` lines of an environment file (quotes removed,
/// comments and blank lines skipped).
pub fn environment_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(['#', ';']))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_string(), v.to_string())
        })
        .collect()
}

impl Unit {
    /// Parses the unit `name` from the text of its file at `path`.
    pub fn parse(name: &str, path: &Path, text: &str) -> Result<Unit, UnitError> {
        let mut exec_start: Vec<Exec> = Vec::new();
        let mut unit = Unit {
            name: name.to_string(),
            path: path.to_path_buf(),
            description: None,
            exec_start: Exec::new("/bin/true"),
            exec_reload: Vec::new(),
            exec_stop: Vec::new(),
            user: None,
            group: None,
            working_directory: None,
            environment: Vec::new(),
            environment_files: Vec::new(),
            restart: Restart::No,
            restart_sec: RESTART_SEC,
            timeout_stop: TIMEOUT_STOP,
            wanted_by: Vec::new(),
            warnings: Vec::new(),
        };
        let mut kind = "simple".to_string();
        for (section, key, value, line) in entries(path, text)? {
            let bad = |reason: String| UnitError::Syntax {
                path: path.to_path_buf(),
                line,
                reason: format!("{key}: {reason}"),
            };
            let exec = |value: &str| parse_exec(value, name).map_err(bad);
            match (section.as_str(), key.as_str()) {
                ("Unit", "Description") => unit.description = Some(value),
                ("Service", "ExecStart") => match exec(&value)? {
                    Some(e) => exec_start.push(e),
                    None => exec_start.clear(),
                },
                ("Service", "ExecReload") => match exec(&value)? {
                    Some(e) => unit.exec_reload.push(e),
                    None => unit.exec_reload.clear(),
                },
                ("Service", "ExecStop") => match exec(&value)? {
                    Some(e) => unit.exec_stop.push(e),
                    None => unit.exec_stop.clear(),
                },
                ("Service", "Type") => kind = value,
                ("Service", "User") => unit.user = Some(specifiers(&value, name).map_err(bad)?),
                ("Service", "Group") => unit.group = Some(specifiers(&value, name).map_err(bad)?),
                ("Service", "WorkingDirectory") => {
                    let v = specifiers(&value, name).map_err(bad)?;
                    unit.working_directory = match v.strip_prefix('-') {
                        Some(p) => Some((PathBuf::from(p), true)),
                        None => Some((PathBuf::from(v), false)),
                    };
                }
                ("Service", "Environment") => {
                    if value.is_empty() {
                        unit.environment.clear();
                    }
                    let value = specifiers(&value, name).map_err(bad)?;
                    for w in words(&value).map_err(bad)? {
                        let (k, v) = w
                            .split_once('=')
                            .ok_or_else(|| bad(format!("`{w}` is not NAME=value")))?;
                        unit.environment.push((k.to_string(), v.to_string()));
                    }
                }
                ("Service", "EnvironmentFile") => {
                    if value.is_empty() {
                        unit.environment_files.clear();
                        continue;
                    }
                    let v = specifiers(&value, name).map_err(bad)?;
                    unit.environment_files.push(match v.strip_prefix('-') {
                        Some(p) => (PathBuf::from(p), true),
                        None => (PathBuf::from(v), false),
                    });
                }
                ("Service", "Restart") => {
                    unit.restart = match value.as_str() {
                        "no" => Restart::No,
                        "always" => Restart::Always,
                        "on-success" => Restart::OnSuccess,
                        "on-failure" => Restart::OnFailure,
                        "on-abnormal" => Restart::OnAbnormal,
                        "on-abort" => Restart::OnAbort,
                        other => {
                            return Err(bad(format!(
                                "`{other}` is not one of no, always, on-success, on-failure, \
                                 on-abnormal, on-abort"
                            )));
                        }
                    }
                }
                ("Service", "RestartSec") => unit.restart_sec = duration(&value).map_err(bad)?,
                ("Service", "TimeoutStopSec") => {
                    unit.timeout_stop = duration(&value).map_err(bad)?
                }
                ("Service", "TimeoutSec") => {
                    unit.timeout_stop = duration(&value).map_err(bad)?;
                }
                ("Install", "WantedBy") => {
                    unit.wanted_by.extend(words(&value).map_err(bad)?);
                }
                (s, k) if QUIET.contains(&(s, k)) => {}
                (s, k) => unit.warnings.push(format!(
                    "line {line}: [{s}] {k}= is not supported by cairn's init and is ignored"
                )),
            }
        }
        let invalid = |reason: String| UnitError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        match kind.as_str() {
            "simple" | "exec" => {}
            "notify" | "idle" => unit.warnings.push(format!(
                "Type={kind} is run as Type=simple (active once started, no readiness protocol)"
            )),
            other => {
                return Err(invalid(format!(
                    "Type={other} is not supported by cairn's init: it runs Type=simple and \
                     Type=exec services (the main process stays in the foreground); run the \
                     daemon without forking (e.g. `nginx -g 'daemon off;'`)"
                )));
            }
        }
        unit.exec_start = match exec_start.len() {
            1 => exec_start.remove(0),
            0 => return Err(invalid("no ExecStart= in [Service]".into())),
            n => {
                return Err(invalid(format!(
                    "{n} ExecStart= lines; a Type=simple service has exactly one"
                )));
            }
        };
        Ok(unit)
    }

    /// The service's environment: the init's, then `Environment=`, then
    /// the environment files (later wins, as in systemd). A missing file
    /// not marked optional is an error.
    pub fn env(
        &self,
        base: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, UnitError> {
        let mut env = base.clone();
        env.extend(self.environment.iter().cloned());
        for (file, optional) in &self.environment_files {
            match std::fs::read_to_string(file) {
                Ok(text) => env.extend(environment_file(&text)),
                Err(_) if *optional => {}
                Err(e) => {
                    return Err(UnitError::Invalid {
                        path: self.path.clone(),
                        reason: format!("EnvironmentFile {}: {e}", file.display()),
                    });
                }
            }
        }
        Ok(env)
    }
}

impl Exec {
    fn new(program: &str) -> Exec {
        Exec {
            program: program.into(),
            argv0: None,
            args: Vec::new(),
            ignore_failure: false,
            raw: false,
            words: Vec::new(),
        }
    }

    /// The command with `$VAR` (a whole word: split on whitespace) and
    /// `${VAR}` (inside a word) replaced from `env`, `$$` as `$`.
    pub fn expand(&self, env: &BTreeMap<String, String>) -> Exec {
        let mut out = self.clone();
        if self.raw {
            out.args = self.words.clone();
            return out;
        }
        let mut args = Vec::new();
        for w in &self.words {
            let whole = w
                .strip_prefix('$')
                .filter(|v| !v.is_empty() && v.chars().all(|c| c.is_alphanumeric() || c == '_'));
            match whole {
                Some(var) => args.extend(
                    env.get(var)
                        .map(|v| v.split_whitespace().map(String::from).collect::<Vec<_>>())
                        .unwrap_or_default(),
                ),
                None => args.push(expand_braced(w, env)),
            }
        }
        out.args = args;
        out
    }

    /// The command line as written (for logs and errors).
    pub fn line(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.words.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn expand_braced(word: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = word;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((var, tail)) = after.strip_prefix('{').and_then(|s| s.split_once('}')) {
            out.push_str(env.get(var).map(String::as_str).unwrap_or(""));
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Unit, UnitError> {
        Unit::parse("web", Path::new("/etc/systemd/system/web.service"), text)
    }

    #[test]
    fn a_typical_unit() {
        let u = parse(
            "# made by hand\n[Unit]\nDescription=The web app\nAfter=network.target\n\n\
             [Service]\nType=simple\nUser=www-data\nGroup=www-data\n\
             WorkingDirectory=-/srv/%N\nEnvironment=\"GREETING=hello world\" PORT=8080\n\
             Environment=EMPTY=\nEnvironmentFile=-/etc/default/web\n\
             ExecStart=/usr/bin/web --port ${PORT} \\\n  --greeting \"$GREETING\" $OPTS\n\
             ExecReload=/bin/kill -HUP $MAINPID\nRestart=on-failure\nRestartSec=2\n\
             TimeoutStopSec=1min 30s\n\n[Install]\nWantedBy=multi-user.target\n",
        )
        .unwrap();
        assert_eq!(u.description.as_deref(), Some("The web app"));
        assert_eq!(u.user.as_deref(), Some("www-data"));
        assert_eq!(u.group.as_deref(), Some("www-data"));
        assert_eq!(u.working_directory, Some((PathBuf::from("/srv/web"), true)));
        assert_eq!(
            u.environment,
            [
                ("GREETING".into(), "hello world".into()),
                ("PORT".into(), "8080".into()),
                ("EMPTY".into(), "".into())
            ]
        );
        assert_eq!(
            u.environment_files,
            [(PathBuf::from("/etc/default/web"), true)]
        );
        assert_eq!(u.restart, Restart::OnFailure);
        assert_eq!(u.restart_sec, Duration::from_secs(2));
        assert_eq!(u.timeout_stop, Duration::from_secs(90));
        assert_eq!(u.wanted_by, ["multi-user.target"]);
        assert_eq!(u.warnings.len(), 1, "{:?}", u.warnings);
        assert!(
            u.warnings[0].contains("line 4: [Unit] After="),
            "{:?}",
            u.warnings
        );

        let env: BTreeMap<String, String> = [
            ("PORT", "8080"),
            ("GREETING", "hello world"),
            ("OPTS", "-v  -x"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let e = u.exec_start.expand(&env);
        assert_eq!(e.program, "/usr/bin/web");
        assert_eq!(
            e.args,
            ["--port", "8080", "--greeting", "hello", "world", "-v", "-x"],
            "a whole-word $VAR splits at whitespace, ${{VAR}} does not"
        );
        assert_eq!(u.exec_reload[0].expand(&env).args, ["-HUP"]);
    }

    #[test]
    fn exec_prefixes_resets_and_specifiers() {
        let u = parse(
            "[Service]\nExecStart=/bin/false\nExecStart=\nExecStart=-@/bin/sleep web-sleep 5 %%\n\
             ExecStop=:/bin/echo $$HOME ${HOME}\nRestart=always\n",
        )
        .unwrap();
        assert_eq!(u.exec_start.program, "/bin/sleep");
        assert_eq!(u.exec_start.argv0.as_deref(), Some("web-sleep"));
        assert!(u.exec_start.ignore_failure);
        assert_eq!(u.exec_start.expand(&BTreeMap::new()).args, ["5", "%"]);
        let env = BTreeMap::from([("HOME".to_string(), "/root".to_string())]);
        assert_eq!(
            u.exec_stop[0].expand(&env).args,
            ["$$HOME", "${HOME}"],
            "`:` turns expansion off"
        );
        let u = parse("[Service]\nExecStart=/bin/echo $$HOME x${HOME}y\n").unwrap();
        assert_eq!(u.exec_start.expand(&env).args, ["$HOME", "x/rooty"]);
        assert_eq!(u.restart, Restart::No);
        assert_eq!(u.timeout_stop, Duration::from_secs(10));
        assert_eq!(u.restart_sec, Duration::from_millis(100));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let err = parse("[Service]\nExecStart=/bin/true\nthis is not a key\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/systemd/system/web.service:3: `this is not a key` is not KEY=VALUE"
        );
        let err = parse("ExecStart=/bin/true\n").unwrap_err();
        assert!(
            err.to_string()
                .contains(":1: `ExecStart` comes before any [Section]")
        );
        let err = parse("[Service]\nExecStart=/bin/echo \"open\n").unwrap_err();
        assert!(
            err.to_string().contains(":2: ExecStart: an unclosed \""),
            "{err}"
        );
        let err = parse("[Service]\nExecStart=/bin/true\nRestart=sometimes\n").unwrap_err();
        assert!(
            err.to_string()
                .contains(":3: Restart: `sometimes` is not one of"),
            "{err}"
        );
        let err = parse("[Service]\nExecStart=/bin/true\nRestartSec=soon\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("RestartSec: `soon` is not a time span"),
            "{err}"
        );
        let err = parse("[Service]\nExecStart=/bin/x %q\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("the specifier %q is not supported"),
            "{err}"
        );
        let err = parse("[Service]\nUser=nobody\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/systemd/system/web.service: no ExecStart= in [Service]"
        );
        let err = parse("[Service]\nType=forking\nExecStart=/usr/sbin/nginx\n").unwrap_err();
        assert!(
            err.to_string().contains("Type=forking is not supported"),
            "{err}"
        );
        let err = parse("[Service]\nExecStart=/bin/a\nExecStart=/bin/b\n").unwrap_err();
        assert!(err.to_string().contains("2 ExecStart= lines"), "{err}");
        let err = parse("[Service\nExecStart=/bin/a\n").unwrap_err();
        assert!(
            err.to_string()
                .contains(":1: `[Service` is not a [Section] header")
        );
    }

    #[test]
    fn notify_runs_as_simple_with_a_warning() {
        let u = parse("[Service]\nType=notify\nExecStart=/bin/true\nKillMode=mixed\n").unwrap();
        assert_eq!(u.warnings.len(), 2, "{:?}", u.warnings);
        assert!(
            u.warnings
                .iter()
                .any(|w| w.contains("Type=notify is run as Type=simple"))
        );
        assert!(u.warnings.iter().any(|w| w.contains("[Service] KillMode=")));
    }

    #[test]
    fn time_spans() {
        assert_eq!(duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("2min 3s").unwrap(), Duration::from_secs(123));
        assert_eq!(duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(duration("0.5s").unwrap(), Duration::from_millis(500));
        assert!(duration("infinity").unwrap() > Duration::from_secs(1 << 30));
        assert!(duration("").is_err());
        assert!(duration("5 parsecs").is_err());
    }

    #[test]
    fn environment_files_and_the_restart_policy() {
        let env = environment_file("# c\nA=1\nB=\"two words\"\n\nC='3'\nnot a pair\n");
        assert_eq!(
            env,
            [
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "3".into())
            ]
        );
        let (ok, fail, term, kill) = (
            Exit::Code(0),
            Exit::Code(1),
            Exit::Signal(15),
            Exit::Signal(9),
        );
        assert!(Restart::Always.restarts_after(ok));
        assert!(!Restart::No.restarts_after(kill));
        assert!(Restart::OnFailure.restarts_after(fail));
        assert!(Restart::OnFailure.restarts_after(kill));
        assert!(!Restart::OnFailure.restarts_after(ok));
        assert!(!Restart::OnFailure.restarts_after(term), "TERM is clean");
        assert!(Restart::OnAbnormal.restarts_after(kill));
        assert!(!Restart::OnAbnormal.restarts_after(fail));
        assert!(Restart::OnSuccess.restarts_after(ok));
        assert_eq!(kill.to_string(), "killed by SIGKILL");
        assert_eq!(fail.to_string(), "exited 1");
    }

    #[test]
    fn words_split_like_systemd() {
        assert_eq!(
            words(r#"a "b c" 'd "e"' f\ g"#).unwrap(),
            ["a", "b c", "d \"e\"", "f g"]
        );
        assert!(words("").unwrap().is_empty());
        assert!(words("x\\").is_err());
    }
}
