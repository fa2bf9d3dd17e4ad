"""Architecture registry: a model spec's ``architecture`` name -> module builder.

Builders are imported lazily so that registering an architecture costs nothing
until a model of that kind is used.

Example:
    >>> spec = {"architecture": "unet", "params": {"dim": 3, "in_channels": 1, "out_channels": 4}}
    >>> net = build(spec)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

#: architecture name -> "module:callable" taking the spec's params as keyword arguments.
ARCHITECTURES: dict[str, str] = {
    "unet": "medcli.engine.unet:UNet",
    "deepbet": "medcli.engine.deepbet:DeepBetNet",
    "hdbet": "medcli.engine.hdbet:HDBetNet",
    "unrolled_mri": "medcli.recon.mri.learned:UnrolledNet",
    "plane-classifier": "medcli.engine.classify:PlaneClassifier",
    "landmark-match": "medcli.landmarks.learned:MatchNet",
    "centernet3d": "medcli.detect.net:CenterNet3D",
}


def build(spec: dict[str, Any]):
    """Instantiate the torch module that a model spec describes."""
    from medcli.errors import ProcessingError

    name = spec.get("architecture")
    if name not in ARCHITECTURES:
        raise ProcessingError(f"unknown architecture {name!r} (known: {', '.join(ARCHITECTURES)})")
    module, attr = ARCHITECTURES[name].split(":")
    cls = getattr(importlib.import_module(module), attr)
    return cls(**spec.get("params", {}))
