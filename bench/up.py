#!/usr/bin/env python3
"""Benchmark `cairn up` and `cairn destroy` of N servers on the local target.

The template is a network, a subnet, `count` servers (each runs
`cairn util http-echo`, a real process on its own loopback address) and a
load balancer over all of them. Each run uses a fresh local cloud in a
temporary directory, its own DNS port and address pool, and stops its
daemon at the end.

With `--runc`, the cloud runs its servers as hosts (`runc` isolation,
`image: host`): each server is a container with its own namespaces on a
bridge, behind nftables. That needs root, runc, nft and ip
(scripts/install-deps), and a /16 the machine has no route into (the
first free one of 10.240.0.0/16 to 10.249.0.0/16). It also prints each
server's memory once all are up: the RSS and PSS (shared pages divided
among their sharers, so the cairn binary's pages mapped by every server
count once in total) of its processes (its init and `http-echo`).

Usage: bench/up.py [--runc] [N ...]   (default: 200)
Environment: CAIRN_BIN (default target/release/cairn), BENCH_POOL (default 201).
Servers are processes; with `--runc` they are hosts (root needed).
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
    own DNS port and address pool, and none of the caller's CAIRN_ settings.
    Its servers are processes unless BENCH_ISOLATION (or the caller, after)
    says `runc`: a new cloud would otherwise choose runc where it can."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
    env.update({
        "CAIRN_LOCAL_ISOLATION": os.environ.get("BENCH_ISOLATION", "process"),
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


def up_noop_destroy(prefix, template, n, pool, made, timeout=600, extra_env=None, measure=None):
    """A fresh cloud (its own directory, DNS port and address pool):
    `local start`, `up -p count=N`, a no-op `up`, `destroy`, each timed,
    and the daemon's peak RSS. `made` is how many resources `up` must
    create and `destroy` delete. The daemon is stopped at the end."""
    d = tempfile.mkdtemp(prefix=prefix)
    env = cloud_env(d, pool)
    env.update(extra_env or {})
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
        measured = measure(env) if measure else {}
        t_destroy, gone = cairn("destroy", tdir, "--yes")
        assert gone["counts"]["deleted"] == made, gone["counts"]
        return {"start": t_start, "up": t_up, "noop": t_noop, "destroy": t_destroy, "rss": rss,
                **measured}
    finally:
        stop_cloud(env, d)


def bench(n, pool):
    t = up_noop_destroy(f"cairn-bench-up-{n}-", TEMPLATE, n, pool, made=n + 3)
    print(f"{n:>6} {t['start']:>7.2f}s {t['up']:>7.2f}s {n / t['up']:>8.0f}/s {t['noop']:>8.2f}s "
          f"{t['destroy']:>8.2f}s {t['rss']:>7.0f}MB", flush=True)


RUNC_TEMPLATE = """cairn: 1
parameters:
  count: {type: int, min: 1, max: 4000, default: 200}
resources:
  net: {type: network, properties: {cidr: CIDR}}
  sub: {type: subnet, properties: {network: "{{ net.id }}", cidr: CIDR}}
  fw:
    type: firewall
    properties:
      network: "{{ net.id }}"
      ingress: [{protocol: tcp, port: 8080, from: 0.0.0.0/0}]
  web:
    type: server
    count: "{{ params.count }}"
    properties:
      image: host
      subnet: "{{ sub.id }}"
      firewalls: ["{{ fw.id }}"]
      user_data: "#!/bin/sh\\nexec cairn util http-echo --port 8080 --text {{ index }}"
  lb:
    type: load_balancer
    properties:
      listen: {protocol: http, port: 80}
      health_check: {path: /, interval: 5s, timeout: 1s}
      backends: "{{ web | map(attribute='address') | list }}"
      backend_port: 8080
"""


def free_runc_cidr():
    """A /16 of 10.240-249 that no route of the machine overlaps."""
    import ipaddress
    out = subprocess.run(["ip", "-j", "-4", "route", "show", "table", "all"],
                         capture_output=True, text=True, check=True).stdout
    routes = []
    for r in json.loads(out):
        dst = r.get("dst", "")
        if dst in ("default", ""):
            continue
        try:
            routes.append(ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False))
        except ValueError:
            pass
    for x in range(240, 250):
        net = ipaddress.ip_network(f"10.{x}.0.0/16")
        if not any(net.overlaps(r) for r in routes):
            return str(net)
    sys.exit("no free 10.240-249.0.0/16 on this machine (see `ip route`)")


def children(pid, by_parent):
    out = [pid]
    for c in by_parent.get(pid, []):
        out.extend(children(c, by_parent))
    return out


def kb(pid, path, key):
    try:
        with open(f"/proc/{pid}/{path}") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def server_memory(env):
    """Each runc server's processes (its init's tree), their RSS and PSS."""
    netns_prefix = None
    listed = subprocess.run(["runc", "list", "-f", "json"], capture_output=True, text=True,
                            check=True).stdout
    # The benchmark's cloud: the containers whose bundle is under its directory.
    mine = [c for c in json.loads(listed or "[]")
            if c.get("bundle", "").startswith(env["CAIRN_LOCAL_DIR"]) and c.get("pid")]
    by_parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                by_parent.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                pass
    rss, pss, procs = [], [], []
    for c in mine:
        tree = children(c["pid"], by_parent)
        procs.append(len(tree))
        rss.append(sum(kb(p, "status", "VmRSS") for p in tree) / 1024)
        pss.append(sum(kb(p, "smaps_rollup", "Pss") for p in tree) / 1024)
    if not mine:
        return {"servers": 0}
    return {"servers": len(mine), "procs": sum(procs) / len(mine),
            "server_rss": sum(rss) / len(mine), "server_pss": sum(pss) / len(mine)}


def bench_runc(n, pool):
    cidr = free_runc_cidr()
    template = RUNC_TEMPLATE.replace("CIDR", cidr)
    t = up_noop_destroy(f"cairn-bench-runc-{n}-", template, n, pool, made=n + 4,
                        extra_env={"CAIRN_LOCAL_ISOLATION": "runc"}, measure=server_memory)
    print(f"{n:>6} {t['start']:>7.2f}s {t['up']:>7.2f}s {n / t['up']:>8.0f}/s {t['noop']:>8.2f}s "
          f"{t['destroy']:>8.2f}s {t['rss']:>7.0f}MB   {t['servers']} servers, "
          f"{t.get('procs', 0):.1f} processes, RSS {t.get('server_rss', 0):.1f} MB, "
          f"PSS {t.get('server_pss', 0):.1f} MB each", flush=True)


def main():
    args = sys.argv[1:]
    runc = "--runc" in args
    sizes = [int(a) for a in args if a != "--runc"] or [200]
    if not os.path.exists(CAIRN):
        sys.exit(f"{CAIRN} missing: run `cargo build --release -p cairn` first")
    if runc and os.geteuid() != 0:
        sys.exit("--runc needs root: servers as hosts are containers, bridges and nftables rules")
    pool = int(os.environ.get("BENCH_POOL", "201"))
    print(f"{'N':>6} {'start':>8} {'up':>8} {'servers':>9} {'no-op up':>9} {'destroy':>9} {'daemon RSS':>10}")
    for n in sizes:
        (bench_runc if runc else bench)(n, pool)


if __name__ == "__main__":
    main()
