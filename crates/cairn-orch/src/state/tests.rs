use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use proptest::prelude::*;
use serde_json::{Value as J, json};

use super::*;
use crate::module::{Args, Module, ModuleError, Outcome, RunContext};
use crate::remote::{Exec, Remote, quote};
use crate::transport::local::LocalHost;

/// What a recording module saw when it ran.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    name: String,
    watch_fired: bool,
    check: bool,
}

/// Changes or fails as told (`changed: true`, `fail: true`), and records
/// each run; touches no host.
#[derive(Debug)]
struct Record {
    name: String,
    changed: bool,
    fail: bool,
    calls: Arc<Mutex<Vec<Call>>>,
}

#[async_trait]
impl Module for Record {
    fn name(&self) -> &str {
        "test.record"
    }

    async fn run(&self, _host: &dyn Remote, ctx: &RunContext) -> Result<Outcome, ModuleError> {
        self.calls.lock().unwrap().push(Call {
            name: self.name.clone(),
            watch_fired: ctx.watch_fired,
            check: ctx.check,
        });
        if self.fail {
            return Err(ModuleError::Failed {
                module: "test.record".into(),
                message: format!("{} failed as told", self.name),
                stdout: "out".into(),
                stderr: "err".into(),
                rc: Some(3),
            });
        }
        Ok(Outcome {
            changed: self.changed,
            summary: if ctx.watch_fired {
                "restarted".into()
            } else {
                "ran".into()
            },
            ..Outcome::default()
        })
    }
}

/// A file with some content, read and written through the host: changed
/// only when the content differs, so a second run changes nothing.
#[derive(Debug)]
struct WriteFile {
    path: String,
    content: String,
}

#[async_trait]
impl Module for WriteFile {
    fn name(&self) -> &str {
        "test.write"
    }

    async fn run(&self, host: &dyn Remote, ctx: &RunContext) -> Result<Outcome, ModuleError> {
        let read = host
            .exec(Exec::new(format!(
                "cat -- {} 2>/dev/null",
                quote(&self.path)
            )))
            .await?;
        if read.success() && read.stdout == self.content.as_bytes() {
            return Ok(Outcome {
                summary: "as wanted".into(),
                ..Outcome::default()
            });
        }
        if !ctx.check {
            let out = host
                .exec(
                    Exec::new(format!("cat > {}", quote(&self.path)))
                        .stdin(self.content.as_bytes().to_vec()),
                )
                .await?;
            if !out.success() {
                return Err(ModuleError::Failed {
                    module: "test.write".into(),
                    message: format!("cannot write {}", self.path),
                    stdout: out.stdout_str(),
                    stderr: out.stderr_str(),
                    rc: out.status,
                });
            }
        }
        Ok(Outcome {
            changed: true,
            summary: format!("wrote {}", self.path),
            ..Outcome::default()
        })
    }
}

/// The test modules, by the names a state file uses.
fn loader(calls: &Arc<Mutex<Vec<Call>>>) -> impl Loader + use<> {
    let calls = Arc::clone(calls);
    move |name: &str, args: &Args| -> Result<Box<dyn Module>, ModuleError> {
        let bad = |message: String| ModuleError::BadArgs {
            module: name.to_string(),
            message,
        };
        let flag = |k: &str| args.get(k).and_then(J::as_bool).unwrap_or(false);
        let text = |k: &str| {
            args.get(k)
                .and_then(J::as_str)
                .map(str::to_string)
                .ok_or_else(|| bad(format!("`{k}` is required")))
        };
        match name {
            "test.record" => {
                if let Some(k) = args
                    .keys()
                    .find(|k| !["name", "changed", "fail"].contains(&k.as_str()))
                {
                    return Err(bad(format!("unknown argument `{k}`")));
                }
                Ok(Box::new(Record {
                    name: text("name")?,
                    changed: flag("changed"),
                    fail: flag("fail"),
                    calls: Arc::clone(&calls),
                }))
            }
            "test.write" => Ok(Box::new(WriteFile {
                path: text("name")?,
                content: text("content")?,
            })),
            _ => Err(ModuleError::Unknown {
                name: name.to_string(),
                suggestion: None,
            }),
        }
    }
}

fn parse(text: &str) -> Result<StateFile, StateError> {
    StateFile::parse(Path::new("web.sls"), text, &RenderContext::new("web1"))
}

fn ok(text: &str) -> StateFile {
    parse(text).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> StateError {
    match parse(text) {
        Ok(f) => panic!(
            "parsed, with states {:?}",
            f.states().map(|s| &s.id).collect::<Vec<_>>()
        ),
        Err(e) => e,
    }
}

fn at(e: &StateError) -> (usize, usize) {
    let l = e.location().expect("a location");
    (l.line, l.column)
}

fn run_order(f: &StateFile) -> Vec<&str> {
    f.states().map(|s| s.id.as_str()).collect()
}

/// Applies with the recording loader; the report and the calls in order.
async fn run(text: &str, check: bool) -> (HostReport, Vec<Call>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let file = ok(text);
    let ctx = RunContext {
        check,
        ..RunContext::default()
    };
    let report = apply(&file, &LocalHost::new("local"), &loader(&calls), &ctx)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let calls = calls.lock().unwrap().clone();
    (report, calls)
}

fn names(calls: &[Call]) -> Vec<&str> {
    calls.iter().map(|c| c.name.as_str()).collect()
}

fn result(r: &HostReport, id: &str) -> StateResult {
    r.get(id)
        .unwrap_or_else(|| panic!("no report for {id}"))
        .result
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("cairn-state-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `text` to `name`, a path inside the directory.
    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// --- parsing -------------------------------------------------------------

#[test]
fn list_and_mapping_forms_read_the_same() {
    let f = ok(r#"
listed:
  file.managed:
    - name: /etc/motd
    - mode: "0644"
mapped:
  file.managed:
    name: /etc/motd
    mode: "0644"
"#);
    let listed = f.get("listed").unwrap();
    let mapped = f.get("mapped").unwrap();
    assert_eq!(listed.module, "file.managed");
    assert_eq!(listed.args, mapped.args);
    assert_eq!(
        J::Object(listed.args.clone()),
        json!({"name": "/etc/motd", "mode": "0644"})
    );
}

#[test]
fn name_defaults_to_the_id_and_a_bare_function_joins_the_module() {
    let f =
        ok("nginx:\n  pkg:\n    - installed\n    - version: '1.24'\nredis:\n  pkg.installed: []\n");
    let nginx = f.get("nginx").unwrap();
    assert_eq!(nginx.module, "pkg.installed");
    assert_eq!(
        J::Object(nginx.args.clone()),
        json!({"version": "1.24", "name": "nginx"})
    );
    assert_eq!(f.get("redis").unwrap().args["name"], json!("redis"));
}

#[test]
fn requisites_leave_the_arguments_and_resolve_by_id_or_name() {
    let f = ok(r#"
nginx-conf:
  file.managed:
    - name: /etc/nginx/nginx.conf
nginx:
  pkg.installed: []
svc:
  service.running:
    - name: nginx
    - require:
      - pkg: nginx
    - watch:
      - file: /etc/nginx/nginx.conf
"#);
    let svc = f.get("svc").unwrap();
    assert_eq!(J::Object(svc.args.clone()), json!({"name": "nginx"}));
    let reqs: Vec<(RequisiteKind, &str)> = svc
        .requisites
        .iter()
        .map(|r| (r.kind, r.target.as_str()))
        .collect();
    assert_eq!(
        reqs,
        [
            (RequisiteKind::Require, "nginx"),
            (RequisiteKind::Watch, "nginx-conf")
        ]
    );
}

#[test]
fn render_sees_facts_vars_and_host() {
    let ctx = RenderContext::new("web1")
        .facts(json!({"cpus": 4, "os": "Debian"}))
        .vars(json!({"port": 8080}).as_object().unwrap().clone());
    let text = r#"
nginx-conf:
  file.managed:
    - name: /etc/nginx/nginx.conf
    - content: "worker_processes {{ facts.cpus }}; listen {{ vars.port }}; # {{ host }} {{ grains.os }}"
{% if facts.os == "Debian" %}
apt-only:
  cmd.run: []
{% endif %}
{% for i in range(2) %}
loop-{{ i }}:
  cmd.run: []
{% endfor %}
"#;
    let f = StateFile::parse(Path::new("web.sls"), text, &ctx).unwrap();
    assert_eq!(
        f.get("nginx-conf").unwrap().args["content"],
        json!("worker_processes 4; listen 8080; # web1 Debian")
    );
    assert_eq!(
        run_order(&f),
        ["nginx-conf", "apt-only", "loop-0", "loop-1"]
    );
}

#[test]
fn order_is_declared_with_requisites_pulled_forward() {
    let f = ok(r#"
a:
  cmd.run:
    - require:
      - c
b:
  cmd.run: []
c:
  cmd.run: []
d:
  cmd.run:
    - require_in:
      - b
"#);
    assert_eq!(run_order(&f), ["c", "a", "d", "b"]);
}

#[test]
fn uses_facts_reads_every_file_and_every_branch() {
    let plain =
        parse("a:\n  cmd.run:\n    - name: echo {{ host }} {{ vars.x | default(1) }}\n").unwrap();
    assert!(!plain.uses_facts());
    for text in [
        "a:\n  cmd.run:\n    - name: echo {{ facts.os.id }}\n",
        "a:\n  cmd.run:\n    - name: echo {{ grains['os'] }}\n",
        // A branch not taken (facts are an empty map here) still counts.
        "{% if facts.kernel is defined %}{% endif %}a:\n  cmd.run: []\n",
        "a:\n  cmd.run:\n    - name: echo {{ debug() }}\n",
    ] {
        let f = StateFile::parse(Path::new("web.sls"), text, &RenderContext::new("web1"));
        // Strict undefined: some fail to render without facts; those that
        // render must still say they use them.
        if let Ok(f) = f {
            assert!(f.uses_facts(), "{text}");
        }
    }
    let dir = TempDir::new("uses-facts");
    dir.write(
        "base.sls",
        "base:\n  cmd.run:\n    - name: echo {% if facts.os is defined %}x{% endif %}\n",
    );
    dir.write("top.sls", "include: [base.sls]\napp:\n  cmd.run: []\n");
    let f = StateFile::load(&dir.0.join("top.sls"), &RenderContext::new("h1")).unwrap();
    assert!(f.uses_facts(), "an included file's use counts");
}

#[test]
fn include_reads_files_relative_to_the_state_file() {
    let dir = TempDir::new("include");
    std::fs::create_dir_all(dir.0.join("common")).unwrap();
    dir.write(
        "common/base.sls",
        "base:\n  cmd.run:\n    - name: echo {{ host }}\n",
    );
    dir.write("top.sls", "include:\n  - common/base.sls\n  - ./common/base.sls\napp:\n  cmd.run:\n    - require:\n      - cmd: base\n");
    let f = StateFile::load(&dir.0.join("top.sls"), &RenderContext::new("h1")).unwrap();
    assert_eq!(run_order(&f), ["base", "app"]);
    assert_eq!(f.get("base").unwrap().args["name"], json!("echo h1"));
    assert_eq!(f.files().count(), 2);
    let loc = f.location("base").unwrap();
    assert!(loc.file.ends_with("base.sls") && loc.line == 1, "{loc}");

    dir.write(
        "twice.sls",
        "include: [common/base.sls]\nbase:\n  cmd.run: []\n",
    );
    let e = StateFile::load(&dir.0.join("twice.sls"), &RenderContext::new("h1")).unwrap_err();
    assert_eq!((e.kind(), at(&e)), (StateErrorKind::DuplicateId, (2, 1)));
    let help = miette::Diagnostic::help(&e).unwrap().to_string();
    assert!(help.contains("base.sls:1:1: first here"), "{help}");

    dir.write("bad.sls", "include:\n  - missing.sls\n");
    let e = StateFile::load(&dir.0.join("bad.sls"), &RenderContext::new("h1")).unwrap_err();
    assert_eq!((e.kind(), at(&e)), (StateErrorKind::Read, (2, 5)));
}

// --- errors at file:line:col ----------------------------------------------

#[test]
fn bad_yaml_is_reported_at_its_line() {
    let e = err("a:\n  cmd.run:\n    - name: [unclosed\n");
    assert_eq!(e.kind(), StateErrorKind::Syntax);
    assert_eq!(e.location().unwrap().file, "web.sls");
    assert!(at(&e).0 >= 3, "{e}");
    let e = err("a:\n  cmd.run: []\na:\n  cmd.run: []\n");
    assert_eq!((e.kind(), at(&e)), (StateErrorKind::Syntax, (3, 1)));
}

#[test]
fn unknown_requisite_target_is_reported_at_the_entry() {
    let e = err(
        "nginx:\n  service.running:\n    - watch:\n      - file: nginx-cnf\nnginx-conf:\n  file.managed: []\n",
    );
    assert_eq!(e.kind(), StateErrorKind::UnknownRequisite);
    assert_eq!(at(&e), (4, 9));
    assert!(e.to_string().starts_with("web.sls:4:9: "), "{e}");
    let help = miette::Diagnostic::help(&e).unwrap().to_string();
    assert!(help.contains("did you mean `nginx-conf`"), "{help}");
    // The id exists, but as another module.
    let e = err("a:\n  cmd.run:\n    - require:\n      - pkg: b\nb:\n  cmd.run: []\n");
    let help = miette::Diagnostic::help(&e).unwrap().to_string();
    assert!(help.contains("`b` is a `cmd.run` state"), "{help}");
}

#[test]
fn a_cycle_is_reported_at_the_requisite_that_closes_it() {
    let e = err(r#"a:
  cmd.run:
    - require:
      - b
b:
  cmd.run:
    - watch:
      - cmd: c
c:
  cmd.run:
    - onchanges:
      - a
"#);
    assert_eq!(e.kind(), StateErrorKind::Cycle);
    assert_eq!(e.message(), "requisite cycle: a → b → c → a");
    assert_eq!(at(&e), (12, 9));
    assert_eq!(miette::Diagnostic::labels(&e).unwrap().count(), 3);

    let e = err("a:\n  cmd.run:\n    - require:\n      - a\n");
    assert_eq!((e.kind(), at(&e)), (StateErrorKind::Cycle, (4, 9)));
}

#[test]
fn two_module_keys_in_one_state_are_refused_at_the_second() {
    let e = err("nginx:\n  pkg.installed: []\n  service.running: []\n");
    assert_eq!((e.kind(), at(&e)), (StateErrorKind::Shape, (3, 3)));
    assert!(e.message().contains("two modules"), "{e}");
}

#[test]
fn bad_shapes_are_reported_where_they_are() {
    for (text, line_col) in [
        ("- a\n- b\n", (1, 1)),
        ("a: cmd.run\n", (1, 4)),
        ("a:\n  cmd.run: 3\n", (2, 12)),
        ("a:\n  cmd.run:\n    - [x]\n", (3, 7)),
        ("a:\n  cmd.run:\n    - name: x\n      cwd: /\n", (3, 7)),
        (
            "a:\n  cmd.run:\n    - require:\n      - {b: [c]}\n",
            (4, 13),
        ),
        ("a:\n  cmd.run:\n    - prereq:\n      - b\n", (3, 7)),
        ("a:\n  cmd.run:\n    - name: x\n    - name: y\n", (4, 7)),
        ("a: {}\n", (1, 1)),
    ] {
        let e = err(text);
        assert_eq!(
            (e.kind(), at(&e)),
            (StateErrorKind::Shape, line_col),
            "{text:?}: {e}"
        );
    }
}

#[test]
fn jinja_errors_point_into_the_file_as_written() {
    let e = err("a:\n  cmd.run:\n    - name: {{ facts.nope.deeper }}\n");
    assert_eq!(e.kind(), StateErrorKind::Render);
    assert_eq!(at(&e).0, 3, "{e}");
    assert!(at(&e).1 >= 13, "{e}");
    let e = err("a:\n  cmd.run: []\n{% if %}\n");
    assert_eq!((e.kind(), at(&e).0), (StateErrorKind::Render, 3), "{e}");
    let e = err("a:\n  cmd.run: []\n{% for x in [1] %}\n");
    assert_eq!(e.kind(), StateErrorKind::Render, "{e}");
}

#[test]
fn errors_after_rendering_map_back_to_the_written_line() {
    // Rendering kept the lines: the written file, same line and column.
    let e = err("{% set m = 'cmd.run' %}\na:\n  {{ m }}:\n    - require:\n      - nope\n");
    assert_eq!(e.location().unwrap().file, "web.sls");
    assert_eq!(at(&e), (5, 9));
    // A loop added lines: the rendered text, named as such.
    let e = err(
        "{% for i in [1, 2] %}\ns{{ i }}:\n  cmd.run: []\n{% endfor %}\nx:\n  cmd.run:\n    - require: [nope]\n",
    );
    let l = e.location().unwrap();
    assert_eq!(l.file, "web.sls (rendered)");
    assert_eq!(
        StateFile::parse(Path::new("web.sls"), "", &RenderContext::new("h"))
            .unwrap()
            .states()
            .count(),
        0
    );
}

#[tokio::test]
async fn a_module_typo_fails_before_any_state_runs() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let file = ok("first:\n  test.record: []\nsecond:\n  test.recrod: []\n");
    let e = apply(
        &file,
        &LocalHost::new("local"),
        &loader(&calls),
        &RunContext::default(),
    )
    .await
    .unwrap_err();
    assert_eq!((e.kind(), at(&e)), (StateErrorKind::Module, (4, 3)));
    let file = ok("first:\n  test.record:\n    - colour: red\n");
    let e = file.prepare(&loader(&calls)).unwrap_err();
    assert!(e.message().contains("unknown argument `colour`"), "{e}");
    assert!(calls.lock().unwrap().is_empty());
}

// --- requisite semantics --------------------------------------------------

#[tokio::test]
async fn require_runs_after_success_and_skips_after_failure() {
    let (r, calls) = run(
        r#"
ok:
  test.record: []
bad:
  test.record:
    - fail: true
after-ok:
  test.record:
    - require: [ok]
after-bad:
  test.record:
    - require:
      - test: bad
downstream:
  test.record:
    - require: [after-bad]
independent:
  test.record: []
"#,
        false,
    )
    .await;
    assert_eq!(names(&calls), ["ok", "bad", "after-ok", "independent"]);
    assert_eq!(result(&r, "bad"), StateResult::Failed);
    assert_eq!(result(&r, "after-ok"), StateResult::Unchanged);
    let skipped = r.get("after-bad").unwrap();
    assert_eq!(skipped.result, StateResult::Skipped);
    assert_eq!(
        skipped.skipped.as_ref().unwrap().to_string(),
        "skipped (requisite failed: bad)"
    );
    // A failure skips everything downstream of it, not just its dependents.
    assert_eq!(result(&r, "downstream"), StateResult::Skipped);
    let bad = r.get("bad").unwrap();
    assert!(bad.error.as_ref().unwrap().contains("failed as told"));
    assert_eq!(bad.outcome.as_ref().unwrap().rc, Some(3));
    assert!(!r.succeeded());
}

#[tokio::test]
async fn watch_fires_only_when_the_watched_state_changed() {
    let (r, calls) = run(
        r#"
conf:
  test.record:
    - changed: true
same:
  test.record: []
nginx:
  test.record:
    - watch:
      - test: conf
      - same
redis:
  test.record:
    - watch: [same]
"#,
        false,
    )
    .await;
    let fired: Vec<(&str, bool)> = calls
        .iter()
        .map(|c| (c.name.as_str(), c.watch_fired))
        .collect();
    assert_eq!(
        fired,
        [
            ("conf", false),
            ("same", false),
            ("nginx", true),
            ("redis", false)
        ]
    );
    assert!(r.get("nginx").unwrap().watch_fired);
    assert_eq!(
        r.get("nginx").unwrap().outcome.as_ref().unwrap().summary,
        "restarted"
    );
}

#[tokio::test]
async fn watch_in_fires_the_target() {
    let (_, calls) = run(
        "nginx:\n  test.record: []\nconf:\n  test.record:\n    - changed: true\n    - watch_in:\n      - test: nginx\n",
        false,
    )
    .await;
    assert_eq!(names(&calls), ["conf", "nginx"]);
    assert!(calls[1].watch_fired);
}

#[tokio::test]
async fn onchanges_runs_only_after_a_change() {
    let (r, calls) = run(
        r#"
changed:
  test.record:
    - changed: true
same:
  test.record: []
on-changed:
  test.record:
    - onchanges: [same, changed]
on-same:
  test.record:
    - onchanges: [same]
needs-on-same:
  test.record:
    - require: [on-same]
"#,
        false,
    )
    .await;
    assert_eq!(
        names(&calls),
        ["changed", "same", "on-changed", "needs-on-same"]
    );
    assert_eq!(r.get("on-same").unwrap().skipped, Some(Skip::NoChanges));
    // Not needed is not failed: what requires it still runs.
    assert_eq!(result(&r, "needs-on-same"), StateResult::Unchanged);
    assert!(r.succeeded());
}

#[tokio::test]
async fn onfail_runs_only_after_a_failure() {
    let (r, calls) = run(
        r#"
bad:
  test.record:
    - fail: true
good:
  test.record: []
after-bad:
  test.record:
    - require: [bad]
rescue:
  test.record:
    - onfail:
      - good
      - after-bad
not-needed:
  test.record:
    - onfail: [good]
"#,
        false,
    )
    .await;
    assert_eq!(names(&calls), ["bad", "good", "rescue"]);
    assert_eq!(result(&r, "rescue"), StateResult::Unchanged);
    assert_eq!(
        r.get("not-needed").unwrap().skipped,
        Some(Skip::NothingFailed)
    );
}

#[tokio::test]
async fn check_mode_passes_through_and_a_watcher_reports_it_would_fire() {
    let (r, calls) = run(
        "conf:\n  test.record:\n    - changed: true\nsvc:\n  test.record:\n    - watch: [conf]\n",
        true,
    )
    .await;
    assert!(calls.iter().all(|c| c.check));
    assert!(calls[1].watch_fired);
    let svc = r.get("svc").unwrap();
    assert!(svc.watch_fired);
    assert_eq!(svc.result, StateResult::Changed);
    assert!(r.check);
}

#[tokio::test]
async fn a_second_apply_changes_nothing() {
    let dir = TempDir::new("idempotent");
    let motd = dir.0.join("motd");
    let text = format!(
        "motd:\n  test.write:\n    - name: {}\n    - content: \"hello {{{{ host }}}}\\n\"\nrestart:\n  test.record:\n    - watch: [motd]\n",
        motd.display()
    );
    let calls = Arc::new(Mutex::new(Vec::new()));
    let host = LocalHost::new("local");
    let file = StateFile::parse(Path::new("motd.sls"), &text, &RenderContext::new("web1")).unwrap();
    let prepared = file.prepare(&loader(&calls)).unwrap();

    let check = RunContext {
        check: true,
        ..RunContext::default()
    };
    let dry = prepared.apply(&host, &check).await;
    assert_eq!(dry.count(StateResult::Changed), 2);
    assert!(!motd.exists(), "a dry run wrote the file");

    let first = prepared.apply(&host, &RunContext::default()).await;
    assert_eq!(first.count(StateResult::Changed), 1);
    assert!(first.get("restart").unwrap().watch_fired);
    assert_eq!(std::fs::read_to_string(&motd).unwrap(), "hello web1\n");

    let second = prepared.apply(&host, &RunContext::default()).await;
    assert_eq!(second.count(StateResult::Changed), 0);
    assert!(!second.get("restart").unwrap().watch_fired);
    assert_eq!(second.host, "local");
}

#[tokio::test]
async fn the_report_serializes_for_jobs_output() {
    let (r, _) = run(
        "a:\n  test.record:\n    - fail: true\nb:\n  test.record:\n    - require: [a]\n",
        false,
    )
    .await;
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["host"], json!("local"));
    assert_eq!(v["states"][0]["result"], json!("failed"));
    assert_eq!(v["states"][0]["module"], json!("test.record"));
    assert!(v["states"][0]["duration_s"].is_number());
    assert_eq!(
        v["states"][1]["skipped"],
        json!({"reason": "requisite_failed", "requisite": "a"})
    );
}

#[test]
fn a_plain_function_is_a_loader() {
    fn nothing(name: &str, _: &Args) -> Result<Box<dyn Module>, ModuleError> {
        Err(ModuleError::Unknown {
            name: name.to_string(),
            suggestion: Some("cmd.run".into()),
        })
    }
    let file = ok("a:\n  cmd.rn: []\n");
    let e = file.prepare(&nothing).unwrap_err();
    assert_eq!(
        e.to_string(),
        "web.sls:2:3: state `a`: no module named `cmd.rn` (did you mean `cmd.run`?)"
    );
}

#[test]
fn a_host_run_can_be_spawned_beside_others() {
    fn send<T: Send>(_: &T) {}
    let calls = Arc::new(Mutex::new(Vec::new()));
    let file = ok("a:\n  test.record: []\n");
    let loader = loader(&calls);
    let host = LocalHost::new("h");
    let ctx = RunContext::default();
    send(&apply(&file, &host, &loader, &ctx));
    let prepared = file.prepare(&loader).unwrap();
    send(&prepared.apply(&host, &ctx));
}

// --- robustness -----------------------------------------------------------

fn yamlish() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "a", "b:", " ", "  ", "\n", "- ", ": ", "cmd.run", "require", "watch_in", "{", "}", "[",
        "]", "\"", "'", "{{", "}}", "{%", "%}", "if", "for", "#", "&x", "*x", "---", "é", "\t",
        "|", ">", "name", ",", "include",
    ]);
    prop::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn parse_never_panics(text in yamlish()) {
        if let Err(e) = parse(&text) {
            // Every error has a place, and the place is in the text shown.
            if e.kind() != StateErrorKind::Read {
                prop_assert!(e.location().is_some());
            }
        }
    }

    #[test]
    fn parse_never_panics_on_arbitrary_text(text in "\\PC{0,80}") {
        let _ = parse(&text);
    }
}
