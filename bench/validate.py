#!/usr/bin/env python3
"""Benchmark `cairn validate` on generated templates of N resource instances.

The template mixes for_each resources (subnets, firewalls, DNS records) with
individually declared servers that reference them, so that parsing,
reference extraction, the graph and evaluation all scale with N.

Usage: bench/validate.py [N ...]   (default: 1000 10000 50000)
Prints wall time (median of runs) and peak RSS per N.
"""
import os, resource, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAIRN = os.environ.get("CAIRN_BIN", os.path.join(ROOT, "target", "release", "cairn"))


def template(n):
    subnets = max(1, n // 10)
    firewalls = max(1, n // 10)
    records = max(1, n * 4 // 10)
    servers = max(1, n - subnets - firewalls - records - 2)
    out = ["cairn: 1", "parameters:",
           "  base: {type: string, default: 10.0.0.0/8}",
           "  subnets:", "    type: map", "    default:"]
    out += [f"      s{i}: {i}" for i in range(subnets)]
    out += ["  firewalls:", "    type: list", "    default:"]
    out += [f"      - fw{i}" for i in range(firewalls)]
    out += ["  records:", "    type: map", "    default:"]
    out += [f"      r{i}: {i}" for i in range(records)]
    out += ["variables:", "  prefix: \"bench-{{ unique_string(deployment.name) }}\"",
            "resources:",
            "  net:", "    type: network", "    properties: {cidr: \"{{ params.base }}\"}",
            "  zone:", "    type: dns_zone", "    properties: {name: bench.test}",
            "  subnet:", "    type: subnet", "    for_each: \"{{ params.subnets }}\"",
            "    properties: {network: \"{{ net.id }}\", cidr: \"{{ cidr_subnet(params.base, 16, each.value) }}\"}",
            "  fw:", "    type: firewall", "    for_each: \"{{ params.firewalls }}\"",
            "    properties:", "      network: \"{{ net.id }}\"",
            "      ingress: [{protocol: tcp, port: 80, from: 0.0.0.0/0}]",
            "  rec:", "    type: dns_record", "    for_each: \"{{ params.records }}\"",
            "    properties: {zone: \"{{ zone.id }}\", name: \"{{ each.key }}\", type: A, values: [\"10.1.{{ each.value // 250 % 250 }}.{{ each.value % 250 }}\"]}"]
    for i in range(servers):
        out += [f"  srv{i}:", "    type: server", "    properties:",
                f"      name: \"{{{{ vars.prefix }}}}-srv{i}\"",
                "      image: debian-12",
                f"      subnet: \"{{{{ subnet['s{i % subnets}'].id }}}}\"",
                f"      firewalls: [\"{{{{ fw['fw{i % firewalls}'].id }}}}\"]"]
    return "\n".join(out) + "\n", subnets + firewalls + records + servers + 2


def run(dirpath):
    t0 = time.perf_counter()
    p = subprocess.run([CAIRN, "validate", dirpath, "-o", "json", "--query", "instances"],
                       capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"validate failed:\n{p.stderr[:2000]}")
    return dt, int(p.stdout)


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 10000, 50000]
    if not os.path.exists(CAIRN):
        sys.exit(f"{CAIRN} missing: run `cargo build --release` first")
    print(f"{'N':>7} {'file':>9} {'instances':>9} {'median':>9} {'min':>9} {'peak RSS':>9}")
    for n in sorted(sizes):
        d = tempfile.mkdtemp(prefix=f"cairn-bench-{n}-")
        try:
            text, _ = template(n)
            with open(os.path.join(d, "cairn.yaml"), "w") as f:
                f.write(text)
            runs = 5 if n <= 10000 else 3
            times, inst = [], 0
            for _ in range(runs):
                dt, inst = run(d)
                times.append(dt)
            # ru_maxrss of children is the largest so far; sizes run in
            # ascending order, so it is this size's peak.
            rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(f"{n:>7} {len(text)/1e6:>7.1f}MB {inst:>9} {statistics.median(times)*1000:>7.0f}ms "
                  f"{min(times)*1000:>7.0f}ms {rss_mb:>7.0f}MB")
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
