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
import os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from up import CAIRN, up_noop_destroy  # noqa: E402

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
    t = up_noop_destroy(f"cairn-bench-records-{n}-", TEMPLATE, n, pool, made=n + 1, timeout=900)
    print(f"{n:>7} {t['up']:>8.2f}s {n / t['up']:>8.0f}/s {t['noop']:>8.2f}s {t['destroy']:>8.2f}s "
          f"{n / t['destroy']:>8.0f}/s {t['rss']:>7.0f}MB", flush=True)


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
