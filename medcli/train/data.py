"""Training batches: one reproducible batch per step, made in background workers.

The batch of step ``s`` is drawn from ``numpy.random.default_rng([seed, s, i])``
for its sample ``i``, whatever process draws it, so that training does not
depend on the number of workers and a run resumed at step ``s`` sees exactly
the batches an uninterrupted run would have seen.

A *generator* is any importable ``fn(rng, **settings) -> (input, target)``
returning one sample as numpy arrays: input ``(C, *patch)`` float32, target
``patch`` integer labels (segmentation) or ``(C, *patch)`` float32
(regression).

Example:
    >>> fn = resolve("medcli.train.toy:blobs")
    >>> x, y = make_batch(fn, {"size": 32}, seed=0, step=1, batch=2)
    >>> tuple(x.shape), tuple(y.shape)
    ((2, 1, 32, 32), (2, 32, 32))
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np


def resolve(ref: str) -> Callable[..., Any]:
    """``"package.module:function"`` -> the function.

    Raises:
        ValueError: not of that form, or not importable.
    """
    if ":" not in ref:
        raise ValueError(f"{ref!r} is not 'module:function'")
    module, attr = ref.split(":", 1)
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot import {ref!r}: {e}") from e


def make_batch(fn: Callable[..., Any], settings: dict[str, Any], seed: int, step: int, batch: int):
    """The batch of ``step`` as torch tensors (input float32, target long or float32)."""
    import torch

    xs, ys = [], []
    for i in range(batch):
        x, y = fn(np.random.default_rng([seed, step, i]), **settings)
        xs.append(x)
        ys.append(y)
    x = torch.from_numpy(np.stack(xs).astype(np.float32))
    y = np.stack(ys)
    y = torch.from_numpy(y.astype(np.int64) if np.issubdtype(y.dtype, np.integer) else y.astype(np.float32))
    return x, y


class StepBatches:
    """Map-style dataset: index = step number, item = that step's batch."""

    def __init__(self, ref: str, settings: dict[str, Any], seed: int, batch: int):
        self.ref, self.settings, self.seed, self.batch = ref, settings, seed, batch

    def __getitem__(self, step: int):
        return make_batch(resolve(self.ref), self.settings, self.seed, int(step), self.batch)

    def __len__(self) -> int:  # pragma: no cover - the sampler bounds the steps
        return 2**31


def _worker_init(_: int) -> None:
    # Workers draw samples with numpy/scipy; one thread each leaves the cores to the model.
    import torch

    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass


def loader(ref: str, settings: dict[str, Any], seed: int, batch: int, first: int, last: int, workers: int = 1):
    """Iterate over the batches of steps ``first..last`` (inclusive), prefetched by ``workers`` processes."""
    import torch

    data = StepBatches(ref, settings, seed, batch)
    steps = range(first, last + 1)
    if workers <= 0:
        return (data[s] for s in steps)
    return iter(
        torch.utils.data.DataLoader(
            data,
            batch_size=None,
            sampler=steps,
            num_workers=workers,
            prefetch_factor=4,
            worker_init_fn=_worker_init,
            multiprocessing_context="fork" if hasattr(__import__("os"), "fork") else None,
        )
    )


# -- image/label pairs -------------------------------------------------------------------------------


def find_pairs(where: str) -> list[tuple[str, str]]:
    """Image/label pairs from a CSV (``image,label`` per line) or a folder with ``images/`` and ``labels/``.

    Raises:
        ValueError: nothing found, or a label missing.
    """
    path = Path(where)
    pairs: list[tuple[str, str]] = []
    if path.is_file():
        base = path.parent
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#") or line.lower().startswith("image"):
                continue
            a, b = (s.strip() for s in line.split(",")[:2])
            pairs.append((str(base / a), str(base / b)))
    elif (path / "images").is_dir():
        for img in sorted((path / "images").iterdir()):
            lab = path / "labels" / img.name
            if not lab.exists():
                raise ValueError(f"{img}: no label file {lab}")
            pairs.append((str(img), str(lab)))
    if not pairs:
        raise ValueError(f"{where}: no image/label pairs (a CSV 'image,label' or a folder with images/ and labels/)")
    return pairs


@lru_cache(maxsize=4)
def _load_pairs(where: str) -> list[tuple[np.ndarray, np.ndarray]]:
    from medcli import io
    from medcli.train.synth import normalise_percentile

    out = []
    for a, b in find_pairs(where):
        img = io.read(a).reorient("RAS")
        lab = io.read(b).reorient("RAS")
        out.append((normalise_percentile(img.data.astype(np.float32)), np.rint(lab.data).astype(np.int64)))
    return out


def pairs_generator(
    rng: np.random.Generator,
    pairs: str,
    patch: list[int],
    oversample_foreground: float = 0.33,
    axes: list[int] | None = None,
    flip: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """A random patch of a random image/label pair: 2D slices when ``patch`` has 2 sizes, else 3D.

    ``oversample_foreground``: probability that the patch is centred on a
    labelled (non-zero) voxel, as nnU-Net does for small structures.
    """
    cases = _load_pairs(pairs)
    img, lab = cases[int(rng.integers(len(cases)))]
    if len(patch) == 2:
        axis = int(rng.choice(axes or [0, 1, 2]))
        img, lab = np.moveaxis(img, axis, 0), np.moveaxis(lab, axis, 0)
        patch = [1] + list(patch)
    if rng.random() < oversample_foreground and np.any(lab > 0):
        fg = np.argwhere(lab > 0)
        centre = fg[int(rng.integers(len(fg)))]
    else:
        centre = np.array([rng.integers(s) for s in img.shape])
    sl = []
    pads = []
    for c, p, s in zip(centre, patch, img.shape):
        start = int(c) - p // 2
        lo, hi = max(start, 0), min(start + p, s)
        sl.append(slice(lo, hi))
        pads.append((lo - start, start + p - hi))
    x = np.pad(img[tuple(sl)], pads)
    y = np.pad(lab[tuple(sl)], pads)
    if flip and rng.random() < 0.5:
        x, y = x[..., ::-1], y[..., ::-1]
    if len(x.shape) == 3 and x.shape[0] == 1:
        x, y = x[0], y[0]
    return np.ascontiguousarray(x[None]), np.ascontiguousarray(y)
