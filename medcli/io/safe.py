"""Atomic, no-clobber writing of output files.

Every output of medcli goes through :func:`atomic_output`: the writer fills a
temporary file in the destination folder (same file system, so the final
``os.replace`` is atomic) and only a complete file gets the real name. On any
error, Ctrl-C or SIGTERM the temporary file is removed and an existing file at
the destination is left untouched. SIGKILL cannot be caught: it may leave the
temporary file (``.NAME.medcli-PID@HOST-tmp.EXT``, never the output's name),
which the next write to the same output removes once PID is gone.
"""

from __future__ import annotations

import atexit
import errno
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from medcli.errors import InputError, ProcessingError

_pending: set[Path] = set()
_lock = threading.Lock()


def _cleanup() -> None:
    with _lock:
        for p in list(_pending):
            try:
                if p.is_dir():
                    import shutil

                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink()
            except OSError:
                pass
            _pending.discard(p)


atexit.register(_cleanup)


def suffixes(path: str | Path) -> str:
    """The format suffix of a path: ``.nii.gz`` for ``a.b.nii.gz``."""
    name = Path(path).name.lower()
    for double in (".nii.gz", ".tar.gz", ".fcsv.gz"):
        if name.endswith(double):
            return Path(path).name[-len(double):]
    return Path(path).suffix


def check_writable(dest: str | Path, force: bool) -> Path:
    """Fail early (before any work) when ``dest`` cannot be written.

    Raises:
        ProcessingError: the folder is missing or read-only, or the file exists
            and ``force`` is false.
    """
    dest = Path(dest)
    folder = dest.parent if str(dest.parent) else Path(".")
    if not folder.is_dir():
        raise ProcessingError("output folder does not exist", folder)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ProcessingError("output folder is not writable", folder)
    if dest.exists() and not force:
        raise ProcessingError("output exists (use --force to overwrite)", dest)
    if dest.is_dir():
        raise ProcessingError("output is a directory", dest)
    return dest


@contextmanager
def atomic_output(dest: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; rename it to ``dest`` on success.

    Example:
        >>> with atomic_output("out.json", force=True) as tmp:  # doctest: +SKIP
        ...     tmp.write_text("{}")
    """
    dest = check_writable(dest, force)
    stem, ext = dest.name[: -len(suffixes(dest)) or None], suffixes(dest)
    _remove_stale_temps(dest.parent, stem, ext)
    tmp = dest.parent / f".{stem}.medcli-{os.getpid()}@{_HOST}-tmp{ext}"
    with _lock:
        _pending.add(tmp)
    try:
        yield tmp
        if not tmp.exists():
            raise ProcessingError("writer produced no file", dest)
        _fsync(tmp)
        if dest.exists() and not force:  # someone else wrote it meanwhile
            raise ProcessingError("output exists (use --force to overwrite)", dest)
        os.replace(tmp, dest)
    except OSError as e:
        raise _os_error(e, dest) from e
    finally:
        with _lock:
            _pending.discard(tmp)
        if tmp.exists():
            try:
                tmp.unlink()
            except OSError:
                pass


def _host() -> str:
    import re
    import socket

    return re.sub(r"[^A-Za-z0-9_-]", "", socket.gethostname().split(".")[0])[:32] or "host"


#: In temporary names, so that only this machine's dead writers are cleaned (shared file systems).
_HOST = _host()


def _remove_stale_temps(folder: Path, stem: str, ext: str) -> None:
    """Remove temporary files of earlier writes to the same output whose process is gone.

    SIGKILL (the OOM killer, a scheduler's hard limit) leaves the temporary
    file of an interrupted write; it never has the output's name, and the
    next write to that output removes it. Only files of processes of this
    host are touched: on a shared file system another node's writer is alive
    whatever this host's process table says.
    """
    import glob
    import re

    pattern = re.compile(rf"\.medcli-(\d+)@{re.escape(_HOST)}-tmp{re.escape(ext)}$")
    try:
        found = list(folder.glob(f".{glob.escape(stem)}.medcli-*@{glob.escape(_HOST)}-tmp{glob.escape(ext)}"))
    except OSError:
        return
    for p in found:
        m = pattern.search(p.name)
        if not m or int(m.group(1)) == os.getpid() or _alive(int(m.group(1))):
            continue
        try:
            p.unlink()
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or cannot tell: keep its file
    return True


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _os_error(e: OSError, dest: Path) -> ProcessingError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return ProcessingError("disk full (no space left); nothing was written", dest)
    if e.errno == errno.EFBIG:
        return ProcessingError("file too large for this file system or limit; nothing was written", dest)
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ProcessingError("permission denied; nothing was written", dest)
    return ProcessingError(f"cannot write: {e.strerror or e}", dest)


def os_error_to_input(e: OSError, path: str | Path) -> InputError:
    """A one-line input error for an ``OSError`` raised while reading ``path``."""
    if e.errno == errno.ENOENT:
        return InputError("no such file or directory", path)
    if e.errno in (errno.EACCES, errno.EPERM):
        return InputError("permission denied", path)
    if e.errno == errno.EISDIR:
        return InputError("is a directory", path)
    return InputError(f"cannot read: {e.strerror or e}", path)
