#!/usr/bin/env python3
"""Measure the agents a local cloud runs on its servers (issue 12).

A fresh local cloud (its own directory, DNS port and address pool) with N
servers; after `cairn up` returns, polls the cloud's master (`cairn events
--local`) until every server's agent has connected, and prints how long
that took, then `cairn run all --via agent -- true` on all of them (with
runc also `--via ssh`, the servers' sshd with the deployment's key pair,
in the same run), and
each agent process's resident memory (VmRSS; RssAnon is its own, the rest
the binary's pages in the page cache, shared by every agent), and the
daemon's, which serves the master.

Usage: bench/local_agents.py [N] [process|runc]   (default: 20 process)
runc needs root, runc and nft (./scripts/install-deps).
Environment: CAIRN_BIN (default target/release/cairn), BENCH_POOL (default 207).
"""
import json, os, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from up import CAIRN, cloud_env, free_runc_cidr, stop_cloud, timed_cairn  # noqa: E402

TEMPLATE = """cairn: 1
parameters:
  count: {type: int, min: 1, max: 1000, default: 20}
resources:
%(key)s  net: {type: network, properties: {cidr: %(cidr)s}}
  sub: {type: subnet, properties: {network: "{{ net.id }}", cidr: %(cidr)s}}
  web:
    type: server
    count: "{{ params.count }}"
    properties:
      image: host
      subnet: "{{ sub.id }}"
%(key_ref)s      user_data: |
        #!/bin/sh
        exec sleep 1000000
"""


def connected(env):
    """The ids whose agent connected last without disconnecting since."""
    p = subprocess.run([CAIRN, "events", "--local", "--tag", "cairn/agent/**", "-o", "json"],
                       capture_output=True, text=True, env=env, timeout=60)
    if p.returncode != 0:
        return set()
    now = set()
    for e in json.loads(p.stdout):
        host, tag = e.get("host"), e["tag"]
        if tag.endswith("/connected"):
            now.add(host)
        elif tag.endswith("/disconnected"):
            now.discard(host)
    return now


def agents(d):
    """(pid, VmRSS kB, RssAnon kB) of the cloud's agent processes: a
    process server's agent names the cloud's directory; a runc server's is
    a child of the server's init (its pid in the server's directory)."""
    inits = set()
    servers = os.path.join(d, "local", "servers")
    for sid in os.listdir(servers) if os.path.isdir(servers) else []:
        try:
            with open(os.path.join(servers, sid, "init.pid")) as f:
                inits.add(int(f.read().strip()))
        except (OSError, ValueError):
            pass
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
            is_agent = b"agent" in cmd or any(a.endswith(b"cairn-agent") for a in cmd)
            if not is_agent or b"--master" not in cmd:
                continue
            with open(f"/proc/{pid}/status") as f:
                st = {k: (v.split() or ["0"])[0] for k, v in
                      (l.split(":", 1) for l in f if ":" in l)}
            ours = any(d.encode() in a for a in cmd) or int(st.get("PPid", 0)) in inits
            if ours:
                out.append((int(pid), int(st.get("VmRSS", 0)), int(st.get("RssAnon", 0))))
        except (OSError, IndexError, ValueError):
            continue
    return out


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    isolation = sys.argv[2] if len(sys.argv) > 2 else "process"
    d = tempfile.mkdtemp(prefix="cairn-bench-agents-")
    env = cloud_env(d, int(os.environ.get("BENCH_POOL", "207")))
    cidr = "10.60.0.0/16"
    if isolation == "runc":
        env["CAIRN_LOCAL_ISOLATION"] = "runc"
        cidr = free_runc_cidr()
    tdir = os.path.join(d, "t")
    os.makedirs(tdir)
    # runc servers run sshd with a key pair, so that the same command
    # also goes over SSH in the same run.
    key, key_ref = "", ""
    if isolation == "runc":
        key = "  key: {type: key_pair, properties: {name: bench-agents}}\n"
        key_ref = '      key_pair: "{{ key.id }}"\n'
    with open(os.path.join(tdir, "cairn.yaml"), "w") as f:
        f.write(TEMPLATE % {"cidr": cidr, "key": key, "key_ref": key_ref})
    cairn = timed_cairn(env)
    try:
        dt, _ = cairn("up", tdir, "--yes", "-p", f"count={n}")
        up_done = time.perf_counter()
        print(f"up of {n} {isolation} servers: {dt:.2f} s")
        deadline = up_done + 120
        seen = set()
        while len(seen) < n:
            if time.perf_counter() > deadline:
                raise SystemExit(f"only {len(seen)} of {n} agents connected within 120 s")
            seen = connected(env)
            time.sleep(0.05)
        print(f"all {n} agents connected {time.perf_counter() - up_done:.2f} s after `up` "
              f"returned (polled through `cairn events --local`, about 20 ms a poll)")
        dt, job = cairn("run", "all", "-C", tdir, "--via", "agent", "--", "true")
        bad = [h for h in job["hosts"] if h["status"] not in ("changed", "ok")]
        print(f"`cairn run all --via agent -- true` on {n}: {dt:.2f} s, {len(bad)} not ok")
        if isolation == "runc":
            dt, job = cairn("run", "all", "-C", tdir, "--via", "ssh", "--", "true")
            bad = [h for h in job["hosts"] if h["status"] not in ("changed", "ok")]
            print(f"`cairn run all --via ssh -- true` on {n}, same run: {dt:.2f} s, {len(bad)} not ok")
        procs = agents(os.path.realpath(d))
        if procs:
            rss = sorted(p[1] for p in procs)
            anon = sorted(p[2] for p in procs)
            print(f"{len(procs)} agent processes: VmRSS median {rss[len(rss) // 2] / 1024:.1f} MB "
                  f"(min {rss[0] / 1024:.1f}, max {rss[-1] / 1024:.1f}); RssAnon (its own) "
                  f"median {anon[len(anon) // 2] / 1024:.1f} MB; the rest is the binary's "
                  f"pages, shared")
        try:
            with open(os.path.join(d, "local", "daemon.json")) as f:
                daemon = json.load(f)["pid"]
            with open(f"/proc/{daemon}/status") as f:
                rss = next(l.split()[1] for l in f if l.startswith("VmRSS:"))
            print(f"the daemon (with the master in it): VmRSS {int(rss) / 1024:.1f} MB")
        except (OSError, KeyError, StopIteration):
            pass
        cairn("destroy", tdir, "--yes")
    finally:
        stop_cloud(env, d)


if __name__ == "__main__":
    main()
