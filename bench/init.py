#!/usr/bin/env python3
"""Measure `cairn init`, PID 1 of every local server (`runc` isolation).

A fresh local cloud (its own directory, DNS port and address pool) with N
servers on `image: host`, each with a key pair (so its init runs sshd) and
a `user_data` that writes a unit file and enables and starts it with
`cairn service`. Prints, per server, the init's resident memory (VmRSS:
RssAnon is its own, RssFile the binary's pages in the page cache, shared by
every server) and peak (VmHWM) once its service runs, and the time a `cairn service
restart` takes (the client, the socket, stop and start). Needs root, runc
and nft (./scripts/install-deps).

Usage: bench/init.py [N]   (default: 3)
Environment: CAIRN_BIN (default target/release/cairn), BENCH_POOL (default 205),
BENCH_CIDR (default 10.252.0.0/24).
"""
import os, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from up import CAIRN, cloud_env, stop_cloud, timed_cairn  # noqa: E402

CIDR = os.environ.get("BENCH_CIDR", "10.252.0.0/24")

TEMPLATE = """cairn: 1
parameters:
  count: {type: int, min: 1, max: 200, default: 3}
resources:
  net: {type: network, properties: {cidr: %(cidr)s}}
  sub: {type: subnet, properties: {network: "{{ net.id }}", cidr: %(cidr)s}}
  key: {type: key_pair, properties: {name: bench}}
  web:
    type: server
    count: "{{ params.count }}"
    properties:
      image: host
      subnet: "{{ sub.id }}"
      key_pair: "{{ key.id }}"
      user_data: |
        #!/bin/sh
        cat > /etc/systemd/system/echo.service <<EOF
        [Service]
        ExecStart=/usr/local/bin/cairn util http-echo --port 8080 --text hello
        Restart=always
        [Install]
        WantedBy=multi-user.target
        EOF
        cairn service echo enable -o none && cairn service echo start -o none
"""


def exec_in(env, server, *args):
    p = subprocess.run([CAIRN, "local", "exec", server, "--", *args], env=env,
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    d = tempfile.mkdtemp(prefix="cairn-bench-init-")
    env = cloud_env(d, int(os.environ.get("BENCH_POOL", "205")))
    env["CAIRN_LOCAL_ISOLATION"] = "runc"
    tdir = os.path.join(d, "t")
    os.makedirs(tdir)
    with open(os.path.join(tdir, "cairn.yaml"), "w") as f:
        f.write(TEMPLATE % {"cidr": CIDR})
    cairn = timed_cairn(env)
    try:
        dt, _ = cairn("up", tdir, "--yes", "-p", f"count={n}")
        print(f"up of {n} runc servers: {dt:.2f} s")
        for i in range(n):
            server = f"web[{i}]"
            deadline = time.time() + 30
            while exec_in(env, server, "cairn", "service", "echo", "status", "-o", "none")[0] != 0:
                if time.time() > deadline:
                    raise SystemExit(f"{server}: echo never became active")
                time.sleep(0.1)
            _, status = exec_in(env, server, "cat", "/proc/1/status")
            mem = {l.split(":")[0]: l.split(":")[1].strip() for l in status.splitlines() if ":" in l}
            t0 = time.perf_counter()
            code, _ = exec_in(env, server, "cairn", "service", "echo", "restart", "-o", "none")
            restart = time.perf_counter() - t0
            print(f"{server}: init VmRSS {mem.get('VmRSS')} (RssAnon {mem.get('RssAnon')}, "
                  f"RssFile {mem.get('RssFile')}: the binary's pages, shared by every server), "
                  f"VmHWM {mem.get('VmHWM')}; "
                  f"`cairn local exec ... cairn service echo restart` {restart * 1000:.0f} ms "
                  f"(exit {code})")
        cairn("destroy", tdir, "--yes")
    finally:
        stop_cloud(env, d)


if __name__ == "__main__":
    main()
