//! Engine figures on the real state stores, SQLite and PostgreSQL in the
//! same run: apply N resources through a zero-latency fake provider
//! (resources per second), then what a no-op `plan --no-refresh` does with
//! the state (open it, read N resources, plan), and the peak RSS (of the
//! process so far: the stores run one after the other).
//!
//! `cargo bench -p cairn-state --bench engine [-- N ...] [--store sqlite|postgres]`
//! (default 1000 10000, both stores). PostgreSQL is a throwaway cluster on
//! loopback (cairn-test-support's `pg_cluster`, `fsync` on), stopped at the end.

use std::sync::Arc;
use std::time::Instant;

use cairn_engine::apply::{ApplyOptions, RunContext, Silent, apply};
use cairn_engine::evaluate::evaluate;
use cairn_engine::plan::{PlanOptions, plan_with};
use cairn_engine::store::StateStore;
use cairn_engine::testing::FakeProvider;
use cairn_state::{KeySource, PgStore, PgUrl, SqliteStore};
use cairn_template::{LoadOptions, load};
use cairn_test_support::pg_cluster::Cluster;

fn template(n: usize) -> String {
    let subnets = (n / 100).max(1);
    let servers = n - subnets - 1;
    format!(
        r#"cairn: 1
resources:
  net:
    type: network
    properties: {{cidr: 10.0.0.0/8}}
  subnet:
    type: subnet
    count: {subnets}
    properties: {{network: "{{{{ net.id }}}}", cidr: "{{{{ cidr_subnet('10.0.0.0/8', 16, index) }}}}"}}
  web:
    type: server
    count: {servers}
    properties:
      name: "web-{{{{ index }}}}"
      image: debian-12
      subnet: "{{{{ subnet[index % {subnets}].id }}}}"
"#
    )
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Where the bench keeps state: a SQLite file (`synchronous=FULL`, as
/// cairn runs it), or a database of a throwaway PostgreSQL cluster on
/// loopback with `fsync` on (the test clusters run without it).
enum Place {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Place {
    fn name(&self) -> &'static str {
        match self {
            Place::Sqlite(_) => "sqlite",
            Place::Postgres(_) => "postgres",
        }
    }

    /// The store, and the SQLite one again to read its commit count.
    fn open(&self) -> (Arc<dyn StateStore>, Option<Arc<SqliteStore>>) {
        match self {
            Place::Sqlite(path) => {
                let s = Arc::new(SqliteStore::open(path, KEY).unwrap());
                (s.clone(), Some(s))
            }
            Place::Postgres(url) => (
                Arc::new(PgStore::open(&PgUrl::parse(url).unwrap(), KEY).unwrap()),
                None,
            ),
        }
    }
}

const KEY: KeySource = KeySource::Bytes([7; 32]);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![1000, 10_000]
    } else {
        sizes
    };
    // `--store sqlite` or `--store postgres`; both by default.
    let only = args
        .iter()
        .position(|a| a == "--store")
        .and_then(|i| args.get(i + 1).cloned());
    let want = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let cluster =
        want("postgres").then(|| Cluster::start_with(&["fsync=on", "full_page_writes=on"]));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{:>7} {:>9} {:>10} {:>12} {:>9} {:>10} {:>14} {:>10}",
        "N", "store", "apply", "resources/s", "commits", "open", "no-op plan", "peak RSS"
    );
    for n in sizes {
        let dir =
            std::env::temp_dir().join(format!("cairn-bench-engine-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cairn.yaml"), template(n)).unwrap();
        let mut places = Vec::new();
        if want("sqlite") {
            places.push(Place::Sqlite(dir.join("state.db")));
        }
        if let Some(c) = &cluster {
            let db = format!("bench_{n}");
            c.psql("postgres", &format!("CREATE DATABASE {db}"));
            places.push(Place::Postgres(c.url(&db)));
        }
        let loaded = load(&LoadOptions::new(&dir)).unwrap();
        for place in places {
            let (store, sqlite) = place.open();
            let cx = RunContext {
                deployment: "bench".into(),
                run_id: "bench-1".into(),
                provider: Arc::new(FakeProvider::new()),
                store: store.clone(),
                observer: Arc::new(Silent),
                clock: Arc::new(|| 1_700_000_000),
                options: ApplyOptions::default(),
                fence: Default::default(),
            };
            let (plan, _) = plan_with(
                &mut |k| evaluate(&loaded, k),
                &[],
                0,
                &PlanOptions::default(),
            )
            .unwrap();
            let t = Instant::now();
            let report = rt.block_on(apply(&cx, &plan, &[], &mut |k| evaluate(&loaded, k)));
            let apply_s = t.elapsed().as_secs_f64();
            assert!(
                report.ok && report.counts.created == n,
                "{:?}",
                report.counts
            );
            // Each create writes the journal intent, then the record with
            // the outcome; SQLite commits writes made at once together.
            let per_s = n as f64 / apply_s;
            let commits = sqlite.map_or("-".to_string(), |s| s.group_commits().to_string());
            drop(cx);
            drop(store);

            // What `cairn plan --no-refresh` does with the state: open it
            // (connect, schema and key checks), read it, plan.
            let t = Instant::now();
            let (store, _) = place.open();
            let open_s = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let prior = store.resources("bench").unwrap();
            let serial = store.serial("bench").unwrap();
            let (again, _) = plan_with(
                &mut |k| evaluate(&loaded, k),
                &prior,
                serial,
                &PlanOptions::default(),
            )
            .unwrap();
            let plan_s = t.elapsed().as_secs_f64();
            assert!(!again.has_changes());
            println!(
                "{n:>7} {:>9} {:>9.2}s {:>10.0}/s {commits:>9} {:>8.0}ms {:>12.0}ms {:>8.0}MB",
                place.name(),
                apply_s,
                per_s,
                open_s * 1000.0,
                plan_s * 1000.0,
                peak_rss_mb()
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    // The cluster stops (and its directory goes) when dropped.
    drop(cluster);
}
