"""Helpers of tests/models: a loopback HTTP server that misbehaves on demand, and an isolated hub environment.

The server supports Range requests and counts what it sends, and can, per
path, cut the connection after N bytes, answer an HTTP error, stall past the
client's time-out, ignore Range, or trickle bytes slowly (so that concurrent
clients overlap).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


@dataclass
class Rule:
    cut_after: int | None = None  # bytes of the body sent before the connection is dropped
    cuts: int = 1  # how many requests get cut
    status: int | None = None  # answer this HTTP error instead
    stall: float = 0.0  # seconds of silence before the headers
    ignore_range: bool = False
    delay: float = 0.0  # seconds between 64 KiB chunks
    redirect: str | None = None  # answer 302 to this path (mirrors such as GitHub releases redirect)


@dataclass
class Served:
    """State shared between the test and the server threads."""

    files: dict[str, bytes | Path] = field(default_factory=dict)
    rules: dict[str, Rule] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    sent: dict[str, int] = field(default_factory=dict)  # body bytes sent per path
    lock: threading.Lock = field(default_factory=threading.Lock)

    def gets(self, path: str) -> list[str | None]:
        """The Range header of each request for ``path``."""
        with self.lock:
            return [r for p, r in self.requests if p == path]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    served: Served

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):  # noqa: N802
        s = self.served
        path = self.path.split("?", 1)[0]
        rng = self.headers.get("Range")
        with s.lock:
            s.requests.append((path, rng))
            rule = s.rules.get(path, Rule())
            cut = rule.cut_after if rule.cuts > 0 else None
            if cut is not None:
                rule.cuts -= 1
        if rule.stall:
            time.sleep(rule.stall)
            self.close_connection = True
            return
        if rule.status:
            self.send_error(rule.status)
            return
        if rule.redirect:
            self.send_response(302)
            self.send_header("Location", rule.redirect)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path not in s.files:
            self.send_error(404)
            return
        src = s.files[path]
        total = src.stat().st_size if isinstance(src, Path) else len(src)
        start = 0
        if rng and not rule.ignore_range and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= total:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{total}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(total - start))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        limit = total - start if cut is None else min(cut, total - start)
        with (open(src, "rb") if isinstance(src, Path) else _BytesReader(src)) as f:
            f.seek(start)
            done = 0
            while done < limit:
                block = f.read(min(1 << 16, limit - done))
                try:
                    self.wfile.write(block)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    break
                done += len(block)
                with s.lock:
                    s.sent[path] = s.sent.get(path, 0) + len(block)
                if rule.delay:
                    time.sleep(rule.delay)
        if cut is not None:
            self.close_connection = True


class _BytesReader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def seek(self, pos):
        self.pos = pos

    def read(self, n):
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


@pytest.fixture
def server():
    """A loopback server: ``srv.served.files['/x'] = b'...'``; ``srv.url('/x')``."""
    served = Served()
    handler = type("Handler", (_Handler,), {"served": served})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    class Srv:
        def url(self, path: str) -> str:
            return f"http://127.0.0.1:{httpd.server_port}{path}"

    srv = Srv()
    srv.served = served
    srv.base = f"http://127.0.0.1:{httpd.server_port}"
    yield srv
    httpd.shutdown()
    httpd.server_close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_registry(path: Path, models: dict[str, dict]) -> Path:
    """A registry TOML for tests: ``{name: {"files": [...], "folds": [...], other keys}}``."""
    lines = ["schema = 1"]
    for name, m in models.items():
        lines.append(f"[models.{name}]")
        base = {"version": "1.0", "task": "test", "architecture": "unet", "licence": "CC0-1.0", "summary": f"test model {name}"}
        for k, v in {**base, **{k: v for k, v in m.items() if k not in ("files", "folds", "labels")}}.items():
            lines.append(f"{k} = {_toml(v)}")
        for key in ("files", "folds"):
            for f in m.get(key, []):
                lines.append(f"[[models.{name}.{key}]]")
                lines += [f"{k} = {_toml(v)}" for k, v in f.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    """An empty cache in tmp, no site folders, online, fast retries; returns a dict of the env."""
    env = {
        "MEDCLI_HOME": str(tmp_path / "home"),
        "MEDCLI_DOWNLOAD_BACKOFF": "0.05",
        "MEDCLI_DOWNLOAD_TIMEOUT": "5",
        "MEDCLI_DOWNLOAD_RETRIES": "3",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("MEDCLI_MODELS_PATH", "MEDCLI_OFFLINE", "MEDCLI_MODEL_URL", "MEDCLI_REGISTRY"):
        monkeypatch.delenv(k, raising=False)
    env.update({"MEDCLI_MODELS_PATH": "", "MEDCLI_OFFLINE": "", "MEDCLI_MODEL_URL": ""})
    return env


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Relative path -> (size, mtime_ns) of everything under ``folder``, folders included."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for n in dirs + files:
            p = Path(root) / n
            st = p.stat()
            out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out
