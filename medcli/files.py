"""What medcli says about input and output files by their names and bytes: image suffixes, sidecars, checksums.

The batch engine (:mod:`medcli.cli.command`), the commands and the packages below them (``report``) name files the
same way, so this sits at the bottom layer with :mod:`medcli.errors`; it imports nothing heavy (``medcli --help``
loads it).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

#: Suffixes of the image files medcli reads (a ``.dcm`` file or a DICOM folder is one series).
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mgz", ".mgh", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")


def sha256_of(path: str) -> str | None:
    """The sha256 of the file at ``path`` (of the bundled file for ``sample:NAME``); None for ``-`` or no file.

    Example:
        >>> sha256_of("-") is None
        True
    """
    if path == "-" or path.startswith("sample:") or not Path(path).is_file():
        if path.startswith("sample:"):
            from medcli.samples import sample_path

            return sha256_of(str(sample_path(path[7:])))
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sidecar_path(output: str) -> str:
    """The JSON sidecar of an output image, BIDS style.

    Example:
        >>> sidecar_path("out/sub-01_T1w.nii.gz")
        'out/sub-01_T1w.json'
    """
    low = output.lower()
    for suf in IMAGE_SUFFIXES:
        if low.endswith(suf):
            return output[: -len(suf)] + ".json"
    return output + ".json"
