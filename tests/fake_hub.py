"""A stand-in for the Hugging Face hub on 127.0.0.1, set through HF_ENDPOINT.

It answers like the hub's resolve endpoint (HEAD metadata, ranged GET); it can hold every
download until told to go on (`gate`), cut a download short (`drop_after`), and answer 404 for
revisions it does not have (`missing_revisions`), as the hub does for a lost pin.

Datasets are served as models are, under "datasets/OWNER/NAME/FILE" (the hub's URLs for them).
A file listed in `commits` exists at that one commit only, as a pinned file does on the hub: it
is answered with that commit, and any other revision is one the hub does not have.
"""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}  # "repo/filename" -> content
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, Range header
        self.drop_after: int | None = None  # cut the first full GET after this many bytes
        self.missing_revisions: set[str] = set()
        self.commits: dict[str, str] = {}  # "repo/filename" -> the one commit that has it
        self.gate: threading.Event | None = None  # when set up, GETs wait until it is set
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _lookup(self) -> bytes | None:
                parts = self.path.split("/resolve/", 1)
                if len(parts) != 2 or "/" not in parts[1]:
                    return None
                _rev, filename = parts[1].split("/", 1)
                return hub.files.get(f"{parts[0].lstrip('/')}/{filename}")

            def _revision(self) -> str:
                parts = self.path.split("/resolve/", 1)
                return parts[1].split("/", 1)[0] if len(parts) == 2 else ""

            def _commit(self) -> str | None:
                """The one commit the requested file exists at, when it is pinned."""
                parts = self.path.split("/resolve/", 1)
                if len(parts) != 2 or "/" not in parts[1]:
                    return None
                filename = parts[1].split("/", 1)[1]
                return hub.commits.get(f"{parts[0].lstrip('/')}/{filename}")

            def _head(self, data: bytes | None) -> bytes | None:
                hub.requests.append((self.command, self.path, self.headers.get("Range")))
                commit = self._commit()
                if self._revision() in hub.missing_revisions or (
                    commit is not None and self._revision() != commit
                ):
                    self.send_response(404)
                    self.send_header("X-Error-Code", "RevisionNotFound")
                    self.send_header("X-Error-Message", "Invalid rev id")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("X-Repo-Commit", COMMIT)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("X-Repo-Commit", commit or COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                return data[start:]

            def do_HEAD(self) -> None:
                self._head(self._lookup())

            def do_GET(self) -> None:
                if hub.gate is not None:
                    hub.gate.wait(60)
                body = self._head(self._lookup())
                if body and hub.drop_after is not None and not self.headers.get("Range"):
                    self.wfile.write(body[: hub.drop_after])  # then the connection closes
                    hub.drop_after = None
                elif body:
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.server.shutdown()
        self.server.server_close()
