#!/usr/bin/env python3
"""Benchmark the main job: `cairn up examples/webapp --yes` from a stopped
daemon to the first HTTP 200 through the load balancer.

Each run uses a fresh local cloud in a temporary directory (its own DNS port
and address pool), so `up` starts the daemon itself, and stops it at the end.
Runs with the database (its initdb included) and with `--exclude db`.

Usage: bench/webapp.py [RUNS]   (default: 5)
Environment: CAIRN_BIN (default target/release/cairn), BENCH_POOL (default 203),
BENCH_ISOLATION (`process`, the default here, or `runc`: the servers as hosts).
Prints, per variant, the wall time of `up` and the time from its start to
the first 200 (polled every 10 ms once `up` has returned): min, median, max.
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from up import CAIRN, ROOT, cloud_env  # noqa: E402

WEBAPP = os.path.join(ROOT, "examples", "webapp")


def first_200(url, started, limit=30.0):
    """Seconds from `started` to the first 200 from `url` (bounded)."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - started
        except OSError:
            pass
        time.sleep(0.01)
    raise SystemExit(f"{url} never answered 200 within {limit} s")


def run(extra, pool):
    d = tempfile.mkdtemp(prefix="cairn-bench-webapp-")
    env = cloud_env(d, pool)

    def cairn(*args):
        p = subprocess.run([CAIRN, *args, "-o", "json"], capture_output=True, text=True,
                           env=env, timeout=600)
        if p.returncode != 0:
            raise SystemExit(f"cairn {' '.join(args)} failed:\n{p.stderr[-2000:]}")
        return json.loads(p.stdout) if p.stdout.strip() else None

    try:
        t0 = time.perf_counter()
        up = cairn("up", WEBAPP, "--yes", *extra)
        t_up = time.perf_counter() - t0
        assert up["result"] == "applied", up["result"]
        lb = cairn("show", WEBAPP, "--address", "lb")["attributes"]
        t_200 = first_200(f"http://{lb['address']}:{lb['port']}/", t0)
        cairn("destroy", WEBAPP, "--yes", "--allow-data-loss")
        return t_up, t_200
    finally:
        subprocess.run([CAIRN, "local", "stop", "-o", "none"], env=env, capture_output=True,
                       timeout=120)
        shutil.rmtree(d, ignore_errors=True)


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    if not os.path.exists(CAIRN):
        sys.exit(f"{CAIRN} missing: run `cargo build --release -p cairn` first")
    pool = int(os.environ.get("BENCH_POOL", "203"))
    print(f"{'variant':<16} {'runs':>4} {'up (min/median/max)':>24} {'first 200 (min/median/max)':>30}")
    for name, extra in [("with database", []), ("--exclude db", ["--exclude", "db"])]:
        ups, firsts = [], []
        for _ in range(runs):
            t_up, t_200 = run(extra, pool)
            ups.append(t_up)
            firsts.append(t_200)
        fmt = lambda xs: f"{min(xs):.2f}/{statistics.median(xs):.2f}/{max(xs):.2f} s"
        print(f"{name:<16} {runs:>4} {fmt(ups):>24} {fmt(firsts):>30}", flush=True)


if __name__ == "__main__":
    main()
