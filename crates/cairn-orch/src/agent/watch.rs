//! What the agent reports on its own: files its jobs manage that change on
//! disk, and the service state changes a local server's init writes.
//!
//! **Files.** After a job that ran the `file` module (alone, or as states
//! of a state file), the agent keeps each path with what the job left
//! there (absent, a file's SHA-256, or something else) and watches the
//! path's directory with inotify (the `notify` crate; a directory, since
//! editors replace a file by renaming a new one over it). Changes are
//! debounced: once the directory is quiet for the debounce time, each
//! touched path is read again, and only a path whose content differs from
//! what the last job left is reported, once, as `file/changed` (the master
//! makes it `cairn/file/ID/changed`). While a job runs nothing is reported,
//! and when it ends every watched path takes what the job left: the
//! agent's own writes (a reactor re-applying the state) are never reported
//! as changes, so they cannot loop back into the reactor.
//!
//! **Services.** When the init's event file exists (by default
//! `/run/cairn/events.jsonl`, one JSON object a line such as
//! `{"tag":"cairn/service/nginx/stopped","time":...,"pid":...}`), the agent
//! tails it (from its end at start: history is not replayed; from the
//! start of a new or rotated file) and forwards each line as
//! `service/NAME/STATE`; the master makes it `cairn/service/ID/NAME/STATE`.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::Watcher as _;
use serde_json::{Map, Value as J, json};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// An event for the master: a relative tag and its data.
pub type Outgoing = (String, J);

/// The longest line of the service event file the agent reads; a longer
/// one is skipped, with a log line.
pub const MAX_LINE: usize = 1 << 20;

/// What a watched path held when last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Absent,
    File([u8; 32]),
    /// A directory, a device: watched for becoming a file or absent.
    Other,
}

impl Seen {
    fn of(path: &Path) -> Seen {
        match std::fs::symlink_metadata(path) {
            Err(_) => Seen::Absent,
            Ok(m) if m.is_file() => match std::fs::read(path) {
                Ok(bytes) => Seen::File(Sha256::digest(&bytes).into()),
                Err(_) => Seen::Other,
            },
            Ok(_) => Seen::Other,
        }
    }

    fn describe(&self) -> String {
        match self {
            Seen::Absent => "absent".into(),
            Seen::File(h) => format!("sha256:{}", hex::encode(h)),
            Seen::Other => "not a regular file".into(),
        }
    }
}

/// A path a job manages.
#[derive(Debug, Clone)]
struct Managed {
    seen: Seen,
    job: String,
    /// The state file that manages it, when a state did.
    state: Option<String>,
}

#[derive(Default)]
struct Inner {
    files: HashMap<PathBuf, Managed>,
    dirs: HashSet<PathBuf>,
    /// Jobs running now: nothing is reported while one runs.
    busy: usize,
}

/// The agent's file watch (see the module documentation).
pub struct Watch {
    inner: Mutex<Inner>,
    /// Made when the first file is managed (an agent that manages none
    /// keeps no inotify instance and no thread); `Err` when inotify is not
    /// available: jobs still run, nothing is watched, and a log line said
    /// so.
    watcher: Mutex<Option<Result<notify::RecommendedWatcher, ()>>>,
    raw: mpsc::UnboundedSender<PathBuf>,
    out: mpsc::Sender<Outgoing>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Watch {
    /// The watch, and the future that debounces and reports its changes
    /// (run it alongside the agent's session).
    pub fn start(
        out: mpsc::Sender<Outgoing>,
        debounce: Duration,
    ) -> (Arc<Watch>, impl Future<Output = ()>) {
        let (raw, raw_rx) = mpsc::unbounded_channel::<PathBuf>();
        let watch = Arc::new(Watch {
            inner: Mutex::new(Inner::default()),
            watcher: Mutex::new(None),
            raw,
            out,
        });
        let run = watch.clone().debounce(raw_rx, debounce);
        (watch, run)
    }

    fn watcher(&self) -> Result<notify::RecommendedWatcher, ()> {
        let raw = self.raw.clone();
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Reads (an open, a close without a write) change nothing; a
            // reader polling the file must not keep the directory "busy".
            if let Ok(e) = res
                && !matches!(e.kind, notify::EventKind::Access(_))
            {
                for p in e.paths {
                    let _ = raw.send(p);
                }
            }
        })
        .map_err(|e| {
            tracing::error!("cannot watch files (inotify): {e}; managed files are not watched");
        })
    }

    /// Marks a job running until the guard is dropped or finished.
    pub fn busy(self: &Arc<Self>) -> Busy {
        lock(&self.inner).busy += 1;
        Busy {
            watch: self.clone(),
        }
    }

    /// The paths watched now.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut p: Vec<_> = lock(&self.inner).files.keys().cloned().collect();
        p.sort();
        p
    }

    /// After a job: `paths` join the watch, and every watched path takes
    /// what is there now (the job's own writes are not changes).
    fn settle(&self, paths: &[String], job: &str, state: Option<&str>) {
        let mut inner = lock(&self.inner);
        for p in paths {
            let path = PathBuf::from(p);
            if !path.is_absolute() {
                continue;
            }
            inner.files.insert(
                path.clone(),
                Managed {
                    seen: Seen::Absent,
                    job: job.to_string(),
                    state: state.map(str::to_string),
                },
            );
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            if !inner.dirs.contains(&dir)
                && let Ok(w) = lock(&self.watcher)
                    .get_or_insert_with(|| self.watcher())
                    .as_mut()
            {
                match w.watch(&dir, notify::RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        tracing::info!(dir = %dir.display(), "watching managed files");
                        inner.dirs.insert(dir);
                    }
                    Err(e) => tracing::warn!("cannot watch {}: {e}", dir.display()),
                }
            }
        }
        for m in inner.files.iter_mut() {
            m.1.seen = Seen::of(m.0);
        }
    }

    async fn debounce(self: Arc<Self>, mut raw: mpsc::UnboundedReceiver<PathBuf>, quiet: Duration) {
        let mut pending: HashSet<PathBuf> = HashSet::new();
        loop {
            if pending.is_empty() {
                match raw.recv().await {
                    Some(p) => {
                        pending.insert(p);
                    }
                    None => return,
                }
            }
            // Until the directory is quiet, or ten quiet times at most
            // (a file written without pause is still looked at).
            let until = tokio::time::Instant::now() + quiet * 10;
            loop {
                let wait = quiet.min(until.saturating_duration_since(tokio::time::Instant::now()));
                match tokio::time::timeout(wait, raw.recv()).await {
                    Ok(Some(p)) => {
                        pending.insert(p);
                    }
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let changed = {
                let mut inner = lock(&self.inner);
                if inner.busy > 0 {
                    // A job is writing: what it leaves is settled when it
                    // ends; look again after that.
                    continue;
                }
                let mut changed = vec![];
                for p in pending.drain() {
                    let Some(m) = inner.files.get_mut(&p) else {
                        continue;
                    };
                    let now = Seen::of(&p);
                    if now != m.seen {
                        changed.push(json!({
                            "path": p.display().to_string(),
                            "was": m.seen.describe(),
                            "now": now.describe(),
                            "job": m.job,
                            "state": m.state,
                        }));
                        m.seen = now;
                    }
                }
                changed
            };
            for data in changed {
                tracing::info!(path = %data["path"], "a managed file changed on disk");
                send(&self.out, "file/changed".into(), data);
            }
        }
    }
}

/// A job running; [`Busy::finish`] settles what it managed.
pub struct Busy {
    watch: Arc<Watch>,
}

impl Busy {
    pub fn finish(self, paths: &[String], job: &str, state: Option<&str>) {
        self.watch.settle(paths, job, state);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut inner = lock(&self.watch.inner);
        inner.busy -= 1;
        if inner.busy == 0 {
            // Whatever ran last leaves the files as they are now.
            for m in inner.files.iter_mut() {
                m.1.seen = Seen::of(m.0);
            }
        }
    }
}

/// Queues an event for the master; a full queue (the master away for
/// long, or a flood) drops it with a log line rather than grow.
pub fn send(out: &mpsc::Sender<Outgoing>, tag: String, data: J) {
    if let Err(e) = out.try_send((tag, data)) {
        tracing::warn!("event dropped: {e}");
    }
}

/// Tails the init's service event file at `path`, polling every `poll`.
/// Where an existing file ends is taken now, before the future runs.
pub fn tail_services(
    path: PathBuf,
    out: mpsc::Sender<Outgoing>,
    poll: Duration,
) -> impl Future<Output = ()> {
    // (inode, offset); at start, an existing file is read from its end.
    let at: Option<(u64, u64)> = std::fs::metadata(&path).ok().map(|m| (m.ino(), m.len()));
    tail(path, out, poll, at)
}

async fn tail(
    path: PathBuf,
    out: mpsc::Sender<Outgoing>,
    poll: Duration,
    mut at: Option<(u64, u64)>,
) {
    let mut partial: Vec<u8> = vec![];
    let mut skipping = false;
    let mut tick = tokio::time::interval(poll);
    loop {
        tick.tick().await;
        let Ok(mut f) = std::fs::File::open(&path) else {
            continue;
        };
        let Ok(meta) = f.metadata() else { continue };
        let offset = match at {
            Some((ino, off)) if ino == meta.ino() && off <= meta.len() => off,
            _ => {
                partial.clear();
                skipping = false;
                0
            }
        };
        if meta.len() == offset {
            at = Some((meta.ino(), offset));
            continue;
        }
        let mut buf = vec![];
        let read = f
            .seek(SeekFrom::Start(offset))
            .and_then(|_| (&mut f).take(MAX_LINE as u64 * 4).read_to_end(&mut buf));
        let Ok(n) = read else { continue };
        at = Some((meta.ino(), offset + n as u64));
        for chunk in buf.split_inclusive(|b| *b == b'\n') {
            if !chunk.ends_with(b"\n") {
                if !skipping {
                    partial.extend_from_slice(chunk);
                }
                if partial.len() > MAX_LINE {
                    tracing::warn!("{}: a line over {MAX_LINE} bytes: skipped", path.display());
                    partial.clear();
                    skipping = true;
                }
                continue;
            }
            if skipping {
                skipping = false;
                continue;
            }
            partial.extend_from_slice(&chunk[..chunk.len() - 1]);
            let line = std::mem::take(&mut partial);
            if line.len() > MAX_LINE {
                tracing::warn!("{}: a line over {MAX_LINE} bytes: skipped", path.display());
                continue;
            }
            match service_event(&line) {
                Ok(Some((tag, data))) => send(&out, tag, data),
                Ok(None) => {}
                Err(e) => tracing::warn!("{}: {e}", path.display()),
            }
        }
    }
}

/// One line of the init's file as a relative tag and data: its tag
/// `cairn/service/NAME/STATE` becomes `service/NAME/STATE`, the rest of the
/// object is the data, with `name` and `state` added.
pub fn service_event(line: &[u8]) -> Result<Option<Outgoing>, String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let v: J = serde_json::from_slice(line).map_err(|e| format!("not a JSON line: {e}"))?;
    let J::Object(mut obj) = v else {
        return Err("a line is not a JSON object".into());
    };
    let Some(J::String(tag)) = obj.remove("tag") else {
        return Err("a line without a `tag`".into());
    };
    let rest = tag
        .strip_prefix("cairn/service/")
        .ok_or_else(|| format!("tag `{tag}` is not cairn/service/NAME/STATE"))?;
    let (name, state) = rest
        .rsplit_once('/')
        .ok_or_else(|| format!("tag `{tag}` is not cairn/service/NAME/STATE"))?;
    let mut data = Map::new();
    data.insert("name".into(), J::String(name.to_string()));
    data.insert("state".into(), J::String(state.to_string()));
    data.extend(obj);
    Ok(Some((format!("service/{rest}"), J::Object(data))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_line_becomes_a_relative_tag_with_its_data() {
        let (tag, data) =
            service_event(br#"{"tag":"cairn/service/nginx/stopped","time":1,"pid":42}"#)
                .unwrap()
                .unwrap();
        assert_eq!(tag, "service/nginx/stopped");
        assert_eq!(
            data,
            json!({"name": "nginx", "state": "stopped", "time": 1, "pid": 42})
        );
        assert!(service_event(b"  ").unwrap().is_none());
        assert!(service_event(b"{").is_err());
        assert!(service_event(br#"{"tag":"cairn/agent/x/connected"}"#).is_err());
        assert!(service_event(br#"{"tag":"cairn/service/x"}"#).is_err());
        assert!(service_event(br#"[1]"#).is_err());
    }

    async fn next(rx: &mut mpsc::Receiver<Outgoing>) -> Outgoing {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("an event within 10 s")
            .expect("the channel is open")
    }

    #[tokio::test]
    async fn an_edit_is_reported_once_and_a_jobs_own_write_never() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("motd");
        std::fs::write(&file, "managed\n").unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let (watch, run) = Watch::start(tx, Duration::from_millis(50));
        let run = tokio::spawn(run);
        let paths = [file.display().to_string()];
        watch.busy().finish(&paths, "j1", Some("motd.sls"));
        assert_eq!(watch.paths(), std::slice::from_ref(&file));
        // Someone edits it: one event, after the burst of writes, even
        // with a reader polling the file all along.
        let reader = {
            let file = file.clone();
            tokio::spawn(async move {
                loop {
                    let _ = std::fs::read(&file);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        for i in 0..5 {
            std::fs::write(&file, format!("edited {i}\n")).unwrap();
        }
        let (tag, data) = next(&mut rx).await;
        reader.abort();
        assert_eq!(tag, "file/changed");
        assert_eq!(data["path"], file.display().to_string());
        assert_eq!(data["job"], "j1");
        assert_eq!(data["state"], "motd.sls");
        // A job puts it back: not reported. Then removed by hand: reported.
        let busy = watch.busy();
        std::fs::write(&file, "managed\n").unwrap();
        busy.finish(&paths, "j2", Some("motd.sls"));
        std::fs::remove_file(&file).unwrap();
        let (_, data) = next(&mut rx).await;
        assert_eq!(data["now"], "absent");
        assert_eq!(data["job"], "j2");
        // The restore was never reported in between.
        assert!(rx.try_recv().is_err());
        run.abort();
    }

    #[tokio::test]
    async fn the_service_file_is_tailed_from_its_end_and_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "{\"tag\":\"cairn/service/old/stopped\"}\n").unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let tail = tokio::spawn(tail_services(path.clone(), tx, Duration::from_millis(20)));
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"tag\":\"cairn/service/nginx/stop").unwrap();
        f.flush().unwrap();
        // Most often the tail reads the half line alone first.
        tokio::time::sleep(Duration::from_millis(60)).await;
        f.write_all(b"ped\",\"pid\":7}\nnot json\n{\"tag\":\"cairn/service/db/started\"}\n")
            .unwrap();
        let (tag, data) = next(&mut rx).await;
        assert_eq!(tag, "service/nginx/stopped");
        assert_eq!(data["pid"], 7);
        assert_eq!(next(&mut rx).await.0, "service/db/started");
        // Rotated: a new file is read from its start.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "{\"tag\":\"cairn/service/web/started\"}\n").unwrap();
        assert_eq!(next(&mut rx).await.0, "service/web/started");
        tail.abort();
    }
}
