#!/usr/bin/env python3
"""Benchmark orchestration over SSH: cairn against pyinfra and Ansible on
the same N real sshd servers (scripts/test-hosts, loopback addresses).

For each N (default 50 and 200) the hosts are started once, and each tool
in turn (cairn, pyinfra, ansible) runs on all of them:

  raw     one raw command, `uname -r`, on every host
          (cairn run all -- uname -r; pyinfra exec; ansible -m raw)
  tasks   four tasks per host, applied twice:
            a directory      /tmp/cairn-bench/<tool>/<host>/conf.d (parents made)
            a file           /tmp/cairn-bench/<tool>/<host>/motd with given content
            a command        `date > .../stamp`, guarded by creates=.../stamp
            a symlink        .../motd.link -> .../motd
          cairn: one state file (`cairn state apply all FILE`); pyinfra: one
          deploy file; Ansible: one playbook. The first run must change all
          4 tasks on every host, the second must change nothing (read from
          each tool's JSON or recap); the bench fails loudly otherwise.
          All test hosts share this machine's filesystem, so each host gets
          its own directory (`<host>` in the path), and each tool its own
          tree, removed before the tool's first run and at the end.
  cairn run x4  (cairn only, shown separately) the same four tasks as four
          `cairn run` module calls, run twice; `cairn run` arguments are not
          templated per host, so these share one path on all hosts
          (/tmp/cairn-bench/cairn-run/): the first run's changes are not
          counted, the second must report none.

Each command's wall time is taken once (best of 1: at N=200 a repeat of
Ansible alone costs minutes), and its peak RSS is the largest resident set
of any one process it ran (os.wait4's ru_maxrss): exact for cairn (one
process, SSH in-process) and pyinfra (one process, gevent); for Ansible it
is one process of many (each fork is a Python worker, each connection an
ssh client), so its total is several times larger. Two CPU figures per
step: the tool's own (user + system, its waited-for children included) and
the test hosts' (every sshd listener's process tree: connections, sessions,
shells and the commands they ran).

Read the wall times with the CPU figures: the test hosts run on the same 2
cores as the tool, and an SSH connection costs sshd ~20 ms of CPU, each
remote command a few more. cairn's own CPU is a few percent of a step's
total, so its wall time is the hosts' CPU divided by the cores, and the
wall-time ratios understate the difference in the tools' own CPU (printed
at the end), which is what real hosts, each with its own CPU, would leave.

Fairness settings (cairn and pyinfra get the same concurrency, N):
  cairn    -f N, host keys checked against the test hosts' known_hosts
  pyinfra  --parallel N -y, ssh_strict_host_key_checking=yes with the same
           known_hosts, no agent and no key search (paramiko)
  ansible  -f min(N, 50) (ANSIBLE_FORKS overrides): Ansible's fastest
           setting here, not equal concurrency. At N=200, -f 200 (one fork
           per host, what the others get) was slower than -f 50: raw 29.2 s
           against 26.5 s, playbook 259/244 s against 227/223 s (first and
           second run); Ansible is CPU-bound in its own workers (100+ CPU-s
           for the playbook) and 200 of them only fight over 2 cores,
           gather_facts: false and ansible_python_interpreter set (no
           discovery round trip), ANSIBLE_PIPELINING=1, host keys checked
           (ANSIBLE_HOST_KEY_CHECKING=True, StrictHostKeyChecking=yes and
           UserKnownHostsFile=known_hosts), OpenSSH ControlMaster as
           Ansible configures it by default, but a fresh control path
           directory per command so no tool reuses a connection from an
           earlier command. The raw command is `-m raw` (no Python module
           shipped), Ansible's fastest way.
cairn's `state apply` reads a host's facts only when the state file's
Jinja names them (this one does not); the others gather nothing they do
not need. pyinfra's shell has no `creates`: its deploy guards the command
with a File fact read first, as pyinfra users do.

Usage: bench/orch.py [N ...]      (default: 50 200, or BENCH_N="50 200")
Environment:
  CAIRN_BIN       the cairn binary (default target/release/cairn); build it
                  without the AWS SDK: cargo build --release -p cairn
                  --no-default-features
  BENCH_TOOLS     which tools, in order (default cairn,cairn-kept,pyinfra,
                  ansible; cairn-kept is cairn with --keep-connections, whose
                  first command connects and the rest run on the kept
                  connections, plus the raw command again on them)
  BENCH_TIMEOUT   seconds any one command may take (default 1200)
  BENCH_BASE      first test host address (default 127.0.30.1, or 10.250.0.1
                  with BENCH_RTT_MS)
  BENCH_RTT_MS    0 (default): the hosts on loopback. MS > 0: the hosts in a
                  network namespace the bench makes (`cairnbench`, scripts/
                  test-hosts --netns --rtt-ms), over a link on which every
                  round trip costs MS, for every tool alike; the link's
                  forwarder (scripts/delay-link, user space: this kernel
                  has no netem) is on the same 2 cores, and its CPU is
                  printed as `link CPU`
  BENCH_HOSTS_DIR test-hosts' directory (default /tmp/cairn-orch-bench;
                  host keys are made once there and reused)
  ANSIBLE_FORKS   Ansible's -f (default min(N, 50))
  BENCH_SEPARATE  0: skip `cairn run x4` (for quicker A/B runs of cairn)
  BENCH_VENV      the venv (default ~/.cache/cairn/orch-bench-venv)

Cold cost: the venv (ansible-core and pyinfra from PyPI, pinned below) is
made on the first run, ~30 s on the 2-core machine, and reused while its
pins and Python version match (a marker file in the venv records them).
scripts/test-hosts makes the host keys once per host (a few seconds for
200). A full run (N=50 and N=200, three tools) takes ~15-20 minutes, about
9 of them Ansible's two playbook runs at N=200.

Talks only to 127.0.0.0/8 (every host an sshd on a loopback address), or
with BENCH_RTT_MS to 10.250.0.0/16 inside the namespace it made. The test
hosts are stopped at the end, on failure too, and the namespace removed.
"""
import json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAIRN = os.environ.get("CAIRN_BIN", os.path.join(ROOT, "target", "release", "cairn"))
TEST_HOSTS = os.path.join(ROOT, "scripts", "test-hosts")
PINS = ["ansible-core==2.19.14", "pyinfra==3.10.0"]
VENV = os.environ.get("BENCH_VENV", os.path.expanduser("~/.cache/cairn/orch-bench-venv"))
TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "1200"))
RTT_MS = int(os.environ.get("BENCH_RTT_MS", "0"))
NETNS = "cairnbench" if RTT_MS > 0 else None
NET_PREFIX = "10.250." if NETNS else "127."
BASE = os.environ.get("BENCH_BASE", "10.250.0.1" if NETNS else "127.0.30.1")
HOSTS_DIR = os.environ.get("BENCH_HOSTS_DIR", "/tmp/cairn-orch-bench")
TOOLS = [t for t in os.environ.get("BENCH_TOOLS", "cairn,cairn-kept,pyinfra,ansible").split(",") if t]
TARGET_ROOT = "/tmp/cairn-bench"
MOTD = "Welcome to a cairn bench host.\nManaged by {tool}; do not edit.\n"


class BenchError(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- running

HOST_PIDS = []  # the test hosts' sshd listeners
LINK_PIDS = []  # the delayed link's forwarder, if any


def host_cpu(roots=None):
    """CPU seconds the test hosts have spent so far: every sshd listener,
    the connections and sessions under it and the commands they ran (live
    processes' own time plus what their reaped children left them)."""
    roots = HOST_PIDS if roots is None else roots
    if not roots:
        return 0.0
    stats = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the name: state ppid ... utime(12) stime cutime cstime.
        stats[int(pid)] = (int(rest[1]), sum(int(x) for x in rest[11:15]))
    children = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0, [p for p in roots if p in stats]
    while todo:
        pid = todo.pop()
        total += stats[pid][1]
        todo.extend(children.get(pid, []))
    return total / os.sysconf("SC_CLK_TCK")


class Run:
    """One command's wall seconds, output, peak RSS (MB, its largest
    process), its own CPU seconds, the test hosts' CPU seconds and the
    delayed link's."""

    def __init__(self, secs=0.0, rc=0, out="", err="", rss=0.0, cpu=0.0, hcpu=0.0, lcpu=0.0):
        self.secs, self.rc, self.out, self.err = secs, rc, out, err
        self.rss, self.cpu, self.hcpu, self.lcpu = rss, cpu, hcpu, lcpu

    def __add__(self, other):
        return Run(self.secs + other.secs, 0, "", "", max(self.rss, other.rss),
                   self.cpu + other.cpu, self.hcpu + other.hcpu, self.lcpu + other.lcpu)


def run(argv, env=None, cwd=None, timeout=TIMEOUT, check=True):
    """Runs argv in its own process group, bounded by `timeout`: a Run."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        h0, l0 = host_cpu(), host_cpu(LINK_PIDS)
        start = time.monotonic()
        p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        rusage = None
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
        secs = time.monotonic() - start
        rc = os.waitstatus_to_exitcode(status)
        p.returncode = rc
        # Whatever the command left in its group (Ansible's ssh
        # ControlMasters) goes with it.
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        # The hosts reap their sessions' processes as connections close.
        time.sleep(0.1)
        hcpu = host_cpu() - h0
        lcpu = host_cpu(LINK_PIDS) - l0
        out.seek(0)
        err.seek(0)
        o = out.read().decode(errors="replace")
        e = err.read().decode(errors="replace")
    if check and rc != 0:
        raise BenchError(f"{' '.join(argv[:6])} ... exited {rc}\n--- stdout\n{o[-3000:]}\n--- stderr\n{e[-3000:]}")
    return Run(secs, rc, o, e, rusage.ru_maxrss / 1024, rusage.ru_utime + rusage.ru_stime, hcpu, lcpu)


# ---------------------------------------------------------------- venv

def ensure_venv():
    """The venv with the pinned tools; made or fixed only when its marker
    (Python version and pins) differs. Returns seconds spent."""
    marker = os.path.join(VENV, ".orch-bench-pins")
    want = f"python {sys.version_info[0]}.{sys.version_info[1]}\n" + "\n".join(PINS) + "\n"
    py = os.path.join(VENV, "bin", "python")
    try:
        with open(marker) as f:
            if f.read() == want and os.path.exists(py):
                return 0.0
    except OSError:
        pass
    start = time.monotonic()
    if os.path.exists(py):
        got = subprocess.run([py, "-c", "import sys; print(*sys.version_info[:2], sep='.')"],
                             capture_output=True, text=True).stdout.strip()
        if got != f"{sys.version_info[0]}.{sys.version_info[1]}":
            log(f"orch: venv {VENV} is Python {got}; making it anew")
            shutil.rmtree(VENV)
    if not os.path.exists(py):
        log(f"orch: making the venv {VENV}")
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True, timeout=300)
    log(f"orch: pip install {' '.join(PINS)}")
    subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", *PINS],
                   check=True, timeout=900)
    with open(marker, "w") as f:
        f.write(want)
    return time.monotonic() - start


# ---------------------------------------------------------------- hosts

def read_inventory(d):
    hosts = []
    with open(os.path.join(d, "inventory.ini")) as f:
        for line in f:
            parts = line.split()
            if not parts or parts[0].startswith("["):
                continue
            kv = dict(p.split("=", 1) for p in parts[1:])
            addr = kv["ansible_host"]
            if not addr.startswith(NET_PREFIX):
                raise BenchError(f"{parts[0]} is at {addr}, outside {NET_PREFIX}*")
            hosts.append((parts[0], addr, kv["ansible_ssh_private_key_file"]))
    return hosts


def check_free(n):
    """No sshd of someone else's on the addresses the bench will use."""
    if NETNS:
        # test-hosts refuses a namespace of that name it did not make.
        return
    a, b, c, d = (int(x) for x in BASE.split("."))
    first = (a << 24) + (b << 16) + (c << 8) + d
    for i in range(n):
        x = first + i
        addr = f"{x >> 24 & 255}.{x >> 16 & 255}.{x >> 8 & 255}.{x & 255}"
        if not addr.startswith("127."):
            raise BenchError(f"{n} hosts from {BASE} leave 127.0.0.0/8")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((addr, 22)) == 0:
                pid_file = os.path.join(HOSTS_DIR, "hosts", f"h{i + 1}", "sshd.pid")
                if not os.path.exists(pid_file):
                    raise BenchError(f"{addr}:22 already answers and is not ours; set BENCH_BASE")


def hosts_up(n):
    check_free(n)
    net = ["--netns", NETNS, "--rtt-ms", str(RTT_MS)] if NETNS else []
    r = run([TEST_HOSTS, "up", str(n), "--dir", HOSTS_DIR, "--base", BASE, *net], timeout=300)
    log(f"orch: {r.out.strip()}")
    hosts = read_inventory(HOSTS_DIR)
    HOST_PIDS.clear()
    for i in range(1, len(hosts) + 1):
        with open(os.path.join(HOSTS_DIR, "hosts", f"h{i}", "sshd.pid")) as f:
            HOST_PIDS.append(int(f.read().strip()))
    LINK_PIDS.clear()
    if NETNS:
        with open(os.path.join(HOSTS_DIR, "delay-link.pid")) as f:
            LINK_PIDS.append(int(f.read().strip()))
    return hosts


def hosts_down():
    HOST_PIDS.clear()
    LINK_PIDS.clear()
    try:
        subprocess.run([TEST_HOSTS, "down", "--dir", HOSTS_DIR], timeout=120,
                       stdout=subprocess.DEVNULL, check=False)
    except Exception as e:  # noqa: BLE001 - shutting down, say it and go on
        log(f"orch: stopping the test hosts: {e}")


def clean(tool):
    shutil.rmtree(os.path.join(TARGET_ROOT, tool), ignore_errors=True)


# ---------------------------------------------------------------- cairn

STATE_FILE = """\
conf-dir:
  file.directory:
    - name: {root}/{tool}/{{{{ host }}}}/conf.d
    - makedirs: true
motd:
  file.managed:
    - name: {root}/{tool}/{{{{ host }}}}/motd
    - contents: {motd}
stamp:
  cmd.run:
    - name: date > {root}/{tool}/{{{{ host }}}}/stamp
    - creates: {root}/{tool}/{{{{ host }}}}/stamp
motd-link:
  file.symlink:
    - name: {root}/{tool}/{{{{ host }}}}/motd.link
    - target: {root}/{tool}/{{{{ host }}}}/motd
"""


class Cairn:
    name = "cairn"

    def __init__(self, work, n, hosts):
        self.work, self.n = work, n
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
        self.env.update({
            "CAIRN_STATE": os.path.join(work, "cairn-state.db"),
            "CAIRN_KEY_FILE": os.path.join(work, "cairn-key"),
        })
        self.base = [CAIRN, "-o", "json"]
        self.hostargs = ["-i", os.path.join(HOSTS_DIR, "inventory.ini"),
                         "--known-hosts", os.path.join(HOSTS_DIR, "known_hosts"), "-f", str(n)]
        self.sls = os.path.join(work, "bench.sls")
        with open(self.sls, "w") as f:
            f.write(STATE_FILE.format(root=TARGET_ROOT, tool=self.name,
                                      motd=json.dumps(MOTD.format(tool="cairn"))))

    def _job(self, argv):
        r = run(self.base + argv, env=self.env, cwd=self.work)
        return r, json.loads(r.out)

    def raw(self):
        r, job = self._job(["run", "all", *self.hostargs, "--", "uname", "-r"])
        bad = [h for h in job["hosts"] if h["status"] not in ("changed", "ok") or not h["stdout"].strip()]
        if len(job["hosts"]) != self.n or bad:
            raise BenchError(f"cairn raw: {len(job['hosts'])} hosts, bad: {bad[:3]}")
        return r

    def tasks(self, expect_changed):
        r, job = self._job(["state", "apply", "all", self.sls, *self.hostargs])
        changed = 0
        for h in job["hosts"]:
            states = h.get("detail", {}).get("states", [])
            if h["status"] not in ("changed", "ok") or len(states) != 4:
                raise BenchError(f"cairn state apply: host {h['host']}: {h['status']} {h.get('error')}")
            changed += sum(s["result"] == "changed" for s in states)
        check_changes("cairn", len(job["hosts"]), self.n, changed, expect_changed)
        return r

    def separate(self, expect_changed):
        """The four tasks as four `cairn run` calls (one shared path)."""
        d = f"{TARGET_ROOT}/cairn-run"
        calls = [
            ["file", f"path={d}/conf.d", "state=directory", "makedirs=true"],
            ["file", f"path={d}/motd", "content=" + MOTD.format(tool="cairn run")],
            ["cmd", f"cmd=date > {d}/stamp", f"creates={d}/stamp"],
            ["file", f"path={d}/motd.link", f"target={d}/motd", "state=symlink"],
        ]
        total, changed = Run(), 0
        for c in calls:
            r, job = self._job(["run", "all", *self.hostargs, *c])
            total = total + r
            bad = [h for h in job["hosts"] if h["status"] not in ("changed", "ok")]
            if bad or len(job["hosts"]) != self.n:
                raise BenchError(f"cairn run {c[0]}: {bad[:3]}")
            changed += sum(h["status"] == "changed" for h in job["hosts"])
        if not expect_changed and changed:
            raise BenchError(f"cairn run x4: second run changed {changed} task(s)")
        return total


class CairnKept(Cairn):
    """cairn with --keep-connections: the raw command connects (and leaves
    the connections with cairn's keeper process), the tasks run on kept
    connections, and `raw_again` repeats the raw command on them. The
    keeper is a process of its own, not the command's child: its CPU (from
    /proc, before and after each command) is added to the tool's, and its
    peak RSS shown beside the command's."""
    name = "cairn-kept"

    def __init__(self, work, n, hosts):
        super().__init__(work, n, hosts)
        self.keeper_dir = os.path.join(work, "keeper")
        self.env["CAIRN_KEEPER_DIR"] = self.keeper_dir
        self.hostargs += ["--keep-connections", "120s"]

    def _keeper(self):
        """(pid, CPU seconds, peak RSS MB) of the running keeper, or None."""
        try:
            with open(os.path.join(self.keeper_dir, "keeper.lock")) as f:
                pid = int(f.read().strip())
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/status") as f:
                hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
        except (OSError, ValueError, StopIteration):
            return None
        tick = os.sysconf("SC_CLK_TCK")
        return pid, (int(fields[11]) + int(fields[12])) / tick, hwm / 1024

    def _job(self, argv):
        before = self._keeper()
        r, job = super()._job(argv)
        after = self._keeper()
        if after:
            same = before and before[0] == after[0]
            r.cpu += after[1] - (before[1] if same else 0.0)
            self.keeper_rss = max(getattr(self, "keeper_rss", 0.0), after[2])
        return r, job

    def raw_again(self):
        return self.raw()

    def stop(self):
        run([CAIRN, "connections", "stop"], env=self.env, cwd=self.work, check=False)


def check_changes(tool, hosts, n, changed, expect_changed):
    if hosts != n:
        raise BenchError(f"{tool}: results for {hosts} hosts, not {n}")
    want = 4 * n if expect_changed else 0
    if changed != want:
        which = "first" if expect_changed else "second"
        raise BenchError(f"{tool}: {which} run changed {changed} task(s), expected {want}")


# ---------------------------------------------------------------- pyinfra

DEPLOY = """\
import io
from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import files, server

base = "{root}/pyinfra/" + host.name
files.directory(name="conf-dir", path=base + "/conf.d", present=True)
files.put(name="motd", src=io.StringIO({motd!r}), dest=base + "/motd")
# pyinfra's shell has no `creates`: the usual guard is a fact read first.
if host.get_fact(File, path=base + "/stamp") is None:
    server.shell(name="stamp", commands=["date > " + base + "/stamp"])
files.link(name="motd-link", path=base + "/motd.link", target=base + "/motd")
"""


class Pyinfra:
    name = "pyinfra"

    def __init__(self, work, n, hosts):
        self.work, self.n = work, n
        self.inv = os.path.join(work, "pyinfra_inventory.py")
        kh = os.path.join(HOSTS_DIR, "known_hosts")
        with open(self.inv, "w") as f:
            f.write("test_hosts = [\n")
            for name, addr, key in hosts:
                data = {"ssh_hostname": addr, "ssh_user": "root", "ssh_key": key,
                        "ssh_known_hosts_file": kh, "ssh_strict_host_key_checking": "yes",
                        "ssh_allow_agent": False, "ssh_look_for_keys": False}
                f.write(f"    ({name!r}, {data!r}),\n")
            f.write("]\n")
        self.deploy = os.path.join(work, "pyinfra_deploy.py")
        with open(self.deploy, "w") as f:
            f.write(DEPLOY.format(root=TARGET_ROOT, motd=MOTD.format(tool="pyinfra")))
        self.env = dict(os.environ, PYINFRA_PROGRESS="off")
        self.argv = [os.path.join(VENV, "bin", "pyinfra"), "--json", "-y", "--parallel", str(n), self.inv]

    def _run(self, argv):
        r = run(self.argv + argv, env=self.env, cwd=self.work)
        res = json.loads(r.out)["results"]
        if res["failed_hosts"] or res["totals"]["error"]:
            raise BenchError(f"pyinfra: failed hosts {res['failed_hosts'][:5]}, totals {res['totals']}")
        return r, res

    def raw(self):
        r, res = self._run(["exec", "--", "uname", "-r"])
        if res["totals"]["success"] != self.n:
            raise BenchError(f"pyinfra exec: {res['totals']}")
        return r

    def tasks(self, expect_changed):
        r, res = self._run([self.deploy])
        hosts = {h for op in res["operations"] for h in op["success"] + op["no_change"]}
        check_changes("pyinfra", len(hosts), self.n, res["totals"]["success"], expect_changed)
        return r


# ---------------------------------------------------------------- ansible

PLAYBOOK = """\
- hosts: all
  gather_facts: false
  vars:
    base: "{root}/ansible/{{{{ inventory_hostname }}}}"
  tasks:
    - name: conf-dir
      ansible.builtin.file: {{path: "{{{{ base }}}}/conf.d", state: directory}}
    - name: motd
      ansible.builtin.copy:
        dest: "{{{{ base }}}}/motd"
        content: {motd}
    - name: stamp
      ansible.builtin.shell:
        cmd: "date > {{{{ base }}}}/stamp"
        creates: "{{{{ base }}}}/stamp"
    - name: motd-link
      ansible.builtin.file: {{src: "{{{{ base }}}}/motd", dest: "{{{{ base }}}}/motd.link", state: link}}
"""

RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


class Ansible:
    name = "ansible"

    def __init__(self, work, n, hosts):
        self.work, self.n = work, n
        self.forks = int(os.environ.get("ANSIBLE_FORKS", min(n, 50)))
        self.playbook = os.path.join(work, "playbook.yml")
        with open(self.playbook, "w") as f:
            f.write(PLAYBOOK.format(root=TARGET_ROOT, motd=json.dumps(MOTD.format(tool="ansible"))))
        kh = os.path.join(HOSTS_DIR, "known_hosts")
        self.common = [
            "-i", os.path.join(HOSTS_DIR, "inventory.ini"), "-f", str(self.forks),
            "-e", f"ansible_ssh_common_args='-o UserKnownHostsFile={kh} -o StrictHostKeyChecking=yes'",
            "-e", "ansible_python_interpreter=/usr/bin/python3",
        ]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        self.env.update({
            "ANSIBLE_CONFIG": os.path.join(work, "ansible.cfg"),  # empty: defaults
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_PIPELINING": "1",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_LOCAL_TEMP": os.path.join(work, "ansible-local"),
            "ANSIBLE_HOME": os.path.join(work, "ansible-home"),
        })
        self.bin = os.path.join(VENV, "bin")
        with open(self.env["ANSIBLE_CONFIG"], "w") as f:
            f.write("[defaults]\n")

    def _env(self):
        # A fresh ControlMaster directory per command: no command reuses
        # connections an earlier one left open.
        env = dict(self.env)
        env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = tempfile.mkdtemp(prefix="cp-", dir=self.work)
        return env

    def raw(self):
        r = run([os.path.join(self.bin, "ansible"), "all", *self.common,
                 "-m", "raw", "-a", "uname -r", "--one-line"],
                env=self._env(), cwd=self.work)
        ok = [l for l in r.out.splitlines() if re.match(r"^\S+ \| (CHANGED|SUCCESS) \|", l)]
        if len(ok) != self.n:
            raise BenchError(f"ansible raw: {len(ok)} of {self.n} hosts succeeded\n{r.out[-2000:]}")
        return r

    def tasks(self, expect_changed):
        r = run([os.path.join(self.bin, "ansible-playbook"), *self.common, self.playbook],
                env=self._env(), cwd=self.work)
        recap = RECAP.findall(r.out)
        bad = [x for x in recap if x[3] != "0" or x[4] != "0" or x[1] != "4"]
        if bad:
            raise BenchError(f"ansible-playbook: hosts not ok: {bad[:5]}")
        check_changes("ansible", len(recap), self.n, sum(int(x[2]) for x in recap), expect_changed)
        return r


# ---------------------------------------------------------------- main

def bench(n, work):
    hosts = hosts_up(n)
    if len(hosts) != n:
        raise BenchError(f"test-hosts made {len(hosts)} hosts, not {n}")
    rows = {}
    for tool in TOOLS:
        cls = {"cairn": Cairn, "cairn-kept": CairnKept, "pyinfra": Pyinfra, "ansible": Ansible}[tool]
        t = cls(work, n, hosts)
        clean(tool)
        row = {}
        steps = [("raw", t.raw), ("first", lambda: t.tasks(True)), ("second", lambda: t.tasks(False))]
        if tool == "cairn-kept":
            steps.append(("raw_again", t.raw_again))
        try:
            for step, do in steps:
                row[step] = r = do()
                log(f"orch: N={n} {tool} {step}: {r.secs:.2f}s wall, {r.cpu:.2f}s tool CPU, "
                    f"{r.hcpu:.2f}s hosts CPU, {r.rss:.1f} MB"
                    + (f", {r.lcpu:.2f}s link CPU" if NETNS else ""))
        finally:
            if tool == "cairn-kept":
                row["keeper_rss"] = getattr(t, "keeper_rss", 0.0)
                t.stop()
        clean(tool)
        if tool == "cairn" and os.environ.get("BENCH_SEPARATE", "1") != "0":
            clean("cairn-run")
            row["run4_first"] = t.separate(True)
            row["run4_second"] = t.separate(False)
            clean("cairn-run")
            log(f"orch: N={n} cairn run x4: {row['run4_first'].secs:.2f}s first, "
                f"{row['run4_second'].secs:.2f}s second")
        rows[tool] = row
    return rows


def main():
    args = sys.argv[1:] or os.environ.get("BENCH_N", "50 200").split()
    ns = [int(a) for a in args]
    if not os.access(CAIRN, os.X_OK):
        sys.exit(f"orch: no cairn binary at {CAIRN} (set CAIRN_BIN)")
    venv_s = ensure_venv() if set(TOOLS) & {"pyinfra", "ansible"} else 0.0
    if venv_s:
        log(f"orch: venv ready in {venv_s:.1f}s (cold cost, once)")
    results = {}
    work = tempfile.mkdtemp(prefix="cairn-orch-bench-")
    try:
        for n in ns:
            try:
                results[n] = bench(n, work)
            finally:
                hosts_down()
                for tool in TOOLS + ["cairn-run"]:
                    clean(tool)
    except BenchError as e:
        log(f"orch: FAILED: {e}")
        report(results)
        sys.exit(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results)


def report(results):
    if not results:
        return
    load = os.getloadavg()
    where = f"hosts in namespace {NETNS}, round trip {RTT_MS} ms" if NETNS else "hosts on loopback"
    print(f"cairn orchestration bench: {os.cpu_count()} CPUs, {where}, load average "
          f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the end; each figure is one run")
    print("wall seconds per step; cpu = the tool's own CPU seconds / the test hosts' "
          "(sshd, shells, commands) for that step")
    head = f"{'tool':<10}{'N':>5}{'raw s':>8}{'tasks 1st s':>13}{'tasks 2nd s':>13}{'peak RSS MB':>13}"
    print(f"{head}  cpu raw        cpu 1st        cpu 2nd")
    for n, rows in results.items():
        for tool, r in rows.items():
            rss = max(r[k].rss for k in r if isinstance(r[k], Run))
            cpu = " ".join(f"{r[k].cpu:>6.2f}/{r[k].hcpu:<7.2f}" for k in ("raw", "first", "second"))
            print(f"{tool:<10}{n:>5}{r['raw'].secs:>8.2f}{r['first'].secs:>13.2f}{r['second'].secs:>13.2f}"
                  f"{rss:>13.1f} {cpu}")
    if NETNS:
        for n, rows in results.items():
            for tool, r in rows.items():
                print(f"link CPU (delay-link) N={n} {tool}: " + ", ".join(
                    f"{k} {r[k].lcpu:.2f}s" for k in ("raw", "first", "second")))
    for n, rows in results.items():
        k = rows.get("cairn-kept")
        if k:
            print(f"cairn-kept N={n}: raw on kept connections {k['raw_again'].secs:.2f}s "
                  f"(cpu {k['raw_again'].cpu:.2f}/{k['raw_again'].hcpu:.2f}); "
                  f"the keeper's peak RSS {k['keeper_rss']:.1f} MB")
            for tool in ("pyinfra", "ansible"):
                r = rows.get(tool)
                if r:
                    print(f"{tool}/cairn-kept N={n}: raw (connecting) {r['raw'].secs / k['raw'].secs:.1f}x, "
                          f"raw (kept) {r['raw'].secs / k['raw_again'].secs:.1f}x, "
                          f"tasks 1st {r['first'].secs / k['first'].secs:.1f}x, "
                          f"tasks 2nd {r['second'].secs / k['second'].secs:.1f}x")
    for n, rows in results.items():
        c = rows.get("cairn")
        if c and "run4_first" in c:
            print(f"cairn N={n}: the four tasks as four `cairn run` calls (one shared path): "
                  f"1st {c['run4_first'].secs:.2f}s, 2nd {c['run4_second'].secs:.2f}s")
    for n, rows in results.items():
        c = rows.get("cairn")
        if not c or "raw" not in c:
            continue
        for tool in ("pyinfra", "ansible"):
            r = rows.get(tool)
            if r:
                ratios = ", ".join(f"{name} {r[k].secs / c[k].secs:.1f}x" for k, name in
                                   (("raw", "raw"), ("first", "tasks 1st"), ("second", "tasks 2nd")))
                print(f"{tool}/cairn N={n}: {ratios}")
    goal = results.get(200, {})
    if "cairn" in goal:
        for tool, want in (("pyinfra", 5), ("ansible", 20)):
            if tool in goal:
                steps = []
                for k, name in (("raw", "raw"), ("first", "tasks 1st"), ("second", "tasks 2nd")):
                    x = goal[tool][k].secs / goal["cairn"][k].secs
                    steps.append(f"{name} {x:.1f}x {'met' if x >= want else 'NOT met'}")
                print(f"goal at N=200, {tool} >= {want}x cairn's wall time: {', '.join(steps)}")
    # A first contact's handshakes are the hosts' CPU whoever the client is,
    # and the hosts share this machine's cores with the tool: no client's
    # wall time can go below that CPU over the cores. From `cairn` only: a
    # connection's CPU shows in /proc when its sshd exits (measured: 100
    # kept connections showed 0.37 s open and 1.70 s more once closed), so
    # cairn-kept's first contact is counted short.
    first = goal.get("cairn")
    if first:
        cores = os.cpu_count() or 1
        line = (f"floor at N=200: the hosts' CPU for cairn's first contact ({first['raw'].hcpu:.2f}s) "
                f"over {cores} cores = {first['raw'].hcpu / cores:.2f}s, whatever the client")
        for tool, want in (("pyinfra", 5), ("ansible", 20)):
            if tool in goal:
                line += f"; {want}x {tool} would need {goal[tool]['raw'].secs / want:.2f}s"
        print(line)
    if "cairn" in goal:
        for tool in ("pyinfra", "ansible"):
            if tool in goal:
                ratios = ", ".join(f"{name} {goal[tool][k].cpu / max(goal['cairn'][k].cpu, 1e-3):.0f}x"
                                   for k, name in (("raw", "raw"), ("first", "tasks 1st"), ("second", "tasks 2nd")))
                print(f"own CPU at N=200, {tool}/cairn: {ratios}")


if __name__ == "__main__":
    main()
