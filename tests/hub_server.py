"""A Hugging Face Hub on 127.0.0.1, answering the resolve endpoint as the Hub does, for the real
huggingface_hub client: HEAD ``/{repo}/resolve/{revision}/{file}`` gives the commit
(X-Repo-Commit), the LFS object's sha256 (X-Linked-Etag) and size (X-Linked-Size) on a 302 to
the blob's URL; GET follows that redirect to ``/blobs/{sha256}``; errors carry the Hub's
X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound). Every request is logged."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote


@dataclass
class Repo:
    refs: dict[str, str] = field(default_factory=dict)                 # branch or tag -> commit
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit -> file -> bytes

    def add(self, commit: str, files: dict[str, bytes], *refs: str) -> None:
        self.commits[commit] = files
        for ref in refs:
            self.refs[ref] = commit

    def commit_of(self, revision: str) -> str | None:
        return revision if revision in self.commits else self.refs.get(revision)


class HubServer:
    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.log: list[tuple[str, str]] = []
        self.tamper: set[str] = set()  # sha256s whose blob is served with one byte flipped
        self.blobs: dict[str, bytes] = {}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _error(self, status: int, code: str, commit: str | None = None):
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", code)
                if commit:
                    self.send_header("X-Repo-Commit", commit)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _answer(self, body: bool):
                path = unquote(self.path.split("?", 1)[0])
                if path.startswith("/api/"):  # the client's own registry look-ups: not file traffic
                    self.send_error(404)
                    return
                hub.log.append((self.command, self.path))
                if path.startswith("/blobs/"):
                    data = hub.blobs.get(path[len("/blobs/"):])
                    if data is None:
                        self.send_error(404)
                        return
                    if path[len("/blobs/"):] in hub.tamper:
                        data = bytes([data[0] ^ 1]) + data[1:]
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if body:
                        self.wfile.write(data)
                    return
                head, sep, rest = path.lstrip("/").partition("/resolve/")
                repo = hub.repos.get(head)
                if not sep or repo is None:
                    self._error(401, "RepoNotFound")
                    return
                revision, _, filename = rest.partition("/")
                commit = repo.commit_of(revision)
                if commit is None:
                    self._error(404, "RevisionNotFound")
                    return
                data = repo.commits[commit].get(filename)
                if data is None:
                    self._error(404, "EntryNotFound", commit)
                    return
                sha = hashlib.sha256(data).hexdigest()
                hub.blobs[sha] = data
                self.send_response(302)
                # another host name, as the Hub's CDN is: a HEAD does not follow it
                self.send_header("Location", f"{hub.cdn_url}/blobs/{sha}")
                self.send_header("X-Repo-Commit", commit)
                self.send_header("ETag", f'"{hashlib.sha1(data[:64]).hexdigest()}"')  # the LFS pointer's
                self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_HEAD(self):
                self._answer(body=False)

            def do_GET(self):
                self._answer(body=True)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def cdn_url(self) -> str:
        return f"http://localhost:{self.httpd.server_address[1]}"

    def repo(self, repo_id: str) -> Repo:
        return self.repos.setdefault(repo_id, Repo())

    def __enter__(self) -> "HubServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
