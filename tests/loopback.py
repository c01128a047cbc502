"""A file server on 127.0.0.1 for download tests: Range requests, throttling, and a connection
dropped mid-file on demand. It logs every request so tests can count transfers."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Behaviour:
    drop_after: int | None = None      # close the connection after this many body bytes, once
    delay_per_chunk: float = 0.0       # seconds between 64 KiB chunks (makes races real)
    log: list = field(default_factory=list)


class LoopbackServer:
    def __init__(self, root: Path):
        self.root = root
        self.behaviour = Behaviour()
        behaviour, serve_root = self.behaviour, root

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                path = serve_root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[len("bytes="):].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                entry = {"path": self.path, "range": rng, "sent": 0}
                behaviour.log.append(entry)
                for i in range(0, len(body), 1 << 16):
                    if behaviour.drop_after is not None and entry["sent"] >= behaviour.drop_after:
                        behaviour.drop_after = None  # only once
                        self.close_connection = True
                        return
                    chunk = body[i:i + (1 << 16)]
                    try:
                        self.wfile.write(chunk)
                    except (BrokenPipeError, ConnectionResetError):
                        return
                    entry["sent"] += len(chunk)
                    if behaviour.delay_per_chunk:
                        time.sleep(behaviour.delay_per_chunk)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> "LoopbackServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
