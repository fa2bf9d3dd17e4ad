"""Rendered command help, kept on disk so that ``medcli CMD --help`` answers at once.

Rendering a command's help costs far more than printing it: typer builds the
click command by introspecting the declaration (through pydantic), rich lays
out the panels, and the command module's own imports (numpy...) come along;
about 3x the start of Python itself. The text depends only on

* the declaration: the sources of the medcli modules imported to build it
  (recorded with their sizes and modification times, checked on every hit,
  so an edited declaration shows at the next call);
* the library versions (medcli, typer, click, rich, Python);
* the terminal: width, colour, the environment variables rich and typer read.

The first call renders the help as usual (from the one declaration) and
records what it printed; later calls with the same key print the record.
``MEDCLI_HELP_CACHE=0`` turns the cache off. A cache that cannot be written
(read-only home) is simply not used.

Example:
    >>> request(["convert", "--help"])
    ('convert',)
    >>> request(["convert", "in.nii.gz", "--help"]) is None  # a file name: not a plain help request
    True
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import sys
from pathlib import Path

_WORD = re.compile(r"^[a-z][a-z0-9_-]{0,40}$")

#: Environment variables that change how click, typer or rich lay out help.
_ENV = ("COLUMNS", "LINES", "TERM", "NO_COLOR", "FORCE_COLOR", "PY_COLORS", "TERMINAL_WIDTH",
        "_TYPER_FORCE_DISABLE_TERMINAL", "GITHUB_ACTIONS", "TTY_COMPATIBLE", "TTY_INTERACTIVE",
        "JUPYTER_COLUMNS", "JUPYTER_LINES", "LANG", "LC_ALL", "PYTHONIOENCODING")


def enabled() -> bool:
    return os.environ.get("MEDCLI_HELP_CACHE", "1").strip().lower() not in ("0", "no", "off", "false")


def request(argv: list[str]) -> tuple[str, ...] | None:
    """The command words of a plain ``medcli WORD [WORD] --help`` request, else None."""
    if len(argv) < 2 or len(argv) > 3 or argv[-1] not in ("--help", "-h"):
        return None
    words = tuple(argv[:-1])
    if not all(_WORD.match(w) for w in words):
        return None
    return words


def _root() -> Path:
    env = os.environ.get("MEDCLI_HOME", "").strip()
    if env:
        return Path(env).expanduser() / "help"
    import platformdirs

    return Path(platformdirs.user_cache_dir("medcli", appauthor=False)) / "help"


def _terminal() -> list:
    out = []
    for fd in (0, 1, 2):
        try:
            tty = os.isatty(fd)
            size = tuple(os.get_terminal_size(fd)) if tty else None
        except (OSError, ValueError):
            tty, size = False, None
        out.append([tty, size])
    return out


def _key(words: tuple[str, ...]) -> str:
    from importlib.metadata import PackageNotFoundError, version

    from medcli import __version__

    libs = []
    for lib in ("typer", "click", "rich"):
        try:
            libs.append(version(lib))
        except PackageNotFoundError:
            libs.append(None)
    doc = [__version__, sys.version, sys.executable, libs, list(words), _terminal(),
           {k: os.environ.get(k) for k in _ENV}]
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


def _stamp(path: str) -> list | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def lookup(words: tuple[str, ...]) -> str | None:
    """The recorded help for ``words`` if every source it came from is unchanged."""
    if not enabled():
        return None
    try:
        doc = json.loads((_root() / f"{_key(words)}.json").read_text(encoding="utf-8"))
        sources = doc["sources"]
        if not sources or any(_stamp(p) != stamp for p, stamp in sources.items()):
            return None
        text = doc["text"]
        return text if isinstance(text, str) and text else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store(words: tuple[str, ...], text: str) -> None:
    """Record ``text`` as the help of ``words``, with the medcli sources loaded to render it."""
    if not enabled() or not text:
        return
    pkg = str(Path(__file__).resolve().parents[1])
    sources = {}
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if f and os.path.abspath(f).startswith(pkg + os.sep):
            stamp = _stamp(f)
            if stamp is not None:
                sources[os.path.abspath(f)] = stamp
    registry = os.path.join(pkg, "models", "registry.toml")  # model choices may come from it
    if _stamp(registry) is not None:
        sources[registry] = _stamp(registry)
    try:
        folder = _root()
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / f"{_key(words)}.json"
        tmp = folder / f".{dest.name}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"words": list(words), "sources": sources, "text": text}), encoding="utf-8")
        os.replace(tmp, dest)  # concurrent writers: the last complete record wins
    except OSError:
        pass


class Recorder(io.TextIOBase):
    """Stands in for stdout while help renders: passes everything through and keeps a copy.

    It answers ``isatty``/``fileno``/``encoding`` as the real stream does, so
    rich and click choose the same width and colours as without it.
    """

    def __init__(self, real) -> None:
        super().__init__()
        self.real = real
        self.parts: list[str] = []

    def write(self, s) -> int:
        if isinstance(s, (bytes, bytearray)):  # click.echo of bytes writes them as they are
            self.parts.append(bytes(s).decode(self.real.encoding or "utf-8", "replace"))
            self.real.flush()
            return self.real.buffer.write(s)
        self.parts.append(s)
        return self.real.write(s)

    def flush(self) -> None:
        self.real.flush()

    def isatty(self) -> bool:
        return self.real.isatty()

    def fileno(self) -> int:
        return self.real.fileno()

    @property
    def encoding(self):  # type: ignore[override]
        return self.real.encoding

    @property
    def errors(self):  # type: ignore[override]
        return self.real.errors

    def writable(self) -> bool:
        return True

    def getvalue(self) -> str:
        return "".join(self.parts)
