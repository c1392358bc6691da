#!/usr/bin/env python3
"""Benchmark `cairn up` and `cairn destroy` of N DNS records on the local
target: the cost of the local cloud's own record per change, which must
not grow with the cloud (10,000 records: under 20 s each way).

Each run uses a fresh local cloud in a temporary directory (its own DNS
port and address pool, see up.py) and stops its daemon at the end.

Usage: bench/records.py [N ...]   (default: 1000 10000)
Environment: CAIRN_BIN (default target/release/cairn), BENCH_POOL (default 202).
Prints wall times of `up`, a no-op `up` and `destroy`, records per second,
and the daemon's peak RSS.
"""
import os, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from up import CAIRN, cloud_env, peak_rss_mb, stop_cloud, timed_cairn  # noqa: E402

TEMPLATE = """cairn: 1
parameters:
  count: {type: int, min: 1, max: 100000, default: 1000}
resources:
  zone: {type: dns_zone, properties: {name: bench.test}}
  rec:
    type: dns_record
    count: "{{ params.count }}"
    properties:
      zone: "{{ zone.id }}"
      name: "host-{{ index }}"
      type: A
      ttl: 60
      values: ["10.0.{{ index // 250 }}.{{ index % 250 + 1 }}"]
"""


def bench(n, pool):
    d = tempfile.mkdtemp(prefix=f"cairn-bench-records-{n}-")
    env = cloud_env(d, pool)
    tdir = os.path.join(d, "t")
    os.makedirs(tdir)
    with open(os.path.join(tdir, "cairn.yaml"), "w") as f:
        f.write(TEMPLATE)

    cairn = timed_cairn(env, timeout=900)

    try:
        _, started = cairn("local", "start")
        t_up, up = cairn("up", tdir, "--yes", "-p", f"count={n}")
        assert up["counts"]["created"] == n + 1, up["counts"]
        t_noop, noop = cairn("up", tdir, "--yes", "-p", f"count={n}")
        assert noop["result"] == "no_changes", noop["result"]
        rss = peak_rss_mb(started["pid"])
        t_destroy, gone = cairn("destroy", tdir, "--yes")
        assert gone["counts"]["deleted"] == n + 1, gone["counts"]
        print(f"{n:>7} {t_up:>8.2f}s {n / t_up:>8.0f}/s {t_noop:>8.2f}s {t_destroy:>8.2f}s "
              f"{n / t_destroy:>8.0f}/s {rss:>7.0f}MB", flush=True)
    finally:
        stop_cloud(env, d)


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 10000]
    if not os.path.exists(CAIRN):
        sys.exit(f"{CAIRN} missing: run `cargo build --release -p cairn` first")
    pool = int(os.environ.get("BENCH_POOL", "202"))
    print(f"{'N':>7} {'up':>9} {'records':>9} {'no-op up':>9} {'destroy':>9} {'records':>9} {'daemon RSS':>10}")
    for n in sizes:
        bench(n, pool)


if __name__ == "__main__":
    main()
