//! Engine figures on the real state store: apply N resources through a
//! zero-latency fake provider (state writes per second), then a no-op plan
//! without refresh over N resources in state, and the peak RSS.
//!
//! `cargo bench -p cairn-state --bench engine [-- N ...]` (default 1000 10000).

use std::sync::Arc;
use std::time::Instant;

use cairn_engine::apply::{ApplyOptions, RunContext, Silent, apply};
use cairn_engine::evaluate::evaluate;
use cairn_engine::plan::{PlanOptions, plan_with};
use cairn_engine::store::StateStore;
use cairn_engine::testing::FakeProvider;
use cairn_state::{KeySource, SqliteStore};
use cairn_template::{LoadOptions, load};

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

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1000, 10_000]
    } else {
        sizes
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{:>7} {:>10} {:>12} {:>14} {:>10}",
        "N", "apply", "writes/s", "no-op plan", "peak RSS"
    );
    for n in sizes {
        let dir =
            std::env::temp_dir().join(format!("cairn-bench-engine-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cairn.yaml"), template(n)).unwrap();
        let store =
            Arc::new(SqliteStore::open(&dir.join("state.db"), KeySource::Bytes([7; 32])).unwrap());
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
        let loaded = load(&LoadOptions::new(&dir)).unwrap();
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
        // Each create writes the journal intent, the record and the outcome.
        let writes = n as f64 / apply_s;

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
            "{n:>7} {:>9.2}s {:>10.0}/s {:>12.0}ms {:>8.0}MB",
            apply_s,
            writes,
            plan_s * 1000.0,
            peak_rss_mb()
        );
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
