"""Bundled sample images, addressable from every command as ``sample:NAME``.

Example:
    $ medcli info sample:t1
    $ medcli segment sample:t1 -o mask.nii.gz
"""

from __future__ import annotations

from pathlib import Path

from medcli.errors import InputError

DATA = Path(__file__).parent / "data"

#: name -> (file under medcli/data, description)
SAMPLES: dict[str, tuple[str, str]] = {
    "t1": ("mni152_t1_1mm.nii.gz", "MNI152 2009a symmetric T1, 1 mm, skull-stripped (ICBM licence)"),
    "gm": ("mni152_gm_1mm.nii.gz", "MNI152 2009a grey-matter probability map (0-255)"),
    "wm": ("mni152_wm_1mm.nii.gz", "MNI152 2009a white-matter probability map (0-255)"),
    "ct": ("ct_small.dcm", "128x128 CT slice, HU via rescale intercept -1024 (pydicom, MIT)"),
    "mr": ("mr_small.dcm", "64x64 MR slice (pydicom, MIT)"),
}


def sample_path(name: str) -> Path:
    """The file of a bundled sample.

    Raises:
        InputError: unknown sample name (the message lists the known ones).
    """
    if name not in SAMPLES:
        known = ", ".join(f"sample:{n}" for n in SAMPLES)
        raise InputError(f"unknown sample (known: {known})", f"sample:{name}")
    return DATA / SAMPLES[name][0]
