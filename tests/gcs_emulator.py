"""A real local GCS for the tests: gcp-storage-emulator, and a proxy in front of it.

The emulator ignores ``ifGenerationMatch`` (a stale precondition overwrites silently), so
:class:`PreconditionProxy` enforces it the way GCS does (412 on a mismatch, one conditional write
at a time), logs every request so tests can assert what the client sent, and can inject faults:
transient 503s, a permanent 403, or going silent (connections dropped) as a stopped server would.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Emulator:
    """``gcp-storage-emulator`` on a free loopback port, in memory, with one default bucket."""

    def __init__(self, bucket: str = "retrain-test"):
        self.bucket = bucket
        self.port = free_port()
        executable = Path(sys.executable).with_name("gcp-storage-emulator")
        self.process = subprocess.Popen(
            [str(executable), "start", "--host", "127.0.0.1", "--port", str(self.port),
             "--in-memory", "--default-bucket", bucket],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


class PreconditionProxy:
    """An HTTP proxy to the emulator that enforces generation preconditions and logs requests."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.requests: list[dict] = []
        self.fail_next: list[int] = []  # statuses to answer the next object requests with
        self.silent = False  # drop every connection, like a server that stopped
        self._write_lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if proxy.silent:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, headers, payload = proxy.forward(self.command, self.path,
                                                         dict(self.headers), body)
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -- what it does with a request -----------------------------------------------------------
    def forward(self, method: str, path: str, headers: dict, body: bytes):
        parts = urlsplit(path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        bucket, name = _object_of(parts.path, query)
        if not name and body:  # a multipart upload names its object in the JSON metadata part
            match = re.search(rb'"name":\s*"((?:[^"\\]|\\.)*)"', body)
            name = json.loads(b'"' + match.group(1) + b'"') if match else ""
        self.requests.append({"method": method, "path": parts.path, "object": name,
                              "query": query})
        if self.fail_next and name:  # faults hit object requests, not bucket lookups
            status = self.fail_next.pop(0)
            return status, [("Content-Type", "application/json")], json.dumps(
                {"error": {"code": status, "message": f"injected {status}"}}).encode()
        if "ifGenerationMatch" not in query:
            return self._upstream(method, path, headers, body)
        with self._write_lock:  # GCS applies a conditional write atomically
            current = self._generation(bucket, name)
            if str(current) != query["ifGenerationMatch"]:
                return 412, [("Content-Type", "application/json")], json.dumps(
                    {"error": {"code": 412, "message": "conditionNotMet"}}).encode()
            return self._upstream(method, path, headers, body)

    def _generation(self, bucket: str, name: str) -> int:
        status, _, payload = self._upstream(
            "GET", f"/storage/v1/b/{bucket}/o/{quote(name, safe='')}", {}, b"")
        return int(json.loads(payload)["generation"]) if status == 200 else 0

    def _upstream(self, method, path, headers, body):
        connection = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        try:
            forwarded = {k: v for k, v in headers.items() if k.lower() not in ("host",)}
            connection.request(method, path, body=body or None, headers=forwarded)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def writes_to(self, suffix: str) -> list[dict]:
        """Logged uploads of objects whose name ends with ``suffix``."""
        return [r for r in self.requests
                if r["method"] == "POST" and r["path"].startswith("/upload/")
                and r["object"].endswith(suffix)]


def _object_of(path: str, query: dict) -> tuple[str, str]:
    """(bucket, object) a JSON-API path addresses; uploads name the object in the query."""
    segments = path.split("/")
    bucket = segments[segments.index("b") + 1] if "b" in segments else ""
    if "o" in segments and segments.index("o") + 1 < len(segments):
        return bucket, unquote("/".join(segments[segments.index("o") + 1:]))
    return bucket, query.get("name", "")
