"""NIfTI streams on stdin/stdout, so that commands chain with ``|``.

The stream is a whole NIfTI-1 (or -2) file, gzipped or not (detected by the
gzip magic bytes). Writing is uncompressed: a pipe is not a disk, and zlib
would cost more time than it saves.
"""

from __future__ import annotations

import gzip
import sys
import zlib

from medcli.errors import InputError, ProcessingError
from medcli.image import Image

_GZIP_MAGIC = b"\x1f\x8b"


def read_stdin() -> Image:
    stdin = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin
    if hasattr(stdin, "isatty") and stdin.isatty():
        raise InputError("stdin is a terminal; pipe an image into '-' or give a file name", "-")
    raw = stdin.read()
    return image_from_bytes(raw, "-")


def image_from_bytes(raw: bytes, name: str = "-") -> Image:
    import nibabel as nib

    from medcli.io.nifti import from_nibabel

    if not raw:
        raise InputError("empty stream (expected a NIfTI image)", name)
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as e:
            raise InputError(f"corrupt or truncated gzip stream ({e})", name) from e
    cls = None
    if len(raw) >= 348 and raw[344:348] in (b"n+1\0", b"ni1\0"):
        cls = nib.Nifti1Image
    elif len(raw) >= 540 and raw[4:8] in (b"n+2\0", b"ni2\0"):
        cls = nib.Nifti2Image
    if cls is None:
        raise InputError("stream is not a NIfTI-1/2 image (pipes carry NIfTI only)", name)
    try:
        nimg = cls.from_bytes(raw)
        img = from_nibabel(nimg, name)
        img.data  # noqa: B018 - read now: a short stream must fail here, not later
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"truncated or corrupt NIfTI stream ({str(e)[:120]})", name) from e
    img.meta["source"] = name
    return img


def image_to_bytes(image: Image) -> bytes:
    from medcli.io.nifti import to_nibabel

    return to_nibabel(image).to_bytes()


def write_stdout(image: Image) -> None:
    out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else sys.stdout
    if hasattr(out, "isatty") and out.isatty():
        raise ProcessingError("refusing to write image bytes to a terminal; redirect stdout or use -o FILE", "-")
    payload = image_to_bytes(image)
    try:
        out.write(payload)
        out.flush()
    except BrokenPipeError as e:
        raise ProcessingError("stdout closed before the image was written (broken pipe)", "-") from e
