"""A misbehaving stand-in for a model server, for drift tests: `--mode unhealthy|hang|garbage|badjson`.

Its command line carries `--instance-id`, so the local provider finds it as it finds a sim server.
"""

import argparse
import socketserver
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--instance-id", required=True)
p.add_argument("--mode", required=True, choices=["unhealthy", "hang", "garbage", "badjson"])
args = p.parse_args()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        if args.mode == "hang":
            time.sleep(30)
            return
        if args.mode == "garbage":
            self.wfile.write(b"\x00\x01 this is not HTTP \xff\r\n\r\n")
            self.close_connection = True
            return
        if args.mode == "unhealthy" and self.path.startswith(("/health", "/ready")):  # SGLang: /ready 503 too
            status, body = 503, b""
        elif args.mode == "badjson":
            status, body = 200, b"" if self.path.startswith(("/health", "/ready")) else b"<html>not json</html>"
        else:
            status, body = 200, b"{}"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


socketserver.TCPServer.allow_reuse_address = True
Server(("127.0.0.1", args.port), Handler).serve_forever(poll_interval=0.2)
