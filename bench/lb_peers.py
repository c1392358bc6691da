#!/usr/bin/env python3
"""The local load balancer against nginx and HAProxy, same backends, same run.

A fresh local cloud gets two servers (`cairn util http-echo`, each a real
process on its own loopback address) behind a cairn load balancer at 3:1
weights; nginx and HAProxy (Debian's packages, installed here if missing)
are configured in front of the very same two backends, also at 3:1. wrk
(2 threads, 64 connections, 10 s each) then measures each front:
keep-alive, and with `Connection: close`. Printed per front: requests/s,
p50 and p99 latency, non-2xx/socket errors, and cairn's ratio to the better
peer, and the CPU time each front spent per request (user + system, from
/proc, all its processes and threads): on a machine shared with other work
that figure moves much less than requests/s. Then the weighted split of
400 sequential requests (300/100 expected), and last the failed requests
of each front while the second backend is killed under load (wrk on all
three fronts at once, so that each sees the same kill).

With BENCH_SYSCALLS=1 it then counts each front's system calls per
request (strace -c on all its processes and threads, during a 3 s wrk run
of each mode): what a front asks of the kernel for one request, a figure
that does not move with the machine's load. strace slows the fronts many
times over, so that run's requests/s mean nothing and are not printed.

Before any of it, each front gets one uncounted second of wrk in each
mode (BENCH_WARMUP=0: none), so that no front pays for going first.

With BENCH_ROUNDS=N each mode runs N rounds (each front once a round, the
order turning), then prints each front's medians and in how many rounds
cairn led the better peer on requests/s and on p99: one run's p99 moves
with whatever else the machine did in those seconds.

Usage: bench/lb_peers.py [SECONDS]    (default 10)
Environment: CAIRN_BIN (default target/release/cairn), BENCH_POOL (default 204),
BENCH_SYSCALLS (1: also count system calls per request), BENCH_ROUNDS (default 1),
BENCH_WARMUP (default 1).
Everything listens on loopback; every server it starts is stopped at the end.
"""
import json, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.parse, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from up import CAIRN, cloud_env, free_port  # noqa: E402

TEMPLATE = """cairn: 1
resources:
  net: {type: network, properties: {cidr: 10.60.0.0/16}}
  sub: {type: subnet, properties: {network: "{{ net.id }}", cidr: 10.60.1.0/24}}
  web:
    type: server
    count: 2
    properties:
      image: debian-12
      subnet: "{{ sub.id }}"
      user_data: "exec cairn util http-echo --port 8080 --text web{{ index }}"
  lb:
    type: load_balancer
    properties:
      listen: {protocol: http, port: 80}
      algorithm: weighted_round_robin
      health_check: {path: /, interval: 5s}
      backends:
        - {address: "{{ web[0].address }}", weight: 3}
        - {address: "{{ web[1].address }}", weight: 1}
      backend_port: 8080
"""


def need(*tools):
    missing = [t for t in tools if shutil.which(t) is None and not os.path.exists(f"/usr/sbin/{t}")]
    if missing:
        pkgs = {"wrk": "wrk", "nginx": "nginx", "haproxy": "haproxy", "strace": "strace"}
        subprocess.run(["apt-get", "install", "-y", "-q", *[pkgs[m] for m in missing]], check=True,
                       stdout=subprocess.DEVNULL)


def wait_port(host, port, limit=10):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {host}:{port}")


def nginx_conf(d, port, backends):
    servers = "\n".join(f"    server {b} weight={w};" for b, w in backends)
    conf = f"""worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/nginx.err warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  upstream app {{
{servers}
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return path


def haproxy_conf(d, port, backends):
    servers = "\n".join(f"  server s{i} {b} weight {w}" for i, (b, w) in enumerate(backends))
    conf = f"""global
  nbthread 2
  maxconn 8192
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend f
  bind 127.0.0.1:{port}
  default_backend app
backend app
  balance roundrobin
{servers}
"""
    path = os.path.join(d, "haproxy.cfg")
    with open(path, "w") as f:
        f.write(conf)
    return path


def cpu_times(pids):
    """(user, system) CPU time of `pids` (all their threads), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    user = system = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])
        system += int(fields[12])
    return user / ticks, system / ticks


def cpu_seconds(pids):
    """User + system CPU time of `pids` (all their threads), in seconds."""
    return sum(cpu_times(pids))


def family(pid):
    """`pid` and its children (nginx's workers)."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if ppid == pid:
                kids.append(int(entry))
    return [pid, *kids]


def listener_pid(host, port):
    """The process listening on host:port (cairn's daemon), from ss."""
    out = subprocess.run(["ss", "-Htlnp", f"src {host}:{port}"], capture_output=True, text=True).stdout
    m = re.search(r"pid=(\d+)", out)
    if not m:
        raise SystemExit(f"no process found listening on {host}:{port}")
    return int(m.group(1))


def wrk(url, seconds, close):
    args = ["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency", "--timeout", "5s", url]
    if close:
        args[1:1] = ["-H", "Connection: close"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60).stdout
    return parse_wrk(out)


def parse_wrk(out):
    """(requests/s, p50 ms, p99 ms, errors) from wrk's report."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        if not m:
            return float("nan")
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    return rps, pct(50), pct(99), errors


def kill_under_load(fronts, seconds, victim):
    """wrk on every front at once while backend process `victim` is killed a
    third of the way in: (requests, errors) per front."""
    runs = {name: subprocess.Popen(["wrk", "-t1", "-c16", f"-d{seconds}s", "--timeout", "5s", url],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            for name, url in fronts.items()}
    time.sleep(seconds / 3)
    os.kill(victim, signal.SIGKILL)
    results = {}
    for name, p in runs.items():
        out = p.communicate(timeout=seconds + 60)[0]
        m = re.search(r"(\d+) requests in", out)
        results[name] = (int(m.group(1)) if m else 0, parse_wrk(out)[3])
    return results


def threads(pids):
    """Every thread of `pids`: strace -p follows only the threads it names."""
    tids = []
    for pid in pids:
        try:
            tids += [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
    return tids


def syscalls_per_request(pids, url, close, seconds=3):
    """{syscall: calls per request} of `pids` over a wrk run, from strace -c."""
    out = os.path.join(tempfile.mkdtemp(prefix="cairn-bench-strace-"), "summary")
    args = ["strace", "-c", "-f", "-o", out]
    for tid in threads(pids):
        args += ["-p", str(tid)]
    tracer = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)  # strace attaches thread by thread
    wargs = ["wrk", "-t2", "-c64", f"-d{seconds}s", "--timeout", "5s", url]
    if close:
        wargs[1:1] = ["-H", "Connection: close"]
    report = subprocess.run(wargs, capture_output=True, text=True, timeout=seconds + 60).stdout
    tracer.send_signal(signal.SIGINT)
    tracer.wait(timeout=30)
    m = re.search(r"(\d+) requests in", report)
    requests = max(int(m.group(1)) if m else 0, 1)
    calls = {}
    with open(out) as f:
        for line in f:
            parts = line.split()
            # "% time seconds usecs/call calls [errors] syscall"
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                calls[parts[-1]] = int(parts[3])
    shutil.rmtree(os.path.dirname(out), ignore_errors=True)
    return {name: n / requests for name, n in calls.items()}


def print_syscalls(fronts, pids):
    for close in (False, True):
        mode = "close" if close else "keep-alive"
        per = {name: syscalls_per_request(pids[name], url, close) for name, url in fronts.items()}
        names = sorted({c for counts in per.values() for c in counts},
                       key=lambda c: -max(counts.get(c, 0) for counts in per.values()))
        print(f"system calls per request, {mode} (strace -c, wrk -t2 -c64, 3 s):")
        print(f"  {'call':<16}" + "".join(f"{name:>9}" for name in fronts))
        for c in names:
            if max(counts.get(c, 0) for counts in per.values()) >= 0.01:
                print(f"  {c:<16}" + "".join(f"{per[name].get(c, 0):>9.2f}" for name in fronts))
        print(f"  {'in all':<16}" + "".join(f"{sum(per[name].values()):>9.2f}" for name in fronts), flush=True)


def split(url, n=400):
    counts = {}
    for _ in range(n):
        with urllib.request.urlopen(url, timeout=5) as r:
            body = r.read().decode().strip()
        counts[body] = counts.get(body, 0) + 1
    return "/".join(f"{counts.get(k, 0)}" for k in sorted(counts))


def warm_up(fronts):
    """One uncounted second of wrk through each front, in both modes, so
    that no front pays for going first (cairn, first in every round,
    showed a keep-alive p99 of 4.6-6.4 ms in its first run and 1.6-1.9 ms
    in its next seven). BENCH_WARMUP=0: none."""
    if os.environ.get("BENCH_WARMUP", "1") == "0":
        return
    for close in (False, True):
        for url in fronts.values():
            wrk(url, 1, close)


def print_medians(mode, runs):
    """Each front's medians over the rounds, and in how many rounds cairn
    led the better peer on requests/s and on p99 (the same round's runs)."""
    med = {name: [statistics.median(x[j] for x in got) for j in range(5)] for name, got in runs.items()}
    for name, m in med.items():
        print(f"{mode:<11} {name:<8} median {m[0]:>9.0f} {m[1]:>8.2f} {m[2]:>8.2f} {'':>7} {m[4]:>11.1f}")
    n = len(runs["cairn"])
    rounds = list(zip(runs["cairn"], runs["nginx"], runs["haproxy"]))
    ahead = sum(c[0] >= max(x[0], h[0]) for c, x, h in rounds)
    tail = sum(c[2] <= min(x[2], h[2]) for c, x, h in rounds)
    ratios = [c[0] / max(x[0], h[0]) for c, x, h in rounds]
    p99s = [c[2] / min(x[2], h[2]) for c, x, h in rounds]
    print(f"{mode:<11} over {n} rounds: cairn / better peer req/s median {statistics.median(ratios):.2f}x, "
          f"ahead in {ahead}; cairn p99 / best peer's median {statistics.median(p99s):.2f}x, "
          f"no worse in {tail} (load average now {os.getloadavg()[0]:.1f})", flush=True)


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    if not os.path.exists(CAIRN):
        sys.exit(f"{CAIRN} missing: run `cargo build --release -p cairn` first")
    need("wrk", "nginx", "haproxy")
    d = tempfile.mkdtemp(prefix="cairn-bench-lb-")
    env = cloud_env(d, int(os.environ.get("BENCH_POOL", "204")))
    tdir = os.path.join(d, "t")
    os.makedirs(tdir)
    with open(os.path.join(tdir, "cairn.yaml"), "w") as f:
        f.write(TEMPLATE)
    procs = []

    def cairn(*args):
        p = subprocess.run([CAIRN, *args], capture_output=True, text=True, env=env, timeout=300)
        if p.returncode != 0:
            raise SystemExit(f"cairn {' '.join(args)} failed:\n{p.stderr[-2000:]}")
        return p.stdout

    try:
        cairn("up", tdir, "--yes", "-o", "none")
        show = lambda a: json.loads(cairn("show", tdir, "--address", a, "-o", "json"))
        lb = show("lb")["attributes"]
        fronts = {"cairn": f"http://{lb['address']}:{lb['port']}/"}
        webs = [f"{show(f'web[{i}]')['attributes']['address']}:8080" for i in range(2)]
        backends = [(webs[0], 3), (webs[1], 1)]
        nport, hport = free_port(), free_port()
        procs.append(subprocess.Popen(["nginx", "-c", nginx_conf(d, nport, backends), "-g", "daemon off;"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(["haproxy", "-f", haproxy_conf(d, hport, backends), "-db"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port("127.0.0.1", nport)
        wait_port("127.0.0.1", hport)
        fronts["nginx"] = f"http://127.0.0.1:{nport}/"
        fronts["haproxy"] = f"http://127.0.0.1:{hport}/"
        for url in fronts.values():
            u = urllib.parse.urlparse(url)
            wait_port(u.hostname, u.port)
        u = urllib.parse.urlparse(fronts["cairn"])
        pids = {"cairn": [listener_pid(u.hostname, u.port)], "nginx": family(procs[0].pid),
                "haproxy": [procs[1].pid]}
        warm_up(fronts)
        print(f"load average at start: {os.getloadavg()[0]:.1f}")
        print(f"{'mode':<11} {'front':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'CPU µs/req':>11}")
        rounds = int(os.environ.get("BENCH_ROUNDS", "1"))
        for close in (False, True):
            mode = "close" if close else "keep-alive"
            runs = {name: [] for name in fronts}
            for r in range(rounds):
                # Who goes first turns round, so that no front always
                # follows the same one.
                names = list(fronts)
                names = names[r % len(names):] + names[:r % len(names)]
                for name in names:
                    cpu = cpu_seconds(pids[name])
                    rps, p50, p99, errs = wrk(fronts[name], seconds, close)
                    cpu = cpu_seconds(pids[name]) - cpu
                    per = cpu / max(rps * seconds, 1) * 1e6
                    runs[name].append((rps, p50, p99, errs, per))
                    print(f"{mode:<11} {name:<8} {rps:>9.0f} {p50:>8.2f} {p99:>8.2f} {errs:>7} {per:>11.1f}", flush=True)
                last = {name: got[-1] for name, got in runs.items()}
                best = max(last["nginx"][0], last["haproxy"][0])
                print(f"{mode:<11} cairn / better peer: {last['cairn'][0] / best:.2f}x "
                      f"(load average now {os.getloadavg()[0]:.1f})", flush=True)
            if rounds > 1:
                print_medians(mode, runs)
        print("split of 400 requests at 3:1 (web0/web1):")
        for name, url in fronts.items():
            print(f"  {name:<8} {split(url)}", flush=True)
        if os.environ.get("BENCH_SYSCALLS") == "1":
            need("strace")
            print_syscalls(fronts, pids)
        host, port = webs[1].rsplit(":", 1)
        victim = listener_pid(host, int(port))
        kill_seconds = max(seconds // 2, 3)
        print(f"web1 killed under load (wrk -t1 -c16 on every front at once, {kill_seconds} s, "
              f"killed after {kill_seconds / 3:.1f} s): requests, failed (errors + non-2xx)")
        for name, (n, errs) in kill_under_load(fronts, kill_seconds, victim).items():
            print(f"  {name:<8} {n} requests, {errs} failed", flush=True)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run([CAIRN, "destroy", tdir, "--yes", "-o", "none"], env=env, capture_output=True, timeout=120)
        subprocess.run([CAIRN, "local", "stop", "-o", "none"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
