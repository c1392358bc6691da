#!/usr/bin/env python3
"""Benchmark the aws target on a fresh moto server: `cairn up` and `destroy`
of bench/aws-scale at n=1 (11 resources) and n=10 (74), wall time, API calls
(counted from moto's request log) and calls/s; then the same topology done
one call at a time by bench/aws_sequential.py, and the ratio; then moto's
own CPU for each side's calls, which bounds the ratio when moto is called
directly (it answers on one core at a time).

Usage: bench/aws.py [N ...]    (default: 1 10)
BENCH_LATENCY_MS=50 puts a loopback proxy in front of moto that holds every
call that long, as a region's API endpoint does; moto itself answers in a
few milliseconds, one call at a time, which hides what parallelism buys.
BENCH_BY_ACTION=1 sends every call through that proxy (with no added latency
unless BENCH_LATENCY_MS says so) and prints, by API action, the calls and
the CPU moto spent answering them, for cairn's `up` and `destroy` and for
the one-call-at-a-time script at each size: where the calls and moto's
time go, not a timing. In this mode the proxy forwards one call at a time
(a lock around each) and reads moto's CPU clock before sending the call
and after reading the whole answer, so each delta is that call's: moto's
parse, work, rendering and log line, and the thread it starts for the
connection. moto's CPU is its process clock (every thread's, in ns, the
same user + system as /proc/PID/stat without its 10 ms ticks). What
moto does after the answer leaves (the thread ending) lands in the next
call's delta; the serializing slows cairn's calls (they queue in the
proxy), so this mode's walls and ratios are not timings either.
BENCH_CALL_LOG=FILE (with BENCH_BY_ACTION=1) also writes one JSON line per
call to FILE: action, moto's CPU ms, request and answer bytes, and the
request's first 400 bytes (which ids or filters it asked for).
Needs a release build (cargo build --release -p cairn) or CAIRN_BIN.
Starts and stops its own moto (../shared/peers/moto-up.sh) on loopback.
"""
import http.client, http.server, json, os, re, resource, subprocess, sys, tempfile, threading, time, urllib.parse, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAIRN = os.environ.get("CAIRN_BIN", os.path.join(ROOT, "target", "release", "cairn"))
PEERS = os.environ.get("MOTO_PEERS", os.path.join(ROOT, "..", "shared", "peers"))
if not os.path.exists(os.path.join(PEERS, "moto-up.sh")):
    PEERS = os.path.join(ROOT, "scripts", "peers")  # the project's copy
PORT = os.environ.get("BENCH_MOTO_PORT", "5093")
STATE = os.environ.get("MOTO_STATE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "peers", "moto-run"))
LOG = os.path.join(STATE, f"moto-{PORT}.log")
PIDFILE = os.path.join(STATE, f"moto-{PORT}.pid")
VENV_PY = os.path.join(os.environ.get("MOTO_VENV", os.path.join(os.path.expanduser("~"), ".cache", "peers", "moto-venv")), "bin", "python")
# werkzeug colours some status lines (a 204's `"\x1b[35m\x1b[1mPUT ...`):
# those are calls too.
REQUEST = re.compile(r'"(?:\x1b\[[0-9;]*m)*(GET|POST|PUT|DELETE|HEAD) ')


def calls_so_far():
    with open(LOG, errors="replace") as f:
        return sum(1 for line in f if REQUEST.search(line))


MOTO_PID = None


def moto_cpu():
    """moto's CPU seconds so far (user + system, all its threads, those
    ended too). moto answers on one core at a time (Python's lock): a
    client that keeps it busy cannot go faster than the CPU its calls cost
    it. Read from the process's CPU clock (Linux's clock_getcpuclockid(pid)
    is ((~pid) << 3) | 2), precise to the nanosecond, where /proc/PID/stat
    counts 10 ms ticks, too coarse for one call."""
    global MOTO_PID
    if MOTO_PID is None:
        with open(PIDFILE) as f:
            MOTO_PID = int(f.read().strip())
    return time.clock_gettime(((~MOTO_PID) << 3) | 2)


def reset(endpoint):
    urllib.request.urlopen(urllib.request.Request(endpoint + "/moto-api/reset", method="POST"), timeout=30)


def action_of(method, path, headers, body):
    """The API action of one request: `Action=` in a query-protocol body (EC2,
    ELB, RDS, IAM), the JSON protocol's target header (Secrets Manager), or
    the REST method and path (S3, Route 53) without ids."""
    target = headers.get("x-amz-target")
    if target:
        return target.rsplit(".", 1)[-1]
    m = re.search(rb"(?:^|&)Action=([A-Za-z]+)", body or b"")
    if m:
        return m.group(1).decode()
    url = urllib.parse.urlparse(path)
    if url.path.startswith("/2013-04-01/"):
        shape = "/".join(p for p in url.path.split("/")[2:] if re.fullmatch(r"[a-z]+", p))
        return f"route53 {method} {shape}"
    query = ",".join(sorted(k for k in urllib.parse.parse_qs(url.query, keep_blank_values=True)))
    kind = "object" if url.path.count("/") > 1 and url.path.split("/", 2)[2] else "bucket"
    return f"s3 {method} {kind}{'?' + query if query else ''}"


ACTIONS = {}  # action -> [calls, moto's CPU seconds (measured only when serialized)]
ACTIONS_LOCK = threading.Lock()
CALL_LOG = open(os.environ["BENCH_CALL_LOG"], "a") if os.environ.get("BENCH_CALL_LOG") else None


def latency_proxy(upstream, delay, serialize):
    """A threaded loopback proxy that forwards each request after `delay` s,
    counting requests by action in ACTIONS; with `serialize`, one request
    at a time, each with the CPU moto spent between sending it and
    reading its whole answer."""
    target = urllib.parse.urlparse(upstream)
    one_at_a_time = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def forward(self):
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            action = action_of(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            if delay:
                time.sleep(delay)
            if serialize:
                with one_at_a_time:
                    cpu = moto_cpu()
                    answer, data = self.upstream(body)
                    cpu = moto_cpu() - cpu
            else:
                answer, data, cpu = *self.upstream(body), 0.0
            with ACTIONS_LOCK:
                seen = ACTIONS.setdefault(action, [0, 0.0])
                seen[0] += 1
                seen[1] += cpu
                if CALL_LOG:
                    request = urllib.parse.unquote_plus((self.path + " " + body.decode(errors="replace"))[:400])
                    CALL_LOG.write(json.dumps({"action": action, "ms": round(cpu * 1000, 2), "request_bytes": len(body),
                                               "answer_bytes": len(data), "request": request}) + "\n")
                    CALL_LOG.flush()
            self.send_response(answer.status)
            for k, v in answer.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def upstream(self, body):
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            try:
                conn.request(self.command, self.path, body, {k: v for k, v in self.headers.items() if k.lower() != "host"})
                answer = conn.getresponse()
                return answer, answer.read()
            finally:
                conn.close()

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = forward

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def warm(endpoint):
    """moto loads each service on its first call (about a second): pay that
    before timing, for cairn and the baseline alike."""
    subprocess.run([VENV_PY, os.path.join(ROOT, "bench", "aws_sequential.py"), endpoint, "0"], check=True, capture_output=True)


def children_cpu():
    """User + system CPU of the children waited for so far, in seconds."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(args, env):
    """(wall, calls, stdout, calls by action, moto's CPU, the command's own CPU)."""
    before, cpu, own = calls_so_far(), moto_cpu(), children_cpu()
    with ACTIONS_LOCK:
        ACTIONS.clear()
    t = time.time()
    out = subprocess.run(args, env=env, capture_output=True, text=True)
    took = time.time() - t
    if out.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{out.stderr}")
    with ACTIONS_LOCK:
        actions = {a: tuple(v) for a, v in ACTIONS.items()}
    return took, calls_so_far() - before, out.stdout, actions, moto_cpu() - cpu, children_cpu() - own


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [1, 10]
    endpoint = subprocess.run([os.path.join(PEERS, "moto-up.sh"), PORT], capture_output=True, text=True, check=True).stdout.strip()
    work = tempfile.mkdtemp(prefix="cairn-bench-aws-")
    latency = float(os.environ.get("BENCH_LATENCY_MS", "0")) / 1000
    by_action = os.environ.get("BENCH_BY_ACTION") == "1"
    proxy, via = (latency_proxy(endpoint, latency, by_action) if latency or by_action else (None, endpoint))
    env = dict(os.environ, AWS_ENDPOINT_URL=via, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null", AWS_EC2_METADATA_DISABLED="true",
               CAIRN_STATE=os.path.join(work, "state.db"), CAIRN_KEY_FILE=os.path.join(work, "key"), NO_COLOR="1")
    template = os.path.join(ROOT, "bench", "aws-scale")
    rows, breakdowns = [], []
    try:
        for n in sizes:
            reset(endpoint)
            warm(endpoint)
            up_s, up_calls, out, up_actions, up_cpu, up_own = timed([CAIRN, "up", template, "-e", "aws", "-p", f"n={n}", "--yes", "-o", "json"], env)
            resources = json.loads(out)["counts"]["created"]
            down_s, down_calls, _, down_actions, down_cpu, down_own = timed([CAIRN, "destroy", template, "-e", "aws", "-p", f"n={n}", "--yes", "--allow-data-loss", "-o", "none"], env)
            reset(endpoint)
            warm(endpoint)
            cpu = moto_cpu()
            with ACTIONS_LOCK:
                ACTIONS.clear()
            seq = json.loads(subprocess.run([VENV_PY, os.path.join(ROOT, "bench", "aws_sequential.py"), via, str(n)],
                                            capture_output=True, text=True, check=True).stdout)
            seq["cpu"] = moto_cpu() - cpu
            with ACTIONS_LOCK:
                seq_actions = {a: tuple(v) for a, v in ACTIONS.items()}
            rows.append((n, resources, up_s, up_calls, down_s, down_calls, seq, up_cpu + down_cpu, up_own + down_own))
            breakdowns.append((n, up_actions, down_actions, seq_actions))
    finally:
        if proxy:
            proxy.shutdown()
        subprocess.run([os.path.join(PEERS, "moto-down.sh"), PORT], capture_output=True)
    print(f"cairn {CAIRN} against moto at {endpoint}, {latency * 1000:.0f} ms added per call (fresh state per size)")
    print("| n | resources | cairn up | calls | calls/s | cairn destroy | calls | calls per resource (up + destroy) "
          "| one call at a time (up + down) | calls | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, res, up_s, up_c, down_s, down_c, seq, _, _ in rows:
        total, seq_total = up_s + down_s, seq["up_s"] + seq["down_s"]
        print(f"| {n} | {res} | {up_s:.2f} s | {up_c} | {up_c / up_s:.0f} | {down_s:.2f} s | {down_c} | "
              f"{up_c / res:.2f} + {down_c / res:.2f} | {seq['up_s']:.2f} + {seq['down_s']:.2f} s | {seq['calls']} | "
              f"{seq_total / total:.2f}x |")
    # What bounds the ratio when moto answers at once: its own CPU per run.
    # cairn's own CPU too: on a busy machine moto and cairn wait for the
    # same cores.
    print("\n| n | moto's CPU for cairn (up + destroy) | cairn's own CPU | cairn's wall | moto's CPU for one at a time "
          "| its wall | ratio bound (moto's CPU, one at a time / cairn) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, _, up_s, _, down_s, _, seq, cpu, own in rows:
        print(f"| {n} | {cpu:.2f} s | {own:.2f} s | {up_s + down_s:.2f} s | {seq['cpu']:.2f} s | "
              f"{seq['up_s'] + seq['down_s']:.2f} s | {seq['cpu'] / cpu:.2f}x |")
    for n, up_a, down_a, seq_a in breakdowns if by_action else []:
        print(f"\ncalls and moto's CPU by action at n={n} (calls serialized through the proxy):")
        print(by_action_table([("cairn up", up_a), ("cairn destroy", down_a), ("one at a time (up + down)", seq_a)]))


def by_action_table(columns):
    """Markdown: per action, each column's calls, moto's CPU ms for them and
    ms per call; most CPU first, totals last."""
    def cells(calls, cpu):
        return f"{calls} | {cpu * 1000:.0f} | {cpu * 1000 / calls:.1f}" if calls else " | | "
    actions = set().union(*(c for _, c in columns))
    order = sorted(actions, key=lambda a: -sum(c.get(a, (0, 0.0))[1] for _, c in columns))
    lines = ["| action | " + " | ".join(f"{name}: calls | ms | ms/call" for name, _ in columns) + " |",
             "|---|" + "---:|---:|---:|" * len(columns)]
    for a in order:
        lines.append(f"| {a} | " + " | ".join(cells(*c.get(a, (0, 0.0))) for _, c in columns) + " |")
    totals = [(sum(v[0] for v in c.values()), sum(v[1] for v in c.values())) for _, c in columns]
    lines.append("| **in all** | " + " | ".join(cells(*t) for t in totals) + " |")
    return "\n".join(lines)


main()
