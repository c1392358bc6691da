//! Reactors (Salt's reactor): `cairn master --reactors FILE` maps event tag
//! globs to jobs the master runs when a matching event arrives.
//!
//! ```yaml
//! - tag: cairn/file/*/changed          # a tag glob (see `event`)
//!   state: motd.sls                    # relative to this file
//!   vars: {who: "{{ event.host }}"}
//! - tag: cairn/service/*/*/stopped
//!   run: "cairn-init start {{ event.data.name }}"
//! - tag: cairn/service/*/nginx/stopped
//!   module: service
//!   args: {name: nginx, state: started}
//!   target: "web-*"                    # default: the event's host
//!   timeout: 60                        # seconds (default 60)
//! ```
//!
//! Every string under `run`, `module`, `args`, `state`, `vars` and `target`
//! is a minijinja template with `event` in scope (its `tag`, `time`,
//! `source`, `host`, `data`); an undefined name is an error, logged, and
//! the reaction does not run. A file that does not parse, a key that is not
//! one of these, a bad glob or a template that does not compile is an error
//! at `FILE:LINE:COL` when the master starts.
//!
//! No loops, three ways: (1) the events of a reaction's own job carry its
//! id in [`Event::reaction`], and a reactor never reacts to such an event;
//! (2) agents do not report the changes their own jobs make to the files
//! they watch (see [`super::watch`]), so re-applying a state does not
//! report the file changed again; (3) a rule runs at most once at a time
//! per host, and at most [`MAX_PER_MINUTE`] times a minute: an event past
//! either is dropped with a log line, which bounds a chain through the
//! world (a reaction that stops a service whose stop fires another rule).

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn_template::Sources;
use cairn_template::node::{self, Node, NodeKind};
use serde_json::{Map, Value as J};

use super::event::{Event, TagGlob};
use super::protocol::JobKind;
use crate::targeting::{Candidate, Target};

/// How often one rule may fire in a minute, on all hosts together.
pub const MAX_PER_MINUTE: usize = 30;

const KEYS: &[&str] = &[
    "name", "tag", "target", "run", "module", "args", "state", "vars", "timeout",
];

/// A reactors file that cannot be used, at `FILE:LINE:COL`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{location}: {message}")]
pub struct ReactorError {
    pub location: String,
    pub message: String,
}

/// What a rule does, as written (strings still templates).
#[derive(Debug, Clone)]
pub enum Action {
    Run(String),
    Module {
        name: String,
        args: J,
    },
    /// The state file's path (a template), and its `vars`.
    State {
        file: String,
        vars: J,
    },
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// `name:`, else `FILE:LINE` of the rule.
    pub name: String,
    pub tag: TagGlob,
    pub target: Option<String>,
    pub action: Action,
    pub timeout: Duration,
}

/// The reactors of one file, and what they are doing now.
#[derive(Debug)]
pub struct Reactors {
    pub rules: Vec<Rule>,
    /// The reactors file's directory: relative state files are found there.
    base: PathBuf,
    busy: Mutex<Busy>,
}

#[derive(Debug, Default)]
struct Busy {
    /// (rule, host) with a reaction running.
    running: HashSet<(usize, String)>,
    /// When each rule fired in the last minute.
    fired: Vec<VecDeque<Instant>>,
}

/// A job a rule decided on.
#[derive(Debug, Clone)]
pub struct Reaction {
    pub rule: usize,
    pub name: String,
    pub hosts: Vec<String>,
    pub kind: JobKind,
    /// For the job record: what runs, as `cairn jobs` shows it.
    pub function: String,
    pub timeout: Duration,
}

fn template_env() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env
}

impl Reactors {
    /// Reads and checks a reactors file.
    pub fn load(path: &Path) -> Result<Reactors, ReactorError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ReactorError {
            location: format!("{name}:1:1"),
            message: format!("cannot read the reactors file: {e}"),
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Reactors::parse(&name, &text, base)
    }

    pub fn parse(name: &str, text: &str, base: PathBuf) -> Result<Reactors, ReactorError> {
        let mut sources = Sources::default();
        let file = sources.add(name, Path::new(name), text);
        let err = |n: &Node, message: String| ReactorError {
            location: sources.location(start(n)),
            message,
        };
        let root = node::parse_yaml(file, text).map_err(|d| ReactorError {
            location: d
                .primary
                .as_ref()
                .map_or(format!("{name}:1:1"), |l| sources.location(l.span)),
            message: d.message.clone(),
        })?;
        let items = match &root.kind {
            NodeKind::Seq(items) => items.as_slice(),
            NodeKind::Map(m) if m.is_empty() => &[],
            _ => {
                return Err(err(
                    &root,
                    format!(
                        "a reactors file is a list of rules (`- tag: ...`), not {}",
                        root.type_name()
                    ),
                ));
            }
        };
        let env = template_env();
        let mut rules = Vec::new();
        for item in items {
            let Some(entries) = item.as_map() else {
                return Err(err(
                    item,
                    format!(
                        "a rule is a map with `tag` and one of `run`, `module`, `state`, not {}",
                        item.type_name()
                    ),
                ));
            };
            for (k, _) in entries {
                let key = k.scalar_text();
                if !KEYS.contains(&key.as_str()) {
                    let near = KEYS
                        .iter()
                        .min_by_key(|c| strsim::levenshtein(c, &key))
                        .filter(|c| strsim::levenshtein(c, &key) <= 2);
                    return Err(err(
                        k,
                        format!(
                            "unknown key `{key}` in a rule{}",
                            near.map(|c| format!(" (did you mean `{c}`?)"))
                                .unwrap_or_else(|| format!("; the keys are {}", KEYS.join(", ")))
                        ),
                    ));
                }
            }
            // Every string a rule renders must compile now, not when an
            // event arrives at night.
            let check = |n: &Node| -> Result<(), ReactorError> {
                let mut bad = None;
                walk_strings(n, &mut |s, at| {
                    if bad.is_none()
                        && let Err(e) = env.template_from_str(s)
                    {
                        bad = Some(err(
                            at,
                            format!("template: {}", e.detail().unwrap_or("syntax error")),
                        ));
                    }
                });
                bad.map_or(Ok(()), Err)
            };
            let string = |key: &str| -> Result<Option<String>, ReactorError> {
                match item.get(key) {
                    None => Ok(None),
                    Some(n) => match n.as_str() {
                        Some(s) => {
                            check(n)?;
                            Ok(Some(s.to_string()))
                        }
                        None => Err(err(
                            n,
                            format!("`{key}` is a string, not {}", n.type_name()),
                        )),
                    },
                }
            };
            let map = |key: &str| -> Result<J, ReactorError> {
                match item.get(key) {
                    None => Ok(J::Object(Map::new())),
                    Some(n) if n.as_map().is_some() => {
                        check(n)?;
                        Ok(n.to_json())
                    }
                    Some(n) => Err(err(n, format!("`{key}` is a map, not {}", n.type_name()))),
                }
            };
            let Some(tag_node) = item.get("tag") else {
                return Err(err(item, "a rule needs a `tag` (a tag glob)".into()));
            };
            let tag = tag_node
                .as_str()
                .ok_or_else(|| err(tag_node, "`tag` is a string".into()))
                .and_then(|t| TagGlob::new(t).map_err(|m| err(tag_node, m)))?;
            let actions: Vec<&Node> = ["run", "module", "state"]
                .iter()
                .filter_map(|k| item.get(k))
                .collect();
            if actions.len() != 1 {
                return Err(err(
                    actions.get(1).copied().unwrap_or(item),
                    "a rule has exactly one of `run` (a command), `module` (with `args`) and \
                     `state` (a state file, with `vars`)"
                        .into(),
                ));
            }
            if item.get("args").is_some() && item.get("module").is_none() {
                return Err(err(
                    item.get("args").unwrap(),
                    "`args` goes with `module`".into(),
                ));
            }
            if item.get("vars").is_some() && item.get("state").is_none() {
                return Err(err(
                    item.get("vars").unwrap(),
                    "`vars` goes with `state`".into(),
                ));
            }
            let action = if let Some(cmd) = string("run")? {
                Action::Run(cmd)
            } else if let Some(name) = string("module")? {
                Action::Module {
                    name,
                    args: map("args")?,
                }
            } else {
                let file = string("state")?.expect("one action is there");
                // A path without a template must exist now.
                if !file.contains("{{") && !file.contains("{%") {
                    let p = base.join(&file);
                    if !p.is_file() {
                        return Err(err(
                            item.get("state").unwrap(),
                            format!(
                                "no state file {} (relative paths are from the reactors file's directory)",
                                p.display()
                            ),
                        ));
                    }
                }
                Action::State {
                    file,
                    vars: map("vars")?,
                }
            };
            let timeout = match item.get("timeout") {
                None => Duration::from_secs(60),
                Some(n) => match n.kind {
                    NodeKind::Int(s) if s > 0 && s <= 86_400 => Duration::from_secs(s as u64),
                    _ => {
                        return Err(err(
                            n,
                            "`timeout` is a number of seconds, 1 to 86400".into(),
                        ));
                    }
                },
            };
            let name_of = match string("name")? {
                Some(n) => n,
                None => {
                    let loc = sources.location(start(item));
                    loc.rsplit_once(':')
                        .map_or(loc.clone(), |(l, _)| l.to_string())
                }
            };
            rules.push(Rule {
                name: name_of,
                tag,
                target: string("target")?,
                action,
                timeout,
            });
        }
        let busy = Busy {
            running: HashSet::new(),
            fired: vec![VecDeque::new(); rules.len()],
        };
        Ok(Reactors {
            rules,
            base,
            busy: Mutex::new(busy),
        })
    }

    /// The jobs an event calls for, on the agents connected now. Logs (and
    /// leaves out) what a rule cannot do: a template that fails, no host.
    pub fn react(&self, event: &Event, connected: &[String], now: Instant) -> Vec<Reaction> {
        if let Some(job) = &event.reaction {
            tracing::debug!(tag = %event.tag, %job, "an event of a reaction's own job: not reacted to");
            return vec![];
        }
        let mut out = vec![];
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.tag.matches(&event.tag) {
                continue;
            }
            match self.plan(rule, i, event, connected) {
                Ok(r) => out.push(r),
                Err(e) => {
                    tracing::warn!(rule = %rule.name, tag = %event.tag, "reaction not run: {e}")
                }
            }
        }
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        out.retain_mut(|r| {
            let fired = &mut busy.fired[r.rule];
            while fired
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) > Duration::from_secs(60))
            {
                fired.pop_front();
            }
            if fired.len() >= MAX_PER_MINUTE {
                tracing::warn!(rule = %r.name, tag = %event.tag, "reaction dropped: the rule fired {MAX_PER_MINUTE} times in the last minute");
                return false;
            }
            let rule = r.rule;
            r.hosts.retain(|h| {
                let free = !busy.running.contains(&(rule, h.clone()));
                if !free {
                    tracing::info!(rule = %r.name, host = %h, tag = %event.tag, "reaction dropped: one is already running on this host");
                }
                free
            });
            if r.hosts.is_empty() {
                return false;
            }
            for h in &r.hosts {
                busy.running.insert((rule, h.clone()));
            }
            busy.fired[rule].push_back(now);
            true
        });
        out
    }

    /// A reaction's job ended: its rule may run on those hosts again.
    pub fn finished(&self, reaction: &Reaction) {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        for h in &reaction.hosts {
            busy.running.remove(&(reaction.rule, h.clone()));
        }
    }

    fn plan(
        &self,
        rule: &Rule,
        i: usize,
        event: &Event,
        connected: &[String],
    ) -> Result<Reaction, String> {
        let env = template_env();
        let ctx =
            minijinja::context! { event => minijinja::Value::from(minijinja::value::Serde(event)) };
        let render = |s: &str| -> Result<String, String> {
            env.render_str(s, &ctx).map_err(|e| {
                format!(
                    "`{s}`: {}",
                    e.detail().map_or(e.to_string(), str::to_string)
                )
            })
        };
        let hosts = match &rule.target {
            None => vec![
                event
                    .host
                    .clone()
                    .ok_or("the event is about no host and the rule has no `target`")?,
            ],
            Some(t) => {
                let expr = render(t)?;
                let target = Target::parse(&expr).map_err(|e| format!("target `{expr}`: {e}"))?;
                let agents: Vec<Agent> = connected.iter().map(|n| Agent::new(n)).collect();
                let hosts: Vec<String> = target
                    .select(&agents)
                    .into_iter()
                    .map(|a| a.name.clone())
                    .collect();
                if hosts.is_empty() {
                    return Err(format!("target `{expr}` matches no connected agent"));
                }
                hosts
            }
        };
        let (kind, function) = match &rule.action {
            Action::Run(cmd) => {
                let cmd = render(cmd)?;
                let mut args = Map::new();
                args.insert("cmd".into(), J::String(cmd.clone()));
                (module_kind("cmd", args), cmd)
            }
            Action::Module { name, args } => {
                let name = render(name)?;
                let J::Object(args) = render_json(args, &render)? else {
                    unreachable!("args is a map")
                };
                crate::module::load(&name, &args).map_err(|e| e.to_string())?;
                let function = format!("{name} {}", J::Object(args.clone()));
                (module_kind(&name, args), function)
            }
            Action::State { file, vars } => {
                let file = render(file)?;
                let path = self.base.join(&file);
                let source = std::fs::read_to_string(&path)
                    .map_err(|e| format!("state file {}: {e}", path.display()))?;
                let J::Object(vars) = render_json(vars, &render)? else {
                    unreachable!("vars is a map")
                };
                (
                    JobKind::State {
                        file_name: path.display().to_string(),
                        source,
                        vars,
                        check: false,
                        become_user: None,
                    },
                    format!("state.apply {}", path.display()),
                )
            }
        };
        Ok(Reaction {
            rule: i,
            name: rule.name.clone(),
            hosts,
            kind,
            function,
            timeout: rule.timeout,
        })
    }
}

/// Where people read a node as starting: yaml-rust2 starts a block map at
/// its first `:`, people at its first key.
fn start(n: &Node) -> cairn_template::Span {
    match &n.kind {
        NodeKind::Map(entries) => match entries.first() {
            Some((k, _)) if k.span.start < n.span.start => {
                cairn_template::Span::new(n.span.file, k.span.start as usize, n.span.end as usize)
            }
            _ => n.span,
        },
        _ => n.span,
    }
}

fn module_kind(name: &str, args: Map<String, J>) -> JobKind {
    JobKind::Module {
        name: name.to_string(),
        args,
        check: false,
        become_user: None,
    }
}

/// Every string under `n`, with the node it is in.
fn walk_strings<'a>(n: &'a Node, f: &mut impl FnMut(&'a str, &'a Node)) {
    match &n.kind {
        NodeKind::Str(s, _) => f(s, n),
        NodeKind::Seq(items) => items.iter().for_each(|i| walk_strings(i, f)),
        NodeKind::Map(entries) => entries.iter().for_each(|(_, v)| walk_strings(v, f)),
        _ => {}
    }
}

fn render_json(v: &J, render: &dyn Fn(&str) -> Result<String, String>) -> Result<J, String> {
    Ok(match v {
        J::String(s) => J::String(render(s)?),
        J::Array(a) => J::Array(
            a.iter()
                .map(|x| render_json(x, render))
                .collect::<Result<_, _>>()?,
        ),
        J::Object(m) => J::Object(
            m.iter()
                .map(|(k, x)| Ok((k.clone(), render_json(x, render)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

/// A connected agent as a target candidate: its name, in `all`.
struct Agent {
    name: String,
    groups: Vec<String>,
}

impl Agent {
    fn new(name: &str) -> Agent {
        Agent {
            name: name.to_string(),
            groups: vec!["all".into()],
        }
    }
}

impl Candidate for Agent {
    fn name(&self) -> &str {
        &self.name
    }
    fn addresses(&self) -> Vec<std::net::IpAddr> {
        vec![]
    }
    fn groups(&self) -> &[String] {
        &self.groups
    }
    fn grain(&self, _: &str) -> Option<&J> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Reactors, ReactorError> {
        Reactors::parse("r.yaml", text, PathBuf::from("."))
    }

    fn event(tag: &str, host: &str, data: J) -> Event {
        Event::master(tag.into(), Some(host), data)
    }

    #[test]
    fn a_bad_reactors_file_is_an_error_at_file_line_col() {
        let cases = [
            (
                "- tag: a/*\n  run: x\n  rnu: y\n",
                "r.yaml:3:3",
                "did you mean `run`",
            ),
            ("- tag: a/*\n", "r.yaml:1:3", "exactly one of"),
            (
                "- tag: a/*\n  run: x\n  module: cmd\n",
                "r.yaml:3:11",
                "exactly one of",
            ),
            ("- tag: \"a/{b\"\n  run: x\n", "r.yaml:1:8", "tag glob"),
            (
                "- tag: a\n  run: \"{{ event.data. }}\"\n",
                "r.yaml:2:8",
                "template",
            ),
            (
                "- tag: a\n  state: nowhere.sls\n",
                "r.yaml:2:10",
                "no state file",
            ),
            (
                "- tag: a\n  run: x\n  timeout: -1\n",
                "r.yaml:3:12",
                "timeout",
            ),
            ("- tag: a\n  run: [x]\n", "r.yaml:2:8", "is a string"),
            ("tag: a\n", "r.yaml:1:1", "a list of rules"),
            ("- tag: a\n  run: x\n - y\n", "r.yaml:", "invalid YAML"),
            (
                "- tag: a\n  vars: {}\n  run: x\n",
                "r.yaml:2:9",
                "goes with `state`",
            ),
        ];
        for (text, at, says) in cases {
            let e = parse(text).map(|_| ()).unwrap_err();
            let shown = e.to_string();
            assert!(shown.starts_with(at), "{text:?}: {shown}");
            assert!(shown.contains(says), "{text:?}: {shown}");
        }
        assert!(parse("").unwrap().rules.is_empty());
    }

    #[test]
    fn a_rule_renders_its_job_from_the_event_on_its_host_or_target() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("motd.sls"), "m: {cmd.run: []}\n").unwrap();
        let r = Reactors::parse(
            "r.yaml",
            "- tag: cairn/file/*/changed\n  state: motd.sls\n  vars: {p: \"{{ event.data.path }}\"}\n\
             - tag: cairn/service/*/*/stopped\n  name: restart\n  run: \"start {{ event.data.name }}\"\n  target: \"L@{{ event.host }},b\"\n\
             - tag: cairn/service/**\n  module: file\n  args: {path: \"/tmp/{{ event.data.nope }}\"}\n",
            dir.path().to_path_buf(),
        )
        .unwrap();
        let now = Instant::now();
        let got = r.react(
            &event(
                "cairn/file/a/changed",
                "a",
                serde_json::json!({"path": "/etc/motd"}),
            ),
            &["a".into()],
            now,
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].hosts, ["a"]);
        assert_eq!(got[0].name, "r.yaml:1");
        let JobKind::State { vars, source, .. } = &got[0].kind else {
            panic!()
        };
        assert_eq!(vars["p"], "/etc/motd");
        assert!(source.contains("cmd.run"));
        // The second rule matches; the third fails to render (an undefined
        // name) and is left out, with a log line.
        let got = r.react(
            &event(
                "cairn/service/a/nginx/stopped",
                "a",
                serde_json::json!({"name": "nginx"}),
            ),
            &["a".into(), "b".into(), "c".into()],
            now,
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].hosts, ["a", "b"]);
        assert_eq!(got[0].function, "start nginx");
    }

    /// A rule matching every job event (its own job's included) fires once
    /// for an outside event, never for the events of the job it started,
    /// and once per host at a time.
    #[test]
    fn a_reaction_never_reacts_to_its_own_job() {
        let r = parse("- tag: cairn/job/**\n  run: echo again\n").unwrap();
        let now = Instant::now();
        let outside = event("cairn/job/1/ret/a", "a", J::Null);
        let first = r.react(&outside, &["a".into()], now);
        assert_eq!(first.len(), 1);
        // The reaction's job publishes its own events, marked with its id.
        for tag in ["cairn/job/2/started", "cairn/job/2/ret/a"] {
            let mut own = event(tag, "a", J::Null);
            own.reaction = Some("2".into());
            assert!(r.react(&own, &["a".into()], now).is_empty(), "{tag}");
        }
        // While it runs, another outside event on that host is dropped.
        assert!(r.react(&outside, &["a".into()], now).is_empty());
        r.finished(&first[0]);
        assert_eq!(r.react(&outside, &["a".into()], now).len(), 1);
    }

    #[test]
    fn a_rule_fires_at_most_its_rate_a_minute() {
        let r = parse("- tag: t/*\n  run: x\n").unwrap();
        let now = Instant::now();
        let mut fired = 0;
        for i in 0..100 {
            let e = event("t/x", &format!("h{i}"), J::Null);
            fired += r.react(&e, &[], now).len();
        }
        assert_eq!(fired, MAX_PER_MINUTE);
        let later = now + Duration::from_secs(61);
        assert_eq!(r.react(&event("t/x", "h", J::Null), &[], later).len(), 1);
    }
}
