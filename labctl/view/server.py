"""The HTTP server of `labctl view`: standard library only, bound to 127.0.0.1.

Routes (GET):

- ``/``: the index of the sessions directory (links; several can be opened side by side)
- ``/view?s=ID&s=ID2``: the page of one or more sessions, in columns
- ``/static/NAME``: the page's script, styles and plotting (served from this package)
- ``/api/sessions``: the sessions the server knows, newest first (id, command, status, ...)
- ``/api/docs?s=ID&offset=N``: documents after byte N of the session's documents.jsonl,
  whole lines only (see :mod:`labctl.view.documents`)
- ``/api/neurons?s=ID[&fold=F&epoch=E]``: an epoch's neurons beside the truth (latest if
  none named; see :mod:`labctl.view.neurons`)

Sessions are named by id only: those given on the command line (by id or path) and those
under the sessions directory. Nothing else on disk is reachable through the server.
Everything is read from disk at each request: a reload or a restart of the server shows the
same page.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import re
import threading
import time
import urllib.parse
from dataclasses import replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from labctl.records.session import DOCUMENTS, RecordError, list_sessions, summarise_session
from labctl.view.documents import DocumentReader, finite

STATIC = Path(__file__).parent / "static"
_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_STATIC_NAME = re.compile(r"[a-z0-9_-]+\.(js|css|html)\Z")


class NotFound(Exception):
    """No such page, static file or session here (HTTP 404)."""


class ViewServer(ThreadingHTTPServer):
    """Serves the sessions under ``root`` and those in ``named`` (id -> directory)."""

    daemon_threads = True  # a page's open connection must not hold up the exit

    def __init__(self, root: Path, named: dict[str, Path] | None = None, port: int = 0):
        self.root = Path(root)
        self.named = dict(named or {})
        self.reader = DocumentReader()
        super().__init__(("127.0.0.1", port), ViewHandler)

    def warm(self) -> threading.Thread:
        """Build the truth of the named training sessions in the background (the simulated
        devices take a second or two to rebuild), so that their first neuron plot comes
        without that wait. Errors are left for the request that meets them."""
        def build() -> None:
            from labctl.view.neurons import truth_of

            for path in self.named.values():
                with contextlib.suppress(Exception):
                    truth_of(path)

        thread = threading.Thread(target=build, name="labctl-view-warm", daemon=True)
        thread.start()
        return thread

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def page_url(self, ids: list[str]) -> str:
        """URL of the page showing ``ids`` side by side (the index when empty)."""
        if not ids:
            return self.url
        return self.url + "view?" + urllib.parse.urlencode([("s", i) for i in ids])

    def session_dir(self, session_id: str) -> Path:
        """The directory of a session the server may show; :class:`NotFound` otherwise."""
        if session_id in self.named:
            return self.named[session_id]
        if _ID.match(session_id) and (self.root / session_id / DOCUMENTS).is_file():
            return self.root / session_id
        raise NotFound(f"no session {session_id!r} here (given on the command line, or "
                          f"an id under {self.root})")

    def sessions(self) -> list[dict]:
        """The sessions this server can show, newest first."""
        summaries = {s.id: s for s in list_sessions(self.root)}
        for sid, path in self.named.items():
            if sid not in summaries or summaries[sid].path.resolve() != path.resolve():
                summaries[sid] = replace(summarise_session(path), id=sid)
        rows = [{"id": sid, "command": s.command, "start_time": s.start_time,
                 "status": s.status, "headline": s.headline, "reason": s.reason,
                 "n_events": s.n_events} for sid, s in summaries.items()]
        return sorted(rows, key=lambda r: (r["start_time"] or 0, r["id"]), reverse=True)


class ViewHandler(BaseHTTPRequestHandler):
    server: ViewServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base's name
        pass  # a page polls every half second: no line per request on the terminal

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        try:
            if url.path == "/":
                self._file(STATIC / "index.html")
            elif url.path == "/view":
                self._file(STATIC / "view.html")
            elif url.path.startswith("/static/"):
                name = url.path[len("/static/"):]
                if not _STATIC_NAME.match(name) or not (STATIC / name).is_file():
                    raise NotFound(f"no static file {name!r}")
                self._file(STATIC / name)
            elif url.path == "/api/sessions":
                self._json({"sessions": self.server.sessions(), "root": str(self.server.root)})
            elif url.path == "/api/docs":
                sid = _one(query, "s")
                chunk = self.server.reader.read(self.server.session_dir(sid),
                                                _int(query, "offset", 0))
                self._json({"session": sid, **chunk.as_json(), "now": time.time()})
            elif url.path == "/api/neurons":
                from labctl.view.neurons import epoch_neurons

                sid = _one(query, "s")
                fold, epoch = _int(query, "fold", None), _int(query, "epoch", None)
                self._json({"session": sid,
                            **finite(epoch_neurons(self.server.session_dir(sid), fold, epoch))})
            else:
                raise NotFound(f"no page {url.path!r}")
        except NotFound as err:
            self._error(HTTPStatus.NOT_FOUND, str(err))
        except (ValueError, RecordError) as err:
            self._error(HTTPStatus.UNPROCESSABLE_ENTITY, str(err))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the page went away mid-reply
        except Exception as err:  # the page shows it; the server keeps serving the others
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR,
                        f"{url.path}: {type(err).__name__}: {err}")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")  # always what is on disk now
        self.end_headers()
        self.wfile.write(body)

    def _file(self, path: Path) -> None:
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self._send(HTTPStatus.OK, path.read_bytes(), f"{kind}; charset=utf-8")

    def _json(self, obj: dict) -> None:
        body = json.dumps(obj, allow_nan=False, separators=(",", ":")).encode()
        self._send(HTTPStatus.OK, body, "application/json")

    def _error(self, status: HTTPStatus, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self._send(status, body, "application/json")


def _one(query: dict[str, list[str]], key: str) -> str:
    values = query.get(key)
    if not values or not values[0]:
        raise ValueError(f"query parameter {key!r} missing")
    return values[0]


def _int(query: dict[str, list[str]], key: str, default):
    values = query.get(key)
    if not values:
        return default
    try:
        return int(values[0])
    except ValueError:
        raise ValueError(f"query parameter {key!r} is {values[0]!r}, not an integer") from None
