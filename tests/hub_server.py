"""A local stand-in for the part of the Hugging Face Hub protocol that ``hf_hub_download`` uses, for tests only.

Two threaded HTTP servers on 127.0.0.1, on ports the OS picks:

* the Hub (``endpoint``): ``HEAD``/``GET /{repo_id}/resolve/{revision}/{filename}``. Every answer about an existing
  file carries ``X-Repo-Commit`` (the commit the revision resolved to) and ``ETag``. A regular (git) file is served
  directly (``ETag`` = its git blob id, ``Content-Length``). An LFS file answers ``302`` with ``X-Linked-Etag`` (its
  sha256), ``X-Linked-Size`` and a ``Location`` on the CDN. Errors carry the ``X-Error-Code`` that huggingface_hub
  maps to its exceptions: ``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound`` (with ``X-Repo-Commit``),
  ``GatedRepo``.
* the CDN (``cdn``, another origin, like the Hub's LFS storage): ``GET /blobs/{sha256}``, with ``Range`` requests
  (``206`` + ``Content-Range``) so that an interrupted download can resume.

Repositories live in memory as ``{repo_id: {commit: {filename: bytes}}}`` with branch refs (``main`` -> commit).
Each test can inject faults (an HTTP status, a connection cut after N body bytes, bytes that differ from the
advertised sha256) and read back every request received.
"""

from __future__ import annotations

import hashlib
import re
import socket
import sys
import threading
from dataclasses import dataclass, field
from typing import Collection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<filename>.+)$")
_BLOB = re.compile(r"^/blobs/(?P<sha256>[0-9a-f]{64})$")
_RANGE = re.compile(r"^bytes=(?P<start>\d+)-(?P<end>\d*)$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_REASONS = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass(frozen=True)
class Request:
    """One request as the server received it."""

    origin: str  # "hub" or "cdn"
    method: str
    path: str
    range: str | None


@dataclass
class Fault:
    """A misbehaviour applied to the next ``times`` matching requests (every one when ``times`` is None)."""

    origin: str | None = None  # "hub", "cdn" or None for both
    method: str | None = None  # "HEAD", "GET" or None for both
    status: int | None = None  # answer with this status instead
    error_code: str | None = None  # with this X-Error-Code
    cut_after: int | None = None  # send this many body bytes, then drop the connection
    corrupt: bool = False  # serve other bytes of the same length (the advertised sha256 stays the real one)
    times: int | None = 1

    def matches(self, origin: str, method: str) -> bool:
        """True when this fault applies to a request (and still has uses left)."""
        return (self.times is None or self.times > 0) and self.origin in (None, origin) \
            and self.method in (None, method)


@dataclass
class _Repo:
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    lfs: set[str] = field(default_factory=set)


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data`` (the Hub's LFS object id)."""
    return hashlib.sha256(data).hexdigest()


def git_blob_id(data: bytes) -> str:
    """The git object id of a blob holding ``data`` (the Hub's ETag of a regular file)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    """The git-lfs pointer file stored in git for ``data`` (the Hub's ETag of an LFS file is its blob id)."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256_hex(data)}\nsize {len(data)}\n".encode()


def corrupted(data: bytes) -> bytes:
    """``data`` with every byte flipped: same length, other sha256."""
    return bytes(b ^ 0xFF for b in data)


class HubServer:
    """In-memory Hub + CDN on 127.0.0.1. Use :meth:`start` / :meth:`stop` (the pytest fixture does)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._repos: dict[str, _Repo] = {}
        self._faults: list[Fault] = []
        self._requests: list[Request] = []
        self._servers: dict[str, ThreadingHTTPServer] = {}
        self._threads: list[threading.Thread] = []
        self._commits = 0

    # -- lifecycle -----------------------------------------------------------------------------------------------
    def start(self) -> "HubServer":
        """Bind both servers to 127.0.0.1 on OS-chosen ports and serve them from daemon threads."""
        for origin in ("hub", "cdn"):
            server = _QuietServer(("127.0.0.1", 0), _handler_for(self, origin))
            self._servers[origin] = server
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                      name=f"hub-server-{origin}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop serving and close the listening sockets."""
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    @property
    def endpoint(self) -> str:
        """The Hub's base URL, for ``HF_ENDPOINT``."""
        return _url(self._servers["hub"])

    @property
    def cdn(self) -> str:
        """The CDN's base URL (LFS files redirect there)."""
        return _url(self._servers["cdn"])

    # -- content -------------------------------------------------------------------------------------------------
    def commit(self, repo_id: str, files: dict[str, bytes], *, branch: str = "main",
               lfs: bool | Collection[str] = True) -> str:
        """Add a commit on ``branch`` (creating the repo) that adds or replaces ``files``; return its 40-hex id.
        ``lfs``: every file is stored in LFS (True), none (False), or the files named."""
        with self._lock:
            repo = self._repos.setdefault(repo_id, _Repo())
            parent = repo.refs.get(branch)
            tree = dict(repo.commits[parent]) if parent else {}
            tree.update(files)
            self._commits += 1
            sha = hashlib.sha1(f"{repo_id}:{self._commits}:{sorted(tree)}".encode()).hexdigest()
            repo.commits[sha] = tree
            repo.refs[branch] = sha
            repo.lfs.difference_update(files)
            repo.lfs.update(set(files) if lfs is True else set() if lfs is False else set(lfs) & set(files))
            return sha

    def file_url(self, repo_id: str, filename: str, revision: str = "main") -> str:
        """The resolve URL of a file, as huggingface_hub builds it."""
        return f"{self.endpoint}/{repo_id}/resolve/{revision}/{filename}"

    # -- faults and records --------------------------------------------------------------------------------------
    def inject(self, **fault_fields) -> Fault:
        """Add a :class:`Fault` (see its fields); faults apply in the order they were added."""
        fault = Fault(**fault_fields)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()

    @property
    def requests(self) -> list[Request]:
        """Every request received so far, in order."""
        with self._lock:
            return list(self._requests)

    def reset_requests(self) -> None:
        """Forget the requests received so far."""
        with self._lock:
            self._requests.clear()

    # -- used by the request handler -----------------------------------------------------------------------------
    def _record(self, request: Request) -> Fault | None:
        """Record a request; return the first fault that applies to it (using one of its uses)."""
        with self._lock:
            self._requests.append(request)
            for fault in self._faults:
                if fault.matches(request.origin, request.method):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def _resolve(self, repo_id: str, revision: str, filename: str) -> tuple[int, dict[str, str], bytes | None]:
        """``(status, headers, content)`` for a resolve request; content is None when there is no file."""
        with self._lock:
            repo = self._repos.get(repo_id)
            if repo is None:
                return 404, _error("RepoNotFound", "Repository not found"), None
            commit = repo.refs.get(revision) or (revision if revision in repo.commits else None)
            if commit is None:
                return 404, _error("RevisionNotFound", f"Invalid rev id: {revision}"), None
            data = repo.commits[commit].get(filename)
            if data is None:
                return 404, {**_error("EntryNotFound", f"{filename} does not exist"), "X-Repo-Commit": commit}, None
            headers = {"X-Repo-Commit": commit}
            if filename in repo.lfs:
                digest = sha256_hex(data)
                headers.update({
                    "ETag": f'"{git_blob_id(lfs_pointer(data))}"',
                    "X-Linked-Etag": f'"{digest}"',
                    "X-Linked-Size": str(len(data)),
                    "Location": f"{self.cdn}/blobs/{digest}",
                })
                return 302, headers, data
            headers["ETag"] = f'"{git_blob_id(data)}"'
            return 200, headers, data

    def _blob(self, digest: str) -> bytes | None:
        """The content of the LFS object ``digest``, if any repo holds it."""
        with self._lock:
            for repo in self._repos.values():
                for tree in repo.commits.values():
                    for data in tree.values():
                        if sha256_hex(data) == digest:
                            return data
        return None


class _QuietServer(ThreadingHTTPServer):
    """A threaded server whose handler threads never block shutdown and that does not print the errors of
    connections the client (or a cut fault) dropped."""

    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address) -> None:
        """Ignore a dropped connection (part of what the tests do); report anything else."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


def _error(code: str, message: str) -> dict[str, str]:
    return {"X-Error-Code": code, "X-Error-Message": message}


def _handler_for(hub: HubServer, origin: str) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``hub``, serving the ``origin`` ("hub" or "cdn") side."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the Hub; every response has a Content-Length

        def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
            self._serve()

        def do_GET(self) -> None:  # noqa: N802
            self._serve()

        def log_message(self, format: str, *args) -> None:  # noqa: A002 (silence the default stderr log)
            pass

        def _serve(self) -> None:
            path = urlsplit(self.path).path
            fault = hub._record(Request(origin, self.command, path, self.headers.get("Range")))
            if fault is not None and fault.status is not None:
                headers = _error(fault.error_code, "injected fault") if fault.error_code else {}
                return self._send(fault.status, headers, b"")
            if origin == "cdn":
                return self._serve_cdn(path, fault)
            match = _RESOLVE.match(path)
            if match is None:
                return self._send(404, {}, b"")
            status, headers, data = hub._resolve(match["repo"], unquote(match["revision"]), unquote(match["filename"]))
            if status == 200:
                return self._send_content(data, headers, fault)
            self._send(status, headers, b"")

        def _serve_cdn(self, path: str, fault: Fault | None) -> None:
            match = _BLOB.match(path)
            data = hub._blob(match["sha256"]) if match else None
            if data is None:
                return self._send(404, {}, b"")
            self._send_content(data, {"ETag": f'"{match["sha256"]}"'}, fault)

        def _send_content(self, data: bytes, headers: dict[str, str], fault: Fault | None) -> None:
            """Send ``data`` (or the requested range of it), applying a cut or corruption fault."""
            if fault is not None and fault.corrupt:
                data = corrupted(data)
            status, body = 200, data
            headers = {**headers, "Accept-Ranges": "bytes"}
            wanted = _RANGE.match(self.headers.get("Range") or "")
            if wanted:
                start = int(wanted["start"])
                end = int(wanted["end"]) if wanted["end"] else len(data) - 1
                if start >= len(data):
                    return self._send(416, {"Content-Range": f"bytes */{len(data)}"}, b"")
                status, body = 206, data[start:end + 1]
                headers["Content-Range"] = f"bytes {start}-{start + len(body) - 1}/{len(data)}"
            cut = fault.cut_after if fault is not None else None
            self._send(status, headers, body, cut_after=cut)

        def _send(self, status: int, headers: dict[str, str], body: bytes, cut_after: int | None = None) -> None:
            """Send a response whose Content-Length is ``len(body)``; with ``cut_after``, drop the connection
            after that many body bytes."""
            self.send_response(status, _REASONS.get(status))
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if cut_after is None:
                self.wfile.write(body)
                return
            self.wfile.write(body[:cut_after])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    return Handler


def closed_port() -> socket.socket:
    """A socket bound to a 127.0.0.1 port (the OS picks) that does not listen: connections to it are refused.
    Keep it open while the port is in use, so that no other process can take the port; close it after."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def use_local_hub(monkeypatch, endpoint: str) -> None:
    """Point the huggingface_hub client at ``endpoint`` (a server on 127.0.0.1) and let it use the network for one
    test (``monkeypatch`` undoes it); name look-ups and connections to any other host are refused meanwhile."""
    from huggingface_hub import constants

    assert endpoint.startswith("http://127.0.0.1:")
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", b"127.0.0.1"):
            raise OSError(f"test network is loopback-only: refused to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(sock, address):
        if isinstance(address, tuple) and address[0] != "127.0.0.1":
            raise OSError(f"test network is loopback-only: refused to connect to {address!r}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", True)  # never send a token of this machine
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)


class CommitApi:
    """The two ``HfApi`` calls ``zoo.publish`` makes (``create_repo``, ``create_commit``), answered by a
    :class:`HubServer`: the commit's own ``CommitOperationAdd`` objects are read and committed to the server, LFS
    for ``*.safetensors`` (as the Hub's ``.gitattributes`` does), so what ``zoo publish`` sends is what
    ``hf_hub_download`` then serves. Every call is recorded in ``calls``."""

    def __init__(self, server: HubServer) -> None:
        self.server = server
        self.calls: list[tuple[str, str]] = []

    def create_repo(self, repo_id: str, **kwargs):
        from huggingface_hub.hf_api import RepoUrl

        self.calls.append(("create_repo", repo_id))
        return RepoUrl(f"{self.server.endpoint}/{repo_id}", endpoint=self.server.endpoint)

    def create_commit(self, repo_id: str, operations, **kwargs):
        from huggingface_hub.hf_api import CommitInfo

        files = {}
        for op in operations:
            with op.as_file() as fh:
                files[op.path_in_repo] = fh.read()
        sha = self.server.commit(repo_id, files, lfs=[name for name in files if name.endswith(".safetensors")])
        self.calls.append(("create_commit", repo_id))
        return CommitInfo(commit_url=f"{self.server.endpoint}/{repo_id}/commit/{sha}",
                          commit_message=kwargs.get("commit_message", ""), commit_description="", oid=sha)
