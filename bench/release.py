#!/usr/bin/env python3
"""Benchmark a release: a ~50 MB artifact rolled out onto N servers of a
`runc` local cloud (default 20, `image: host`) behind the app's load
balancer, in batches of 25%, against the time the health checks and the
drains alone take.

The template (made in a temp directory) is the webapp's app
(examples/webapp/app/serve.py) plus a file of random bytes (~50 MB,
generated once into the app's source directory, so the archive does not
shrink under zstd), its load balancer and N servers on a /24 of
10.252.0.0/16 that no route of the machine overlaps. The bench runs:

  cairn up                         the servers and the balancer
  cairn artifact build hello v1    timed, with the archive's size
  cairn artifact build hello v2    timed
  cairn release hello v1 --batch 100%   the first install (not measured;
                                   retried while sshd in new servers starts)
  cairn release hello v2 --batch 25%    measured: its wall time, and per
                                   batch from the record's events (at_ms):

    staging   the command's start to its last `stage` event: loading and
              verifying the artifact, inspecting every host, then staging
              every host (copy over SSH, verify, unpack; 8 at once), all
              before the first batch
    wall      the batch's `batch` event to its last host's last step
    stage     what the batch still waited for its staging (0 now that
              every host is staged before the first batch)
    drain, switch, restart, health, restore
              per host, from its previous event to this step's event; the
              batch's figure is its slowest host's
    overhead  wall minus the drain and health time of the host that
              finished the batch last: what is left is switch, restart
              and restore (the balancer's own health check seeing the
              host again), the goal being under 1 s per batch

  plus cairn's own CPU seconds for the release and how busy the machine
  was meanwhile (every core: the servers' sshd and install scripts share
  the machine with cairn here, where real servers bring their own CPUs),
  plus what the release spends after its last batch (prune old
  releases, write the record, exit).

With --repeat R, v2..v(R+1) are each released in batches (each a new
artifact): the figures are per release, so the noise shows.

Everything made is destroyed at the end, on failure and Ctrl-C too: the
deployment (`cairn destroy`), the local cloud (`cairn local stop`), and
then whatever runc containers, namespaces, mounts, links or routes of this
bench's cloud remain (there should be none; the bench says so and fails).
Every wait is bounded in count and time. Traffic stays on loopback and
inside the cloud's namespaces.

Needs root, runc, nft, iproute2, python3 (3.8+, stdlib only). Build cairn
first, without the AWS SDK, into its own target dir (other checkouts share
the default one), and run a private copy:

  CARGO_TARGET_DIR=$HOME/.cache/cairn/target-release \\
      cargo build --release -p cairn --no-default-features
  cp $HOME/.cache/cairn/target-release/release/cairn /tmp/cairn-bench-bin
  sudo bench/release.py --cairn /tmp/cairn-bench-bin

Options: --servers N (20), --batch B (25%), --size-mb M (50),
--repeat R (1), --timeout S (per command, 600).
"""
import argparse, hashlib, ipaddress, json, os, shutil, signal, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP_SRC = os.path.join(ROOT, "examples", "webapp", "app")
STEPS = ["stage", "drain", "switch", "restart", "health", "restore"]


class BenchError(Exception):
    pass


def log(msg):
    print(f"release-bench: {msg}", file=sys.stderr, flush=True)


def load():
    return "load %.2f %.2f %.2f" % os.getloadavg()


def default_cairn():
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    return os.path.join(target, "release", "cairn")


# ---------------------------------------------------------------- running

class Run:
    """Wall seconds, exit code, output, and the command's own CPU seconds
    (user + system, its waited-for children included)."""

    def __init__(self, secs, rc, out, err, cpu=0.0):
        self.secs, self.rc, self.out, self.err, self.cpu = secs, rc, out, err, cpu


def machine_cpu():
    """CPU seconds the whole machine has been busy (all cores, /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run(argv, env=None, timeout=600.0, check=True):
    """argv in its own process group, killed past `timeout`."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        p = subprocess.Popen(argv, env=env, stdout=out, stderr=err,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            while True:
                pid, status, rusage = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() - start > timeout:
                    os.killpg(p.pid, signal.SIGKILL)
                    os.wait4(p.pid, 0)
                    p.returncode = -9
                    raise BenchError(f"timed out after {timeout:.0f}s: {' '.join(argv[:6])} ...")
                time.sleep(0.01)
            rc = os.waitstatus_to_exitcode(status)
            p.returncode = rc
        except BenchError:
            raise
        except BaseException:
            # Ctrl-C: the command goes too, before the clean-up runs.
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=10)
            except Exception:  # noqa: BLE001 - going down anyway
                os.killpg(p.pid, signal.SIGKILL)
            raise
        secs = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        o = out.read().decode(errors="replace")
        e = err.read().decode(errors="replace")
    if check and rc != 0:
        raise BenchError(f"{' '.join(argv[:6])} ... exited {rc}\n--- stdout\n{o[-3000:]}\n--- stderr\n{e[-3000:]}")
    return Run(secs, rc, o, e, rusage.ru_utime + rusage.ru_stime)


def sh(*argv):
    """A system tool's stdout ('' when it fails)."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


# ---------------------------------------------------------------- choices

def free_cidr():
    """A 10.252.x.0/24 that no route of the machine (any table) overlaps."""
    routes = json.loads(sh("ip", "-j", "-4", "route", "show", "table", "all") or "[]")
    taken = []
    for r in routes:
        dst = r.get("dst", "")
        if dst in ("", "default"):
            continue
        try:
            taken.append(ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False))
        except ValueError:
            continue
    start = os.getpid() % 250
    for i in range(250):
        net = ipaddress.ip_network(f"10.252.{(start + i) % 250 + 1}.0/24")
        if not any(net.overlaps(t) for t in taken):
            return str(net)
    raise BenchError("no free 10.252.x.0/24: every one is routed")


def free_pool():
    """An address pool 127.P.0.0/16 no local cloud claims (its claim port)."""
    for p in list(range(200, 250)):
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((f"127.{p}.0.1", 4207)) != 0:
                return p
    raise BenchError("no free local cloud pool in 127.200-249")


def free_dns_port():
    """Free on TCP and UDP, below the ephemeral range."""
    start = os.getpid() % 10000
    for i in range(2000):
        port = 20000 + (start + i * 7) % 12000
        with socket.socket() as t, socket.socket(type=socket.SOCK_DGRAM) as u:
            try:
                t.bind(("127.0.0.1", port))
                u.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise BenchError("no free port for DNS in 20000-32000")


# ---------------------------------------------------------------- template

TEMPLATE = """\
cairn: 1
resources:
  net:
    type: network
    properties: {{cidr: {cidr}}}
  sub:
    type: subnet
    properties: {{network: "{{{{ net.id }}}}", cidr: {cidr}}}
  lb_fw:
    type: firewall
    properties:
      network: "{{{{ net.id }}}}"
      ingress:
        - {{protocol: tcp, port: 80, from: 0.0.0.0/0}}
  web_fw:
    type: firewall
    properties:
      network: "{{{{ net.id }}}}"
      ingress:
        - {{protocol: tcp, port: 8081, from: "{{{{ lb_fw.id }}}}"}}
        - {{protocol: tcp, port: 22, from: 0.0.0.0/0}}
  deployer:
    type: key_pair
    properties: {{name: deployer}}
  web:
    type: server
    count: {count}
    properties:
      name: "web-{{{{ index }}}}"
      image: host
      size: small
      subnet: "{{{{ sub.id }}}}"
      firewalls: ["{{{{ web_fw.id }}}}"]
      key_pair: "{{{{ deployer.id }}}}"
      tags: {{role: web}}
  app_lb:
    type: load_balancer
    properties:
      listen: {{protocol: http, port: 80}}
      firewalls: ["{{{{ lb_fw.id }}}}"]
      health_check: {{path: /healthz, interval: 1s, timeout: 1s, healthy: 1, unhealthy: 2}}
      backends: "{{{{ web | map(attribute='address') | list }}}}"
      backend_port: 8081
apps:
  hello:
    build: {{command: "mkdir -p dist && cp serve.py blob.bin dist/ && echo \\"$CAIRN_VERSION\\" > dist/VERSION", dir: app, output: dist}}
    install: /srv/hello
    service: {{command: "exec python3 serve.py", stop_timeout: 5s}}
    port: 8081
    health: {{path: /healthz, timeout: 10s, interval: 200ms}}
    load_balancer: "{{{{ app_lb.id }}}}"
    servers: "G@role:web"
    keep: 3
outputs:
  front: "{{{{ app_lb.address }}}}:{{{{ app_lb.port }}}}"
"""


def make_template(tpl, cidr, count, size_mb):
    app = os.path.join(tpl, "app")
    os.makedirs(app)
    shutil.copy(os.path.join(APP_SRC, "serve.py"), app)
    with open(os.path.join(app, "blob.bin"), "wb") as f:
        for _ in range(size_mb):
            f.write(os.urandom(1 << 20))
    with open(os.path.join(tpl, "cairn.yaml"), "w") as f:
        f.write(TEMPLATE.format(cidr=cidr, count=count))


# ---------------------------------------------------------------- the cloud

class Cloud:
    def __init__(self, cairn, work, cidr, timeout):
        self.cairn, self.cidr, self.timeout = cairn, cidr, timeout
        self.local_dir = os.path.join(work, "local")
        os.makedirs(self.local_dir)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
        self.env.update({
            "CAIRN_LOCAL_DIR": self.local_dir,
            "CAIRN_KEY_FILE": os.path.join(work, "key"),
            "CAIRN_STATE": os.path.join(work, "state.db"),
            "CAIRN_LOCAL_DNS": f"127.0.0.1:{free_dns_port()}",
            "CAIRN_LOCAL_POOL": str(free_pool()),
            "CAIRN_LOCAL_ISOLATION": "runc",
        })
        # Every kernel object of a runc cloud has this in its name
        # (cairn_local::host::network::CloudNet: a hash of the cloud's dir).
        tag = hashlib.sha256(os.path.realpath(self.local_dir).encode()).hexdigest()[:8]
        self.tag, self.netns = tag, f"cairn-{tag}"

    def run(self, *args, check=True, timeout=None):
        return run([self.cairn, *args], env=self.env, timeout=timeout or self.timeout, check=check)

    def json(self, *args):
        return json.loads(self.run(*args, "-o", "json").out)

    def leftovers(self):
        left = [f"netns {l}" for l in sh("ip", "netns", "list").splitlines() if l.startswith(self.netns)]
        left += [f"container {l}" for l in sh("runc", "list", "-q").splitlines() if l.startswith(self.netns)]
        left += [f"link {l}" for l in sh("ip", "-o", "link").splitlines() if self.tag in l]
        left += [f"route {l}" for l in sh("ip", "route", "show", "table", "all").splitlines()
                 if self.cidr in l]
        try:
            with open("/proc/mounts") as f:
                left += [f"mount {l}" for l in f.read().splitlines() if self.netns in l]
        except OSError:
            pass
        return left

    def scrub(self):
        """What a failure left behind, by this cloud's names only."""
        for c in sh("runc", "list", "-q").splitlines():
            if c.startswith(self.netns):
                sh("runc", "delete", "-f", c)
        try:
            with open("/proc/mounts") as f:
                points = [l.split()[1] for l in f.read().splitlines() if self.netns in l]
        except OSError:
            points = []
        for p in reversed(points):
            sh("umount", "-l", p)
        for n in sh("ip", "netns", "list").splitlines():
            name = n.split(" ")[0]
            if name.startswith(self.netns):
                sh("ip", "netns", "del", name)
        sh("ip", "link", "del", f"ch{self.tag}")
        sh("ip", "route", "del", "unreachable", self.cidr, "metric", "4000")


# ---------------------------------------------------------------- figures

def batches_of(record):
    """The record's batches: [(batch_at, {host: {step: at}})]. A batch's
    hosts are the ones its `batch` event names ("batch 2/4: web-5, ..."):
    every host is staged before the first batch, so `stage` events come
    before the `batch` events."""
    out, batch_of = [], {}
    for e in record["events"]:
        if e["step"] == "batch":
            names = e["message"].split(": ", 1)[1] if ": " in e["message"] else ""
            for name in filter(None, (n.strip() for n in names.split(","))):
                batch_of[name] = len(out)
            out.append((e["at_ms"], {}))
    for e in record["events"]:
        if e.get("host") in batch_of and e["step"] in STEPS:
            if not e["ok"]:
                raise BenchError(f"{e['host']}: {e['step']} failed: {e['message']}")
            out[batch_of[e["host"]]][1].setdefault(e["host"], {})[e["step"]] = e["at_ms"]
    return out


def batch_figures(batch_at, hosts):
    """Seconds per step (the slowest host's), the wall and the overhead.
    `stage` is the time the batch waited for its staging after it began
    (0 when it was staged ahead)."""
    staged = max(batch_at, max(h["stage"] for h in hosts.values()))
    per = {}
    for name, h in hosts.items():
        prev, d = batch_at, {}
        for step in STEPS:
            if step not in h:
                raise BenchError(f"{name}: no `{step}` event in the record")
            # Drains start once the whole batch is staged.
            start = staged if step == "drain" else prev
            d[step] = max(0, h[step] - start) / 1000
            prev = h[step]
        d["end"] = h["restore"]
        per[name] = d
    last = max(per.values(), key=lambda d: d["end"])
    wall = (last["end"] - batch_at) / 1000
    fig = {s: max(d[s] for d in per.values()) for s in STEPS}
    fig["stage"] = (staged - batch_at) / 1000
    fig["wall"] = wall
    fig["overhead"] = wall - last["health"] - last["drain"]
    fig["hosts"] = len(hosts)
    return fig


def release_figures(record, started_ms, ended_ms):
    bs = batches_of(record)
    if not bs:
        raise BenchError("the record has no batch")
    figs = [batch_figures(at, hosts) for at, hosts in bs]
    first = bs[0][0]
    last_end = max(max(h["restore"] for h in hosts.values()) for _, hosts in bs)
    stages = [e["at_ms"] for e in record["events"] if e["step"] == "stage"]
    # From the command's start: loading, verifying, inspecting and staging.
    staged = max(stages) if stages else first
    return {
        "batches": figs,
        "staging": (staged - started_ms) / 1000,
        "after": (ended_ms - last_end) / 1000,
    }


def print_release(name, wall, figs, load_at):
    print(f"{name}: {wall:.2f} s wall ({load_at}); {figs['staging']:.2f} s before the first batch "
          f"(load, verify, inspect and stage every host), {figs['after']:.2f} s after the last "
          f"(prune, record)")
    cols = ["wall", "stage", "drain", "switch", "restart", "health", "restore", "overhead"]
    print("  batch hosts" + "".join(f"{c:>10}" for c in cols))
    for i, f in enumerate(figs["batches"], 1):
        print(f"  {i:>5} {f['hosts']:>5}" + "".join(f"{f[c]:>10.2f}" for c in cols))
    n = len(figs["batches"])
    mean = {c: sum(f[c] for f in figs["batches"]) / n for c in cols}
    print("   mean      " + "".join(f"{mean[c]:>10.2f}" for c in cols))
    return mean


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cairn", default=default_cairn())
    ap.add_argument("--servers", type=int, default=20)
    ap.add_argument("--batch", default="25%")
    ap.add_argument("--size-mb", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=600.0)
    a = ap.parse_args()
    if not os.access(a.cairn, os.X_OK):
        sys.exit(f"release-bench: no cairn binary at {a.cairn} (see --help to build it)")
    if os.geteuid() != 0:
        sys.exit("release-bench: runs as root (runc servers)")
    for tool in ("runc", "nft", "ip"):
        if not shutil.which(tool):
            sys.exit(f"release-bench: `{tool}` is not installed")
    if not 1 <= a.servers <= 200 or not 1 <= a.repeat <= 10 or not 1 <= a.size_mb <= 1024:
        sys.exit("release-bench: --servers 1..200, --repeat 1..10, --size-mb 1..1024")

    # SIGTERM goes through the same clean-up as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    work = tempfile.mkdtemp(prefix="cairn-release-bench-")
    cidr = free_cidr()
    cloud = Cloud(a.cairn, work, cidr, a.timeout)
    tpl = os.path.join(work, "tpl")
    failed = False
    deployed = False
    try:
        print(f"cairn release bench: {a.servers} servers (runc, image: host) on {cidr}, "
              f"{a.size_mb} MB of random bytes in the app, batches of {a.batch}; "
              f"{os.cpu_count()} CPUs, {load()} at the start")
        make_template(tpl, cidr, a.servers, a.size_mb)
        log(f"cairn up ({a.servers} servers) in {work}")
        deployed = True
        up = cloud.run("up", tpl, "--yes", "-o", "json")
        print(f"up: {up.secs:.2f} s ({load()})")

        versions = ["v1"] + [f"v{i + 2}" for i in range(a.repeat)]
        for v in versions:
            b = cloud.run("artifact", "build", "hello", "--version", v, tpl, "-o", "json")
            archive = os.path.join(tpl, ".cairn", "artifacts", "hello", v, "artifact.tar.zst")
            size = os.path.getsize(archive) / 1e6
            print(f"artifact build {v}: {b.secs:.2f} s, archive {size:.1f} MB ({load()})")

        # sshd may still be starting in servers just made: the first
        # release retries, at most 60 s.
        deadline = time.monotonic() + 60
        tries = 0
        while True:
            tries += 1
            r = cloud.run("release", "hello", "v1", "-C", tpl, "--batch", "100%", "-o", "json", check=False)
            if r.rc == 0 or time.monotonic() > deadline or tries >= 20:
                break
            time.sleep(1)
        if r.rc != 0:
            raise BenchError(f"release v1 failed after {tries} tries:\n{r.out[-3000:]}\n{r.err[-2000:]}")
        print(f"release v1 (batch 100%, first install, {tries} tries): {r.secs:.2f} s ({load()})")

        means = []
        for v in versions[1:]:
            started, busy = time.time() * 1000, machine_cpu()
            r = cloud.run("release", "hello", v, "-C", tpl, "--batch", a.batch, "-o", "json", check=False)
            ended, busy = time.time() * 1000, machine_cpu() - busy
            at = load()
            print(f"release {v}: cairn's own CPU {r.cpu:.2f} s; the machine's CPU busy {busy:.1f} s "
                  f"of {os.cpu_count() * r.secs:.1f} s ({os.cpu_count()} cores x wall: cairn, the "
                  f"servers' sshd and install scripts, and whatever else runs)")
            record = json.loads(r.out) if r.out.strip() else {}
            if r.rc != 0 or record.get("outcome") != "succeeded":
                raise BenchError(f"release {v}: exit {r.rc}, outcome {record.get('outcome')}\n"
                                 f"{json.dumps(record.get('hosts', []))[:3000]}\n{r.err[-2000:]}")
            figs = release_figures(record, started, ended)
            means.append((r.secs, print_release(f"release {v} (batch {a.batch})", r.secs, figs, at)))
        if len(means) > 1:
            print(f"over {len(means)} releases: wall {' '.join(f'{w:.2f}' for w, _ in means)} s; "
                  f"mean overhead per batch {' '.join('%.2f' % m['overhead'] for _, m in means)} s")
        print("goal, overhead beyond health checks and drains < 1 s per batch: "
              + ", ".join(f"{'met' if m['overhead'] < 1 else 'NOT met'} ({m['overhead']:.2f} s)"
                          for _, m in means))
    except BenchError as e:
        failed = True
        log(f"FAILED: {e}")
    except KeyboardInterrupt:
        failed = True
        log("interrupted: cleaning up")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if deployed:
            d = cloud.run("destroy", tpl, "--yes", "--allow-data-loss", "-o", "none", check=False, timeout=300)
            if d.rc != 0:
                log(f"destroy exited {d.rc}: {d.err.strip()[-1000:]}")
        s = cloud.run("local", "stop", "-o", "none", check=False, timeout=120)
        if s.rc != 0:
            log(f"local stop exited {s.rc}: {s.err.strip()[-1000:]}")
        left = cloud.leftovers()
        if left:
            failed = True
            log("left on the machine after destroy and stop (removing them now):\n  " + "\n  ".join(left))
            cloud.scrub()
            still = cloud.leftovers()
            if still:
                log("still there:\n  " + "\n  ".join(still))
        else:
            print("clean: no runc container, namespace, link, route or mount of the bench's cloud left")
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
