"""A local HTTP server on 127.0.0.1 for tests of code that calls a REST API for real (Heroku's
Platform API, GitLab's): every request goes to an `answer` function of the test's fake."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (method, path without the query, headers (case-insensitive), JSON body or None) → (status, JSON
# value, text, or bytes: a file's content)
Answer = Callable[[str, str, Message, Any], tuple[int, Any]]


@contextmanager
def serve(answer: Answer) -> Iterator[str]:
    """Serve `answer` until the block ends; yields the server's base URL."""

    class Handler(BaseHTTPRequestHandler):
        def handle_one(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, payload = answer(
                self.command, self.path.split("?", 1)[0], self.headers, json.loads(raw) if raw else None
            )
            if isinstance(payload, bytes):
                data, kind = payload, "application/octet-stream"
            elif isinstance(payload, str):
                data, kind = payload.encode(), "text/plain"
            else:
                data, kind = json.dumps(payload).encode(), "application/json"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
