"""The dashboard's HTTP server: the standard library's ThreadingHTTPServer, a static page and
five read-only JSON/file routes. No dependency, nothing from a CDN, so it works offline.

    GET /                      the page (static/index.html, app.js, style.css)
    GET /api/list              runs, sweeps and results under the root (scan.listing; requests
                               that arrive together share one listing: dash.coalesce)
    GET /api/run?path=P&m=T&s=T&a=T   one run; metrics/measures/analysis records new since tokens T,
                               its last forecast.jsonl line (checked, or null)
    GET /api/sweep?path=P      one sweep: figures, results table, spec
    GET /api/neurons?path=P&step=S   a modular run's checkpoint steps and, for step S (default
                               the last), its neurons' waves and spectra (dash.inside)
    GET /files/P               a figure, report.html, csv/json under the root (nothing else),
                               up to MAX_FILE bytes (larger: 403 with a message)

Every request is answered, errors included, as JSON ``{"error": message}``; a broken run
directory or a client that hangs up never stops the server. Bound to 127.0.0.1 by default (any
other address only with ``allow_remote``), it also refuses requests whose Host header does not
name the loopback address it serves (DNS rebinding; ``dash.hosts``).

What is under the root is untrusted: every file is read through ``groklab.dash.files`` (inside
the root after resolving symlinks, regular files only), and ``/files/`` answers carry a
Content-Security-Policy ``sandbox`` without scripts, so a report.html or an SVG written by
someone else runs no script with the dashboard's origin (it could read every run through the
API). The page itself allows only its own script, and builds every value from a file as text.
"""
from __future__ import annotations

import errno
import json
import mimetypes
import os
import socket
import sys
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from groklab.config import ConfigError
from groklab.dash import files, hosts, inside, scan
from groklab.dash.coalesce import Coalesced

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"index.html", "app.js", "style.css", "uPlot.iife.min.js", "uPlot.min.css"}
SERVED_SUFFIXES = {".png", ".svg", ".html", ".csv", ".json", ".jsonl", ".toml", ".txt"}
TEXT_SUFFIXES = {".csv", ".jsonl", ".toml", ".txt"}  # shown as text in the browser, not downloaded
MAX_FILE = 64 << 20  # bytes /files/ serves (a report.html with its figures is a few MB)
CHUNK = 1 << 20      # what one answer holds in memory at a time
# The page: its own script and styles only (uPlot sets element styles from script, which CSP
# allows), images from the root or inlined, nothing else.
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
# Files under the root: a sandboxed document with an opaque origin, no script at all;
# report.html keeps its inline style and base64 images.
FILE_CSP = ("sandbox; default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
            "base-uri 'none'; form-action 'none'")


class DashServer(ThreadingHTTPServer):
    daemon_threads = True
    # The listen queue: the stdlib's 5 dropped most of 200 connections arriving at once, each
    # then waiting for the client's SYN retransmission (1 s, 3 s, 7 s, … 63 s).
    request_queue_size = 1024

    def __init__(self, addr: tuple[str, int], root: Path, quiet: bool = True):
        self.root = Path(root).resolve()
        self.quiet = quiet
        # /api/list: the requests waiting at one moment share one listing, encoded once
        self.listing = Coalesced(lambda: json.dumps(scan.listing(self.root), allow_nan=False).encode())
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, DashHandler)
        bound = self.server_address[0]
        # the Host names answered; None: bound beyond loopback (--allow-remote), any name
        self.host_names = hosts.served_names(bound) if hosts.is_loopback(bound) else None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


class DashHandler(BaseHTTPRequestHandler):
    server: DashServer
    server_version = "groklab-dash"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        try:
            names = self.server.host_names
            if names is not None and not hosts.host_ok(self.headers.get_all("Host", []), names):
                return self._json({"error": "bad Host header"}, HTTPStatus.FORBIDDEN)
            url = urlsplit(self.path)
            q = {k: v[-1] for k, v in parse_qs(url.query).items()}
            route = url.path
            if route in ("/", "/index.html"):
                return self._static("index.html")
            if route.startswith("/static/"):
                return self._static(route[len("/static/"):])
            if route == "/api/list":
                return self._send(self.server.listing.get(), "application/json")
            if route == "/api/run":
                d = self._dir(q.get("path", ""), "config.json")
                if d is None:
                    return
                return self._json(scan.run_detail(self.server.root, d, q.get("m"), q.get("s"), q.get("a")))
            if route == "/api/neurons":
                d = self._dir(q.get("path", ""), "config.json")
                if d is None:
                    return
                try:
                    return self._json(inside.neurons_detail(self.server.root, d, q.get("step")))
                except inside.ViewError as e:
                    return self._json({"error": str(e)}, e.status)
            if route == "/api/sweep":
                d = self._dir(q.get("path", ""))
                if d is None:
                    return
                return self._json(scan.sweep_detail(self.server.root, d))
            if route.startswith("/files/"):
                return self._file(unquote(route[len("/files/"):]))
            self._json({"error": f"no such page: {route}"}, HTTPStatus.NOT_FOUND)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away mid-answer
        except Exception as e:  # never let one bad request or directory stop the server
            if not self.server.quiet:
                traceback.print_exc()
            try:
                self._json({"error": f"{type(e).__name__}: {e}"}, HTTPStatus.INTERNAL_SERVER_ERROR)
            except OSError:
                pass

    def _inside(self, relpath: str) -> Path | None:
        """``root / relpath`` resolved, if it stays inside the root (no ``..`` or symlink escape)."""
        if "\0" in relpath:
            return None
        return files.inside(self.server.root, self.server.root / relpath)

    def _dir(self, relpath: str, mark: str | None = None) -> Path | None:
        d = self._inside(relpath)
        if d is None or not d.is_dir() or (mark and not files.is_file(self.server.root, d / mark)):
            self._json({"error": f"{relpath!r} is not a {'run' if mark else 'sweep'} directory "
                                 f"under the root (deleted, or never was)"}, HTTPStatus.NOT_FOUND)
            return None
        return d

    def _file(self, relpath: str) -> None:
        """Streamed in pieces of ``CHUNK`` bytes; a file over ``MAX_FILE`` is refused (403)."""
        p = self._inside(relpath)
        try:
            if p is None or p.suffix not in SERVED_SUFFIXES:
                raise FileNotFoundError(relpath)
            fh = files.open_regular(self.server.root, p)
        except OSError:  # missing, outside the root, a FIFO or device, unreadable
            return self._json({"error": f"no such file: {relpath}"}, HTTPStatus.NOT_FOUND)
        with fh:
            try:
                size = files.check_size(fh, p.name, MAX_FILE)
            except files.TooLarge:
                size = os.fstat(fh.fileno()).st_size
                return self._json({"error": f"{relpath} is {files.mb(size)}; /files/ serves files up to "
                                            f"{files.mb(MAX_FILE)} (open it from disk)"}, HTTPStatus.FORBIDDEN)
            ctype = ("text/plain; charset=utf-8" if p.suffix in TEXT_SUFFIXES
                     else mimetypes.guess_type(p.name)[0] or "application/octet-stream")
            self._head(size, ctype, HTTPStatus.OK, FILE_CSP)
            while size > 0:  # a file that shrank meanwhile ends the answer short
                chunk = fh.read(min(CHUNK, size))
                if not chunk:
                    break
                self.wfile.write(chunk)
                size -= len(chunk)

    def _static(self, name: str) -> None:
        if name not in STATIC_FILES:
            return self._json({"error": f"no such page: /static/{name}"}, HTTPStatus.NOT_FOUND)
        ctype = mimetypes.guess_type(name)[0] or "text/plain"
        self._send((STATIC / name).read_bytes(), f"{ctype}; charset=utf-8", csp=PAGE_CSP)

    def _json(self, obj, status: int = HTTPStatus.OK) -> None:
        self._send(json.dumps(obj, allow_nan=False).encode(), "application/json", status)

    def _send(self, body: bytes, ctype: str, status: int = HTTPStatus.OK, csp: str = FILE_CSP) -> None:
        self._head(len(body), ctype, status, csp)
        self.wfile.write(body)

    def _head(self, length: int, ctype: str, status: int, csp: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")  # the files change while runs write
        self.send_header("Content-Security-Policy", csp)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()

    def log_message(self, fmt: str, *args) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"groklab dash: {self.address_string()} {fmt % args}\n")


def make_server(root: str | Path, port: int = 8765, host: str = "127.0.0.1",
                quiet: bool = True, allow_remote: bool = False) -> DashServer:
    """Bind the dashboard for ``root`` (``port=0``: any free port) on ``host``, a loopback
    address unless ``allow_remote``. Bad input → ConfigError."""
    if not str(root).strip():  # Path("") is ".": refused before it becomes the current directory
        raise ConfigError(f"--root {str(root)!r} is empty; allowed: the folder that holds your runs "
                          f"(default: runs; '.' for the current directory)")
    if not host.strip():  # the socket would bind every interface
        raise ConfigError(f"--host {host!r} is empty; allowed: a loopback address (127.0.0.1, ::1, "
                          f"localhost), or another address with --allow-remote")
    if not allow_remote and not hosts.is_loopback(host):
        raise ConfigError(f"--host {host!r} is not a loopback address; anyone who can reach it could read "
                          f"every run under the root: add --allow-remote to bind it anyway")
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"--root {str(root)!r} does not exist or is not a directory; "
                          f"give the folder that holds your runs (default: runs)")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port} is out of range; allowed: 0-65535 (0 = any free port)")
    try:
        return DashServer((host, port), root, quiet=quiet)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(f"port {port} on {host} is already in use (another groklab dash?); "
                              f"choose another with --port, or --port 0 for any free one") from None
        if e.errno == errno.EACCES:
            raise ConfigError(f"port {port} needs privileges; use a port above 1023") from None
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
