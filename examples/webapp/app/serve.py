"""The webapp's app: answers every GET with its version and the host it
runs on, and /healthz with 200 once it is ready. cairn releases it
(`cairn artifact build hello`, `cairn release hello VERSION`); it reads
its address and port from the environment cairn gives it."""

import http.server
import os

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "VERSION")) as f:
    VERSION = f.read().strip()
HOST = os.uname().nodename


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz":
            body = b"ok\n"
        else:
            body = f"hello {VERSION} from {HOST}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


address = os.environ.get("CAIRN_ADDRESS", "0.0.0.0")
port = int(os.environ.get("PORT", "8081"))
http.server.ThreadingHTTPServer((address, port), Handler).serve_forever()
