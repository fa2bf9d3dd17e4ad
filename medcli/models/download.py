"""Downloads that cannot hurt: resumed, retried, locked, verified, atomic.

One function, :func:`download`, fetches a file whose sha256 is known in
advance into a cache folder:

* **One transfer per file**, however many processes ask at once (an array job
  of 500 tasks starting together): a :class:`filelock.FileLock` beside the
  destination serialises them; the first downloads, the others wait and then
  find the verified file in place.
* **Resumed**: bytes go to ``NAME.part``; after a cut connection the next
  attempt asks for the rest with an HTTP ``Range`` header (a server that
  ignores it sends the whole file again and the part is rewritten).
* **Retried** with exponential back-off on connection errors, time-outs and
  5xx answers; a 4xx answer moves on to the next mirror at once.
* **Verified**: the size and sha256 are checked before an atomic
  :func:`os.replace` makes the file visible, so a truncated or corrupt file is
  never installed; a complete ``.part`` with the wrong hash is deleted.
* **Proxies** come from the environment (``https_proxy``, ``no_proxy``, ...) as
  :mod:`urllib.request` reads them; every socket operation has a time-out.
* A **progress bar** (rich, on stderr) only when stderr is a terminal.

Tuning (environment): ``MEDCLI_DOWNLOAD_TIMEOUT`` (seconds per socket
operation, default 30), ``MEDCLI_DOWNLOAD_RETRIES`` (attempts per URL,
default 5), ``MEDCLI_DOWNLOAD_BACKOFF`` (first wait in seconds, doubled each
time, default 1).

Why not pooch: it downloads to a temporary file and renames, but does not
resume with Range, does not lock across processes (N processes make N
transfers) and its errors are not the one-line messages medcli promises.

Example:
    >>> from pathlib import Path
    >>> download(["https://example.org/w.safetensors"], Path("cache/w.safetensors"),
    ...          sha256="9f86d0...", size=1234)  # doctest: +SKIP
    PosixPath('cache/w.safetensors')
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

from medcli.errors import ProcessingError

CHUNK = 1 << 16
USER_AGENT = "medcli-model-hub"


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


def umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(path: Path, sha256: str, size: int | None = None) -> bool:
    """True when the file exists with this size (when known) and sha256."""
    try:
        if size is not None and path.stat().st_size != size:
            return False
    except OSError:
        return False
    return sha256_file(path) == sha256.lower()


class _Retry(Exception):
    """A failure worth another attempt at the same URL (cut, time-out, 5xx)."""


class _NextURL(Exception):
    """A failure that another attempt at the same URL will not fix (4xx, bad hash)."""


def download(
    urls: Sequence[str],
    dest: Path,
    sha256: str,
    size: int | None = None,
    *,
    label: str | None = None,
    timeout: float | None = None,
    retries: int | None = None,
    backoff: float | None = None,
) -> Path:
    """Make ``dest`` exist with this sha256, downloading it from the first URL that works.

    Args:
        urls: Mirrors, tried in order.
        dest: Final path; its folder is created. ``dest.part`` and ``dest.lock`` sit beside it.
        sha256: Expected hex digest; nothing else is ever installed at ``dest``.
        size: Expected size in bytes, when known (checked before the hash).
        label: Name used in messages (default: the file name).
        timeout: Seconds per socket operation (default ``MEDCLI_DOWNLOAD_TIMEOUT`` or 30).
        retries: Attempts per URL (default ``MEDCLI_DOWNLOAD_RETRIES`` or 5).
        backoff: First wait between attempts, doubled each time (default ``MEDCLI_DOWNLOAD_BACKOFF`` or 1).

    Returns:
        ``dest``, verified.

    Raises:
        ProcessingError: every URL failed; the message says why, on one line.
    """
    from filelock import FileLock, Timeout

    from medcli.runtime import log

    label = label or dest.name
    timeout = timeout if timeout is not None else _env_float("MEDCLI_DOWNLOAD_TIMEOUT", 30.0)
    retries = max(1, int(retries if retries is not None else _env_float("MEDCLI_DOWNLOAD_RETRIES", 5)))
    backoff = backoff if backoff is not None else _env_float("MEDCLI_DOWNLOAD_BACKOFF", 1.0)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ProcessingError(f"cannot create the model cache folder: {e.strerror}", dest.parent) from e
    # Group-writable under a group umask, so that users sharing a cache can all take the lock.
    lock = FileLock(str(dest) + ".lock", mode=0o666 & ~umask())
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info(f"{label}: another process is downloading it; waiting")
            lock.acquire()
    except OSError as e:
        raise ProcessingError(f"cannot write to the model cache ({e.strerror}); set MEDCLI_HOME to a writable folder", dest.parent) from e
    try:
        # The process that held the lock before us may have installed it already.
        if dest.exists():
            if verify_file(dest, sha256, size):
                return dest
            log.warning(f"{label}: cached copy is corrupt; downloading it again")
            dest.unlink()
        if not urls:
            raise ProcessingError(f"{label}: no download URL is known for this file")
        errors: list[str] = []
        for url in urls:
            try:
                _fetch_url(url, dest, sha256, size, label, timeout, retries, backoff)
                return dest
            except _NextURL as e:
                errors.append(str(e))
                log.info(f"{label}: {e}")
        raise ProcessingError(f"cannot download {label}: {errors[-1]}" + (f" (and {len(errors) - 1} other mirror(s) failed)" if len(errors) > 1 else ""))
    finally:
        lock.release()


def _fetch_url(url: str, dest: Path, sha256: str, size: int | None, label: str, timeout: float, retries: int, backoff: float) -> None:
    """Try one URL ``retries`` times, resuming into ``dest.part``; install on success."""
    from medcli.runtime import log

    part = dest.with_name(dest.name + ".part")
    last = ""
    for attempt in range(retries):
        if attempt:
            wait = backoff * 2 ** (attempt - 1)
            log.info(f"{label}: {last}; retrying in {wait:g} s ({attempt + 1}/{retries})")
            time.sleep(wait)
        try:
            _transfer(url, part, size, label, timeout)
        except _Retry as e:
            last = str(e)
            continue
        got = part.stat().st_size
        if size is not None and got != size:
            part.unlink()
            raise _NextURL(f"{url} sent {got} bytes, expected {size}")
        if sha256_file(part) != sha256.lower():
            # A complete file with the wrong hash will not get better by resuming it.
            part.unlink()
            raise _NextURL(f"sha256 mismatch for the file from {url} (corrupt or tampered; nothing installed)")
        with open(part, "rb") as f:
            os.fsync(f.fileno())
        os.replace(part, dest)
        return
    raise _NextURL(f"{last} (gave up after {retries} attempts at {url})")


def _transfer(url: str, part: Path, size: int | None, label: str, timeout: float) -> None:
    """Append the missing bytes of ``url`` to ``part``; raise _Retry when cut short."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if size is not None and offset == size:
        return
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - http(s) URLs from the registry or the user
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            # Range past the end: our part may be complete already; the hash decides.
            return
        if e.code in (408, 429) or e.code >= 500:
            raise _Retry(f"HTTP {e.code} {e.reason} from {url}") from e
        raise _NextURL(f"HTTP {e.code} {e.reason} from {url}") from e
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise _Retry(f"no answer from {url} within {timeout:g} s") from e
        raise _Retry(f"cannot reach {url}: {reason}") from e
    except (socket.timeout, TimeoutError) as e:
        raise _Retry(f"no answer from {url} within {timeout:g} s") from e
    except (OSError, http.client.HTTPException) as e:
        raise _Retry(f"cannot reach {url}: {e}") from e
    with resp:
        status = getattr(resp, "status", 200)
        if offset and status != 206:
            offset = 0  # the server ignored Range: start over
        elif offset and not (resp.headers.get("Content-Range") or "").startswith(f"bytes {offset}-"):
            # A 206 for other bytes than we asked: appending them would corrupt the part.
            part.unlink()
            raise _Retry(f"{url} answered a range other than bytes {offset}-")
        length = resp.headers.get("Content-Length")
        expected_total = (offset + int(length)) if length and length.isdigit() else size
        mode = "ab" if offset else "wb"
        received = offset
        try:
            with open(part, mode) as out, _progress(label, expected_total, offset) as advance:
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    received += len(block)
                    advance(len(block))
        except (socket.timeout, TimeoutError) as e:
            raise _Retry(f"{url} stalled for {timeout:g} s after {received} bytes") from e
        except (OSError, http.client.HTTPException) as e:
            if isinstance(e, OSError) and e.errno is not None and not isinstance(e, ConnectionError):
                # A local write failure (disk full, read-only cache): no point retrying.
                raise ProcessingError(f"cannot write the download: {e.strerror}", part) from e
            raise _Retry(f"connection to {url} cut after {received} bytes") from e
    if expected_total is not None and received < expected_total:
        raise _Retry(f"connection to {url} cut after {received} of {expected_total} bytes")


def _progress(label: str, total: int | None, done: int):
    """A byte progress bar on stderr when a person watches; else a no-op."""
    from contextlib import contextmanager

    from medcli.runtime import progress_enabled

    @contextmanager
    def _cm() -> "Callable[[int], None]":
        if not (progress_enabled() and sys.stderr.isatty()):
            yield lambda n: None
            return
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as bar:
            task = bar.add_task(label, total=total, completed=done)
            yield lambda n: bar.advance(task, n)

    return _cm()
