#!/usr/bin/env python3
"""Benchmark `cairn up` and `cairn destroy` of N servers on the local target.

The template is a network, a subnet, `count` servers (each runs
`cairn util http-echo`, a real process on its own loopback address) and a
load balancer over all of them. Each run uses a fresh local cloud in a
temporary directory, its own DNS port and address pool, and stops its
daemon at the end.

Usage: bench/up.py [N ...]   (default: 200)
Environment: CAIRN_BIN (default target/release/cairn), BENCH_POOL (default 201).
Prints wall times of `local start`, `up`, a no-op `up`, `destroy`, and the
daemon's peak RSS.
"""
import json, os, shutil, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAIRN = os.environ.get("CAIRN_BIN", os.path.join(ROOT, "target", "release", "cairn"))

TEMPLATE = """cairn: 1
parameters:
  count: {type: int, min: 1, max: 5000, default: 200}
resources:
  net: {type: network, properties: {cidr: 10.50.0.0/16}}
  sub: {type: subnet, properties: {network: "{{ net.id }}", cidr: 10.50.0.0/20}}
  web:
    type: server
    count: "{{ params.count }}"
    properties:
      image: debian-12
      subnet: "{{ sub.id }}"
      user_data: "exec cairn util http-echo --port 8080 --text {{ index }}"
  lb:
    type: load_balancer
    properties:
      listen: {protocol: http, port: 80}
      health_check: {path: /, interval: 5s, timeout: 1s}
      backends: "{{ web | map(attribute='address') | list }}"
      backend_port: 8080
"""


def free_port():
    """A port free on 127.0.0.1 for both UDP and TCP (DNS serves both),
    below Linux's ephemeral range, which the benchmark's own connections
    from 127.0.0.1 crowd."""
    import random
    while True:
        port = random.randrange(20000, 32000)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, \
                 socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                u.bind(("127.0.0.1", port))
                t.bind(("127.0.0.1", port))
                return port
        except OSError:
            continue


def peak_rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def cloud_env(d, pool):
    """The environment of a fresh local cloud and state under `d`, with its
    own DNS port and address pool, and none of the caller's CAIRN_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env.update({
        "CAIRN_LOCAL_DIR": os.path.join(d, "local"),
        "CAIRN_STATE": os.path.join(d, "state.db"),
        "CAIRN_KEY_FILE": os.path.join(d, "key"),
        "CAIRN_LOCAL_DNS": f"127.0.0.1:{free_port()}",
        "CAIRN_LOCAL_POOL": str(pool),
        "NO_COLOR": "1",
    })
    return env


def timed_cairn(env, timeout=600):
    """`cairn ARGS -o json` in the cloud of `env`: (seconds, parsed output);
    a failure ends the benchmark with cairn's own words."""
    def cairn(*args):
        t0 = time.perf_counter()
        p = subprocess.run([CAIRN, *args, "-o", "json"], capture_output=True, text=True,
                           env=env, timeout=timeout)
        dt = time.perf_counter() - t0
        if p.returncode != 0:
            errors = [line.strip() for line in p.stdout.splitlines() if '"error"' in line]
            raise SystemExit(f"cairn {' '.join(args)} failed:\n"
                             + "\n".join(errors[:5] or p.stderr.splitlines()[-10:]))
        return dt, json.loads(p.stdout) if p.stdout.strip() else None
    return cairn


def stop_cloud(env, d):
    """Stops the benchmark's daemon and removes its directory."""
    subprocess.run([CAIRN, "local", "stop", "-o", "none"], env=env, capture_output=True,
                   timeout=120)
    shutil.rmtree(d, ignore_errors=True)


def up_noop_destroy(prefix, template, n, pool, made, timeout=600):
    """A fresh cloud (its own directory, DNS port and address pool):
    `local start`, `up -p count=N`, a no-op `up`, `destroy`, each timed,
    and the daemon's peak RSS. `made` is how many resources `up` must
    create and `destroy` delete. The daemon is stopped at the end."""
    d = tempfile.mkdtemp(prefix=prefix)
    env = cloud_env(d, pool)
    tdir = os.path.join(d, "t")
    os.makedirs(tdir)
    with open(os.path.join(tdir, "cairn.yaml"), "w") as f:
        f.write(template)
    cairn = timed_cairn(env, timeout)
    try:
        t_start, started = cairn("local", "start")
        t_up, up = cairn("up", tdir, "--yes", "-p", f"count={n}")
        assert up["counts"]["created"] == made, up["counts"]
        t_noop, noop = cairn("up", tdir, "--yes", "-p", f"count={n}")
        assert noop["result"] == "no_changes", noop["result"]
        rss = peak_rss_mb(started["pid"])
        t_destroy, gone = cairn("destroy", tdir, "--yes")
        assert gone["counts"]["deleted"] == made, gone["counts"]
        return {"start": t_start, "up": t_up, "noop": t_noop, "destroy": t_destroy, "rss": rss}
    finally:
        stop_cloud(env, d)


def bench(n, pool):
    t = up_noop_destroy(f"cairn-bench-up-{n}-", TEMPLATE, n, pool, made=n + 3)
    print(f"{n:>6} {t['start']:>7.2f}s {t['up']:>7.2f}s {n / t['up']:>8.0f}/s {t['noop']:>8.2f}s "
          f"{t['destroy']:>8.2f}s {t['rss']:>7.0f}MB", flush=True)


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [200]
    if not os.path.exists(CAIRN):
        sys.exit(f"{CAIRN} missing: run `cargo build --release -p cairn` first")
    pool = int(os.environ.get("BENCH_POOL", "201"))
    print(f"{'N':>6} {'start':>8} {'up':>8} {'servers':>9} {'no-op up':>9} {'destroy':>9} {'daemon RSS':>10}")
    for n in sizes:
        bench(n, pool)


if __name__ == "__main__":
    main()
