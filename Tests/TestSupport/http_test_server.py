#!/usr/bin/env python3
"""HTTP server for the tests: serves a directory with Range/ETag support and misbehaves on
request, per URL, through the query string:

  ?drop=N      claim the full length, then close the connection after N body bytes
  ?corrupt=N   flip the byte at file offset N (when the response covers it)
  ?stall=S     send half the body, then sleep S seconds
  ?status=C    answer status C instead
  &times=K     misbehave only on the first K requests for that URL (path and query)
  ?noranges=1  ignore Range and do not advertise Accept-Ranges
  ?redirect=U  answer 302 with Location U (&code=C for another 3xx)
  ?exit=N      send N body bytes, then end the whole server process (a mirror that dies)
  GET /_auth   [[path, Authorization header or null], ...] of every GET/HEAD so far
  POST /post/... records {"path", "headers", "body"} as a line of <dir>/posts.jsonl
  GET /_stats  {path: requests}; /_stats?ranges=1 {path: requests with a Range header}

Usage: http_test_server.py ROOT [--misbehave QUERY]. With --misbehave (e.g. "drop=1000"),
QUERY applies to every file this server sends, as if each URL carried it (the URL's own query
wins): several servers then play mirrors of one file that fail each their own way.

Prints the port on the first line of stdout.
"""
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

ROOT = os.path.abspath(sys.argv[1])
DEFAULTS = {}      # --misbehave: query parameters every file request gets
if len(sys.argv) >= 4 and sys.argv[2] == "--misbehave":
    DEFAULTS = {k: v[-1] for k, v in parse_qs(sys.argv[3]).items()}
LOCK = threading.Lock()
REQUESTS = {}      # path -> count
RANGES = {}        # path -> count of requests carrying Range
MISBEHAVED = {}    # path?query -> count
AUTH = []          # [path, Authorization or None] per GET/HEAD, in order


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def parse(self):
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return unquote(parts.path), query

    def should_misbehave(self, query):
        """Counts this request against `times` for its exact URL."""
        with LOCK:
            seen = MISBEHAVED.get(self.path, 0)
            MISBEHAVED[self.path] = seen + 1
        times = query.get("times")
        return times is None or seen < int(times)

    def count(self, path):
        with LOCK:
            REQUESTS[path] = REQUESTS.get(path, 0) + 1
            if self.headers.get("Range"):
                RANGES[path] = RANGES.get(path, 0) + 1

    def send_json(self, status, value):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_HEAD(self):
        self.serve()

    def do_GET(self):
        self.serve()

    def serve(self):
        path, query = self.parse()
        if path == "/_stats":
            with LOCK:
                self.send_json(200, dict(RANGES if "ranges" in query else REQUESTS))
            return
        if path == "/_auth":
            with LOCK:
                self.send_json(200, list(AUTH))
            return
        self.count(path)
        with LOCK:
            AUTH.append([path, self.headers.get("Authorization")])
        query = {**DEFAULTS, **query}
        if "redirect" in query:
            self.send_response(int(query.get("code", "302")))
            self.send_header("Location", query["redirect"])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        misbehave = self.should_misbehave(query)
        if "status" in query and misbehave:
            self.send_json(int(query["status"]), {"error": "requested failure"})
            return
        full = os.path.normpath(os.path.join(ROOT, path.lstrip("/")))
        if not full.startswith(ROOT) or not os.path.isfile(full):
            self.send_json(404, {"error": "no such file: " + path})
            return
        st = os.stat(full)
        size = st.st_size
        etag = '"%x-%x"' % (size, st.st_mtime_ns)
        ranges = "noranges" not in query
        start, end = 0, size - 1
        status = 200
        header = self.headers.get("Range")
        if header and ranges:
            spec = header.strip()
            ok = spec.startswith("bytes=") and "," not in spec
            if ok:
                a, _, b = spec[6:].partition("-")
                try:
                    start = int(a)
                    end = int(b) if b else size - 1
                except ValueError:
                    ok = False
            if not ok or start >= size or start > end:
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % size)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            end = min(end, size - 1)
            status = 206
        length = end - start + 1 if size else 0
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", self.date_time_string(int(st.st_mtime)))
        if ranges:
            self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
        self.end_headers()
        if self.command == "HEAD" or length == 0:
            return
        with open(full, "rb") as f:
            f.seek(start)
            body = bytearray(f.read(length))
        if misbehave and "corrupt" in query:
            at = int(query["corrupt"]) - start
            if 0 <= at < len(body):
                body[at] ^= 0xFF
        try:
            if misbehave and "exit" in query:
                self.wfile.write(body[: int(query["exit"])])
                self.wfile.flush()
                os._exit(0)
            if misbehave and "drop" in query:
                self.wfile.write(body[: int(query["drop"])])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            if misbehave and "stall" in query:
                half = len(body) // 2
                self.wfile.write(body[:half])
                self.wfile.flush()
                time.sleep(float(query["stall"]))
                self.wfile.write(body[half:])
                return
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_POST(self):
        path, query = self.parse()
        self.count(path)
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length) if length else b""
        if not path.startswith("/post/"):
            self.send_json(404, {"error": "POST only under /post/"})
            return
        if "status" in query and self.should_misbehave(query):
            self.send_json(int(query["status"]), {"error": "requested failure"})
            return
        try:
            body = json.loads(data.decode() or "null")
        except ValueError:
            body = data.decode(errors="replace")
        record = {"path": path, "method": self.command, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
        with LOCK:
            with open(os.path.join(ROOT, "posts.jsonl"), "a") as f:
                f.write(json.dumps(record) + "\n")
        self.send_json(200, {"ok": True})

    # A run's state (PUT .../state) is recorded as a POST is, with its method.
    do_PUT = do_POST


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Clients hanging up mid-body is what the tests provoke; only report real bugs.
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def watch_parent():
    """Exits when stdin closes: the test process ended, even if it crashed."""
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


def main():
    # Test runners often block or ignore signals, and children inherit that: restore them so
    # SIGTERM really ends this server.
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, signal.SIG_DFL)
    threading.Thread(target=watch_parent, daemon=True).start()
    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
