#!/usr/bin/env python3
"""Two builds of cairn's load balancer, side by side: each in its own local
cloud with its own two backends (bench/lb_peers.py's template), both up at
once, then short wrk runs (2 threads, 64 connections) alternating between
them, ROUNDS times per mode. Printed per run and as medians: requests/s,
the balancer's CPU per request, user and system apart (from /proc, all the
daemon's threads), and wrk's p99 latency. Alternating runs in the same minutes, and the medians,
keep a busy machine's swings out of the comparison as far as they can be;
CPU per request moves much less with the load than requests/s.

Usage: bench/lb_ab.py BIN_A BIN_B [ROUNDS] [SECONDS]   (defaults 8 rounds, 3 s)
BENCH_MODES=close (or keep-alive) runs one mode only.
Everything listens on loopback; both clouds are destroyed and stopped at
the end.
"""
import json, os, shutil, statistics, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from up import cloud_env  # noqa: E402
from lb_peers import TEMPLATE, cpu_times, listener_pid, need, wait_port, wrk  # noqa: E402


class Side:
    def __init__(self, name, binary, pool):
        self.name, self.binary = name, binary
        self.dir = tempfile.mkdtemp(prefix=f"cairn-bench-ab-{name}-")
        self.env = cloud_env(self.dir, pool)
        self.tdir = os.path.join(self.dir, "t")
        os.makedirs(self.tdir)
        with open(os.path.join(self.tdir, "cairn.yaml"), "w") as f:
            f.write(TEMPLATE)

    def cairn(self, *args, check=True):
        p = subprocess.run([self.binary, *args], capture_output=True, text=True, env=self.env, timeout=300)
        if check and p.returncode != 0:
            raise SystemExit(f"{self.name}: cairn {' '.join(args)} failed:\n{p.stderr[-2000:]}")
        return p.stdout

    def up(self):
        self.cairn("up", self.tdir, "--yes", "-o", "none")
        lb = json.loads(self.cairn("show", self.tdir, "--address", "lb", "-o", "json"))["attributes"]
        self.url = f"http://{lb['address']}:{lb['port']}/"
        wait_port(lb["address"], lb["port"])
        self.pid = listener_pid(lb["address"], lb["port"])

    def run(self, seconds, close):
        before = cpu_times([self.pid])
        rps, _, p99, errors = wrk(self.url, seconds, close)
        after = cpu_times([self.pid])
        n = max(rps * seconds, 1)
        return rps, (after[0] - before[0]) / n * 1e6, (after[1] - before[1]) / n * 1e6, p99, errors

    def down(self):
        self.cairn("destroy", self.tdir, "--yes", "-o", "none", check=False)
        self.cairn("local", "stop", "-o", "none", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    seconds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    need("wrk")
    sides = [Side("A", sys.argv[1], 206), Side("B", sys.argv[2], 207)]
    try:
        for s in sides:
            s.up()
        # One uncounted second in each mode (see lb_peers.warm_up): a
        # side's first run pays for its backends' first connections.
        for close in (False, True):
            for s in sides:
                wrk(s.url, 1, close)
        print(f"A: {sides[0].binary}\nB: {sides[1].binary}\nload average at start: {os.getloadavg()[0]:.1f}")
        print(f"{'mode':<11} {'run':>3} {'side':<4} {'req/s':>8} {'user µs/req':>12} {'sys µs/req':>11} {'p99 ms':>7} {'errors':>6}")
        modes = os.environ.get("BENCH_MODES", "keep-alive,close").split(",")
        for close in (False, True):
            mode = "close" if close else "keep-alive"
            if mode not in modes:
                continue
            got = {s.name: [] for s in sides}
            for i in range(rounds):
                # Who goes first alternates too.
                for s in (sides if i % 2 == 0 else sides[::-1]):
                    r = s.run(seconds, close)
                    got[s.name].append(r)
                    print(f"{mode:<11} {i + 1:>3} {s.name:<4} {r[0]:>8.0f} {r[1]:>12.2f} {r[2]:>11.2f} {r[3]:>7.2f} {r[4]:>6}", flush=True)
            med = {k: [statistics.median(x[j] for x in v) for j in range(4)] for k, v in got.items()}
            a, b = med["A"], med["B"]
            print(f"{mode:<11} medians: A {a[0]:.0f} req/s, {a[1]:.2f} + {a[2]:.2f} µs/req, p99 {a[3]:.2f} ms; "
                  f"B {b[0]:.0f} req/s, {b[1]:.2f} + {b[2]:.2f} µs/req, p99 {b[3]:.2f} ms; "
                  f"B/A req/s {b[0] / a[0]:.3f}, CPU/req {(b[1] + b[2]) / (a[1] + a[2]):.3f}, "
                  f"user {b[1] / a[1]:.3f}, p99 {b[3] / a[3]:.3f} (load average now {os.getloadavg()[0]:.1f})",
                  flush=True)
    finally:
        for s in sides:
            s.down()


if __name__ == "__main__":
    main()
