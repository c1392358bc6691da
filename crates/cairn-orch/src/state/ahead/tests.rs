//! States read ahead: as few execs as exactness allows, and the very
//! reports the states give probing one at a time.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::module::testkit::{Fake, Scratch};
use crate::module::{self, Args, Module, ModuleError, Outcome, RunContext};
use crate::remote::{Exec, Output, Remote, TransportError};
use crate::state::{HostReport, RenderContext, StateFile, StateResult};
use crate::transport::Shell;
use crate::transport::local::LocalHost;

/// This machine, counting execs (a shell opened is one) and the scripts
/// run in its shells, which it keeps or not (`shells`).
struct Counting {
    host: LocalHost,
    shells: bool,
    execs: AtomicUsize,
    in_shells: Arc<AtomicUsize>,
    scripts: Mutex<Vec<String>>,
}

impl Counting {
    fn new() -> Counting {
        Counting {
            host: LocalHost::new("local"),
            shells: true,
            execs: AtomicUsize::new(0),
            in_shells: Arc::new(AtomicUsize::new(0)),
            scripts: Mutex::new(Vec::new()),
        }
    }

    /// A transport without shells: every script an exec.
    fn without_shells() -> Counting {
        Counting {
            shells: false,
            ..Counting::new()
        }
    }

    /// Execs since the last call (shells opened included).
    fn take(&self) -> usize {
        self.take_both().0
    }

    /// Execs, and scripts run in shells, since the last call.
    fn take_both(&self) -> (usize, usize) {
        self.scripts.lock().unwrap().clear();
        (
            self.execs.swap(0, Ordering::SeqCst),
            self.in_shells.swap(0, Ordering::SeqCst),
        )
    }
}

#[async_trait]
impl Remote for Counting {
    fn name(&self) -> &str {
        "local"
    }

    async fn exec(&self, exec: Exec) -> Result<Output, TransportError> {
        self.execs.fetch_add(1, Ordering::SeqCst);
        self.scripts.lock().unwrap().push(exec.script.clone());
        self.host.exec(exec).await
    }

    async fn shell(&self, become_user: Option<String>) -> Result<Option<Shell>, TransportError> {
        if !self.shells {
            return Ok(None);
        }
        self.execs.fetch_add(1, Ordering::SeqCst);
        let shell = self.host.shell(become_user).await?;
        Ok(shell.map(|s| s.counted(self.in_shells.clone())))
    }
}

/// A module that hides its probe: the state runs it as it ran before
/// probes were read ahead.
#[derive(Debug)]
struct Alone(Box<dyn Module>);

#[async_trait]
impl Module for Alone {
    fn name(&self) -> &str {
        self.0.name()
    }

    async fn run(&self, host: &dyn Remote, ctx: &RunContext) -> Result<Outcome, ModuleError> {
        self.0.run(host, ctx).await
    }
}

fn alone(name: &str, args: &Args) -> Result<Box<dyn Module>, ModuleError> {
    Ok(Box::new(Alone(module::load(name, args)?)))
}

fn parse(text: &str) -> StateFile {
    StateFile::parse(Path::new("t.sls"), text, &RenderContext::new("h1"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn results(r: &HostReport) -> Vec<(&str, StateResult)> {
    r.states.iter().map(|s| (s.id.as_str(), s.result)).collect()
}

/// Durations differ from run to run; nothing else may.
fn timeless(mut r: HostReport) -> HostReport {
    for s in &mut r.states {
        s.duration = std::time::Duration::ZERO;
    }
    r
}

/// The bench's four tasks (bench/orch.py).
fn four(d: &Scratch) -> String {
    let base = d.s("h1");
    format!(
        r#"conf-dir:
  file.directory:
    - name: {base}/conf.d
    - makedirs: true
motd:
  file.managed:
    - name: {base}/motd
    - contents: "hello from cairn\n"
stamp:
  cmd.run:
    - name: date > {base}/stamp
    - creates: {base}/stamp
motd-link:
  file.symlink:
    - name: {base}/motd.link
    - target: {base}/motd
"#
    )
}

/// In the host's shell: one exec for the four tasks, changed or not, and
/// in it one script to read them all and one per change (each carrying
/// the next state's read).
#[tokio::test]
async fn four_tasks_cost_one_exec_in_the_hosts_shell() {
    let d = Scratch::new();
    let file = parse(&four(&d));
    let prepared = file.prepare(&module::load).unwrap();
    let host = Counting::new();
    let run = RunContext::default();
    let first = prepared.apply(&host, &run).await;
    assert_eq!(first.count(StateResult::Changed), 4, "{first:#?}");
    assert_eq!(host.take_both(), (1, 5), "one shell: one read, four steps");
    assert_eq!(
        std::fs::read_to_string(d.path("h1/motd.link")).unwrap(),
        "hello from cairn\n"
    );
    let second = prepared.apply(&host, &run).await;
    assert_eq!(second.count(StateResult::Changed), 0, "{second:#?}");
    assert_eq!(host.take_both(), (1, 1), "one shell: one read");
    let check = RunContext {
        check: true,
        ..RunContext::default()
    };
    std::fs::write(d.path("h1/motd"), "edited\n").unwrap();
    let dry = prepared.apply(&host, &check).await;
    assert_eq!(dry.count(StateResult::Changed), 1, "{dry:#?}");
    assert_eq!(host.take_both(), (1, 1));
    // Probing one at a time needs no shell: four execs, and a step.
    let one_by_one = file.prepare(&alone).unwrap().apply(&host, &run).await;
    assert_eq!(one_by_one.count(StateResult::Changed), 1);
    assert_eq!(host.take_both(), (5, 0));
}

#[tokio::test]
async fn four_tasks_read_the_host_in_one_exec() {
    let d = Scratch::new();
    let file = parse(&four(&d));
    let prepared = file.prepare(&module::load).unwrap();
    let host = Counting::without_shells();
    let run = RunContext::default();

    // Each state's probe after the first rides on the step before it, and
    // sees what that step did: motd's directory was made by conf-dir.
    let first = prepared.apply(&host, &run).await;
    assert_eq!(first.count(StateResult::Changed), 4, "{first:#?}");
    assert_eq!(host.take(), 5, "one read, four steps");
    assert_eq!(
        std::fs::read_to_string(d.path("h1/motd.link")).unwrap(),
        "hello from cairn\n"
    );

    let second = prepared.apply(&host, &run).await;
    assert_eq!(second.count(StateResult::Changed), 0, "{second:#?}");
    assert_eq!(host.take(), 1, "one read, nothing to do");

    std::fs::write(d.path("h1/motd"), "edited\n").unwrap();
    let check = RunContext {
        check: true,
        ..RunContext::default()
    };
    let dry = prepared.apply(&host, &check).await;
    assert_eq!(host.take(), 1);
    assert_eq!(
        results(&dry),
        [
            ("conf-dir", StateResult::Unchanged),
            ("motd", StateResult::Changed),
            ("stamp", StateResult::Unchanged),
            ("motd-link", StateResult::Unchanged),
        ]
    );
    let diff = &dry.get("motd").unwrap().outcome.as_ref().unwrap().diff[0];
    assert_eq!(diff.before.as_deref(), Some("edited\n"));
    assert_eq!(diff.after.as_deref(), Some("hello from cairn\n"));
    assert_eq!(
        std::fs::read_to_string(d.path("h1/motd")).unwrap(),
        "edited\n"
    );

    // Probing one at a time: four reads, and a step.
    let unbatched = file.prepare(&alone).unwrap();
    let one_by_one = unbatched.apply(&host, &run).await;
    assert_eq!(host.take(), 5);
    assert_eq!(one_by_one.count(StateResult::Changed), 1);
}

/// States that see what the states before them did, failures, skips, a
/// guard only a run may run, a probe that fails: applied with reads ahead
/// and one at a time, over the same directory, from the same start, the
/// reports are the same, run after run.
#[tokio::test]
async fn reports_are_those_of_probing_one_at_a_time() {
    let d = Scratch::new();
    let a = d.s("a");
    let text = format!(
        r#"conf-dir:
  file.directory:
    - name: {a}/conf.d
    - makedirs: true
motd:
  file.managed:
    - name: {a}/motd
    - contents: "hello\n"
stamp:
  cmd.run:
    - name: "echo made > {a}/stamp; printf 'hello\n' > {a}/copy"
    - creates: {a}/stamp
copy:
  file.managed:
    - name: {a}/copy
    - contents: "hello\n"
link:
  file.symlink:
    - name: {a}/motd.link
    - target: {a}/motd
broken:
  cmd.run:
    - name: "echo out; echo err >&2; exit 3"
    - creates: {a}/never
after-broken:
  file.managed:
    - name: {a}/after
    - contents: x
    - require: [broken]
on-broken:
  file.managed:
    - name: {a}/failed
    - contents: "y"
    - onfail: [broken]
guarded:
  cmd.run:
    - name: "echo ran >> {a}/log"
    - unless: "test -f {a}/copy"
bad-chdir:
  cmd.run:
    - name: "true"
    - chdir: {missing}
    - creates: x
last:
  file.managed:
    - name: {a}/last
    - contents: z
    - mode: "0600"
gone:
  file.absent:
    - name: {a}/conf.d
    - onchanges: [last]
"#,
        missing = d.s("missing"),
    );
    let file = parse(&text);
    let ahead = file.prepare(&module::load).unwrap();
    let one_by_one = file.prepare(&alone).unwrap();
    for host in [Counting::new(), Counting::without_shells()] {
        same_reports(&d, &ahead, &one_by_one, &host).await;
    }
    // What the runs above were about.
    let host = Counting::new();
    let run = RunContext::default();
    let _ = std::fs::remove_dir_all(d.path("a"));
    let r = ahead.apply(&host, &run).await;
    assert_eq!(
        results(&r),
        [
            ("conf-dir", StateResult::Changed),
            ("motd", StateResult::Changed),
            ("stamp", StateResult::Changed),
            ("copy", StateResult::Unchanged),
            ("link", StateResult::Changed),
            ("broken", StateResult::Failed),
            ("after-broken", StateResult::Skipped),
            ("on-broken", StateResult::Changed),
            ("guarded", StateResult::Unchanged),
            ("bad-chdir", StateResult::Failed),
            ("last", StateResult::Changed),
            ("gone", StateResult::Changed),
        ]
    );
    let broken = r.get("broken").unwrap();
    let o = broken.outcome.as_ref().unwrap();
    assert_eq!(
        (o.stdout.as_str(), o.stderr.as_str(), o.rc),
        ("out\n", "err\n", Some(3))
    );
    assert_eq!(
        broken.error.as_deref(),
        Some("cmd: `echo out; echo err >&2; exit 3` failed (exit 3): err")
    );
    let bad = r.get("bad-chdir").unwrap();
    let err = bad.error.as_deref().unwrap();
    assert!(
        err.starts_with("cmd: checking creates/unless/onlyif failed (exit 1): ")
            && err.contains("missing"),
        "{err}"
    );
    assert!(!d.path("a/log").exists(), "`unless` held it back");
}

/// The reports of `ahead` and `one_by_one` from the same start, run after
/// run, and the first in fewer execs.
async fn same_reports(
    d: &Scratch,
    ahead: &crate::state::Prepared<'_>,
    one_by_one: &crate::state::Prepared<'_>,
    host: &Counting,
) {
    let run = RunContext::default();
    let check = RunContext {
        check: true,
        ..RunContext::default()
    };
    // Between runs, the host drifts: the same drift for both.
    let drifts: [fn(&Scratch); 4] = [
        |_| {},
        |_| {},
        |d| {
            std::fs::remove_file(d.path("a/stamp")).unwrap();
            std::fs::write(d.path("a/motd"), "drifted\n").unwrap();
            std::fs::remove_file(d.path("a/last")).unwrap();
        },
        |d| std::fs::write(d.path("a/copy"), "drifted\n").unwrap(),
    ];
    for round in 0..drifts.len() {
        for ctx in [&check, &run] {
            let mut reports = Vec::new();
            let mut execs = Vec::new();
            for prepared in [ahead, one_by_one] {
                // The same start for both.
                let _ = std::fs::remove_dir_all(d.path("a"));
                for (i, earlier) in drifts.iter().enumerate().take(round + 1) {
                    if i > 0 {
                        // Replay the runs and drifts that came before.
                        prepared.apply(host, &run).await;
                    }
                    earlier(d);
                }
                host.take();
                reports.push(timeless(prepared.apply(host, ctx).await));
                execs.push(host.take());
            }
            assert_eq!(reports[0], reports[1], "round {round}, check {}", ctx.check);
            assert!(
                execs[0] < execs[1],
                "round {round}: {} execs ahead, {} one at a time",
                execs[0],
                execs[1]
            );
        }
    }
}

/// A host that cannot run anything fails each state with what its own
/// probe would have met, and no state runs twice.
#[tokio::test]
async fn an_unreachable_host_fails_each_state_as_its_probe_would() {
    let d = Scratch::new();
    let file = parse(&four(&d));
    let fake = Fake::new(&[]);
    let r = file
        .prepare(&module::load)
        .unwrap()
        .apply(&fake, &RunContext::default())
        .await;
    assert_eq!(r.count(StateResult::Failed), 4);
    for s in &r.states {
        assert_eq!(
            s.error.as_deref(),
            Some("fake: no canned answer left"),
            "{}",
            s.id
        );
    }
    assert_eq!(fake.scripts().len(), 4, "one try per state");
}
