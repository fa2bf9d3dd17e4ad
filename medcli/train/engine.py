"""The training loop behind ``medcli train``: a recipe in, a hub-ready model folder out.

A recipe is a TOML file (see ``recipes/tissue.toml``) with the sections
``[model]``, ``[data]``, ``[loss]``, ``[train]``, ``[validation]`` and
``[output]``; ``key=value`` overrides on the command line change any of its
values (``train.steps=200``).

One loop serves every task: a task plugs in its batch source, its loss (whose
named parts become log columns) and its validator (:class:`TaskHooks`,
:func:`task_hooks`); segmentation and regression use the recipe's generator and
:mod:`medcli.train.losses`.

Engineering guarantees:

* **Deterministic**: seeds for python, numpy and torch, and every batch drawn
  from ``(seed, step)`` (see :mod:`medcli.train.data`).
* **Resumable**: ``checkpoint.safetensors`` (model, optimiser, RNG states,
  best metric, patience) every ``checkpoint_every`` steps and on SIGTERM or
  Ctrl-C; ``resume=True`` continues after a kill -9 from the last checkpoint
  and reaches the same weights as an uninterrupted run (bit-identical on the
  same machine and thread count; tested to 1e-6).
* **Validated**: held-out cases every ``validate_every`` steps; the best
  weights are kept as ``model.safetensors``; early stopping after
  ``patience`` validations without improvement.
* **Ready to use**: the output folder holds ``model.safetensors`` +
  ``spec.json`` (the hub's format), a ``card.md`` draft and ``log.csv``
  (every step) + ``validation.csv``.

Example:
    >>> recipe = load_recipe("recipes/tissue.toml", ["train.steps=10"])  # doctest: +SKIP
    >>> train(recipe)  # doctest: +SKIP
    PosixPath('runs/tissue')
"""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from medcli.runtime import log
from medcli.errors import InputError, ProcessingError, UsageError

SECTIONS = ("model", "data", "loss", "train", "validation", "output")

DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {
        "name": "model",
        "version": "0.1.0",
        "task": "segmentation",
        "architecture": "unet",
        "params": {},
        "input": {},
        "labels": {},
        "init": "",
        "freeze": [],
        "description": "",
        "summary": "",
        "licence": "unknown",
        "citation": "",
    },
    "data": {"source": "synth", "generator": "", "settings": {}, "pairs": "", "oversample_foreground": 0.33, "workers": 1,
             "ignore_index": None},
    "loss": {"name": "dice_ce"},
    "train": {
        "steps": 1000,
        "batch": 8,
        "patch": [],
        "lr": 1e-3,
        "lr_schedule": "poly",
        "weight_decay": 1e-5,
        "seed": 0,
        "checkpoint_every": 100,
        "validate_every": 0,
        "patience": 0,
        "threads": 0,
        "device": "auto",
        "grad_clip": 12.0,
        "max_minutes": 0.0,
    },
    "validation": {"cases": "", "settings": {}, "generator": "", "seed": 987654321, "samples": 16, "labels": [], "axes": [], "metric": "", "slice_step": 1},
    "output": {"dir": "runs/model"},
}


# -- recipe -----------------------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """A command-line override value: TOML syntax if it parses, else a plain string.

    Example:
        >>> parse_value("3"), parse_value("[1, 2]"), parse_value("runs/x")
        (3, [1, 2], 'runs/x')
    """
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read a recipe, apply ``section.key=value`` overrides and fill defaults.

    Raises:
        InputError: unreadable or invalid TOML, unknown section or key.
        UsageError: a malformed override.
    """
    import tomllib

    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InputError("no such recipe", path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read recipe: {e}", path) from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"invalid TOML: {e}", path) from None
    for item in overrides or []:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise UsageError(f"override {item!r} is not SECTION.KEY=VALUE (e.g. train.steps=200)")
        key, value = item.split("=", 1)
        *parents, leaf = key.strip().split(".")
        node = raw
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise UsageError(f"override {item!r}: {p} is not a table")
        node[leaf] = parse_value(value.strip())
    recipe = copy.deepcopy(DEFAULTS)
    for section, values in raw.items():
        if section not in SECTIONS:
            raise InputError(f"unknown section [{section}] (known: {', '.join(SECTIONS)})", path)
        if not isinstance(values, dict):
            raise InputError(f"[{section}] must be a table", path)
        for key, value in values.items():
            if section != "loss" and key not in recipe[section]:
                raise InputError(f"unknown key {section}.{key} (known: {', '.join(recipe[section])})", path)
            recipe[section][key] = value
    recipe["_path"] = str(path)
    recipe["_overrides"] = list(overrides or [])
    return recipe


def generator_of(recipe: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The (``module:function``, settings) that draws the training samples."""
    data = recipe["data"]
    source = data["source"]
    settings = dict(data.get("settings") or {})
    if source == "synth":
        return data.get("generator") or "medcli.train.synth:tissue_generator", settings
    if source == "generator":
        if not data.get("generator"):
            raise UsageError('[data] source = "generator" needs generator = "module:function"')
        return data["generator"], settings
    if source == "pairs":
        if not data.get("pairs"):
            raise UsageError('[data] source = "pairs" needs pairs = "CSV or folder"')
        patch = recipe["train"]["patch"] or [96, 96, 96]
        settings.update(pairs=data["pairs"], patch=list(patch), oversample_foreground=data["oversample_foreground"])
        return "medcli.train.data:pairs_generator", settings
    raise UsageError(f"[data] source must be synth, pairs or generator, not {source!r}")


# -- checkpoints ------------------------------------------------------------------------------------


def _atomic_save(tensors: dict, path: Path, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_text(text: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(path: Path, model, opt, step: int, extra: dict[str, Any]) -> None:
    """Everything needed to continue exactly: weights, optimiser, RNG states, loop state."""
    import torch

    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    sd = opt.state_dict()
    opt_scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{idx}.{k}"] = v
            else:
                opt_scalars.setdefault(str(idx), {})[k] = v
    tensors["rng.torch"] = torch.get_rng_state()
    np_state = np.random.get_state()
    meta = {
        "step": step,
        "param_groups": sd["param_groups"],
        "opt_scalars": opt_scalars,
        "rng_python": random.getstate(),
        "rng_numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        **extra,
    }
    _atomic_save(tensors, path, {"state": json.dumps(meta)})


def load_checkpoint(path: Path, model, opt) -> dict[str, Any]:
    """Restore a checkpoint into ``model`` and ``opt``; returns the loop state."""
    import torch
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["state"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    for idx, scalars in meta.pop("opt_scalars").items():
        state.setdefault(int(idx), {}).update(scalars)
    opt.load_state_dict({"state": state, "param_groups": meta.pop("param_groups")})
    torch.set_rng_state(tensors["rng.torch"])
    py = meta.pop("rng_python")
    random.setstate((py[0], tuple(py[1]), py[2]))
    npst = meta.pop("rng_numpy")
    np.random.set_state((npst[0], np.array(npst[1], dtype=np.uint32), *npst[2:]))
    return meta


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- model ------------------------------------------------------------------------------------------


def model_spec(recipe: dict[str, Any]) -> dict[str, Any]:
    """The hub spec (same keys as a registry entry) of the model a recipe trains."""
    m = recipe["model"]
    labels = {str(k): v for k, v in (m.get("labels") or {}).items()}
    spec = {
        "name": m["name"],
        "version": m["version"],
        "task": m["task"],
        "summary": m.get("summary") or m.get("description", ""),
        "architecture": m["architecture"],
        "params": dict(m["params"]),
        "licence": m.get("licence", "unknown"),
        "citation": m.get("citation", ""),
        "input": dict(m.get("input") or {}),
        "labels": labels,
    }
    return spec


def is_regression(recipe: dict[str, Any]) -> bool:
    """Regression (image-to-image) or segmentation, from the loss the recipe trains with."""
    from medcli.train.losses import REGRESSION

    return recipe["loss"].get("name", "dice_ce") in REGRESSION


def initial_weights(ref: str) -> dict:
    """Weights to fine-tune from: a hub model name, or a folder/file with model.safetensors."""
    path = Path(ref)
    if path.is_dir():
        path = path / "model.safetensors"
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        from medcli.models import hub
    except ImportError as e:
        raise ProcessingError(f"init = {ref!r}: not a model folder, and the model hub is unavailable ({e})") from None
    _, state_dict = hub.load(ref)
    return state_dict


# -- the loop ---------------------------------------------------------------------------------------


def output_folder(recipe: dict[str, Any], resume: bool, force: bool) -> tuple[Path, Path]:
    """The run's output folder (made) and checkpoint path; a fresh run with ``force`` clears a previous one.

    Raises:
        UsageError: a checkpoint exists without resume/force, or resume without a checkpoint.
    """
    out = Path(recipe["output"]["dir"])
    ckpt = out / "checkpoint.safetensors"
    if ckpt.exists() and not resume and not force:
        raise UsageError(f"{out} holds a checkpoint: use --resume to continue it or --force to start over")
    if resume and not ckpt.exists():
        raise UsageError(f"--resume: no checkpoint in {out}")
    out.mkdir(parents=True, exist_ok=True)
    if force and not resume:
        for name in ("checkpoint.safetensors", "log.csv", "validation.csv", "model.safetensors"):
            (out / name).unlink(missing_ok=True)
    return out, ckpt


class _Stop:
    """SIGTERM/SIGINT during training set a flag; the loop saves a checkpoint between steps."""

    def __init__(self):
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._set)
            except ValueError:  # not the main thread: keep the default behaviour
                pass
        return self

    def _set(self, signum, frame):  # noqa: ARG002
        if self.signal is not None:  # a second signal: stop at once
            raise KeyboardInterrupt(f"signal {signum}")
        self.signal = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def _lr(recipe: dict[str, Any], step: int) -> float:
    t = recipe["train"]
    base = float(t["lr"])
    if t["lr_schedule"] == "poly":
        return base * (1 - (step - 1) / max(int(t["steps"]), 1)) ** 0.9
    if t["lr_schedule"] == "constant":
        return base
    raise UsageError(f"train.lr_schedule must be poly or constant, not {t['lr_schedule']!r}")


class Validator:
    """Held-out evaluation: whole volumes (``cases``) or generator samples with another seed."""

    def __init__(self, recipe: dict[str, Any]):
        from medcli.train.data import resolve

        self.recipe = recipe
        v = recipe["validation"]
        self.task = "regression" if is_regression(recipe) else "segmentation"
        self.cases = None
        self.samples = None
        params = recipe["model"]["params"]
        self.dim = int(params.get("dim", 3))
        self.axes = list(v.get("axes") or recipe["model"].get("input", {}).get("axes") or [2])
        self.patch = recipe["train"]["patch"] or [96, 96, 96]
        if v.get("cases"):
            self.cases = resolve(v["cases"])(**(v.get("settings") or {}))
            step = int(v.get("slice_step") or 1)
            if step > 1 and self.dim == 2 and len(self.axes) == 1:
                # Every k-th slice: a 2D model sees each slice alone, so this is exact for those slices.
                ax = self.axes[0]
                sub = lambda a: np.take(a, np.arange(0, a.shape[ax], step), axis=ax)  # noqa: E731
                self.cases = [(n, sub(img), sub(ref)) for n, img, ref in self.cases]
        else:
            ref = v.get("generator") or generator_of(recipe)[0]
            settings = dict(v.get("settings") or generator_of(recipe)[1])
            fn = resolve(ref)
            rng = np.random.default_rng(int(v["seed"]))
            self.samples = [fn(np.random.default_rng(rng.integers(2**63)), **settings) for _ in range(int(v["samples"]))]
        self.labels = [int(c) for c in (v.get("labels") or [])]
        self.metric = v.get("metric") or ("dice" if self.task == "segmentation" else "psnr")

    def __call__(self, model, device) -> tuple[float, list[dict[str, Any]]]:
        """(score, higher is better; per-case rows)."""
        import torch

        from medcli.train.validate import dice, predict_volume, psnr

        rows = []
        if self.cases is not None:
            for name, image, ref in self.cases:
                out = predict_volume(model, image, dim=self.dim, axes=self.axes, patch=self.patch, device=device,
                                     softmax=self.task == "segmentation")
                rows.append(self._score(name, out, ref, dice, psnr))
        else:
            was = model.training
            model.eval()
            with torch.inference_mode():
                for i, (x, y) in enumerate(self.samples):
                    out = model(torch.from_numpy(x[None]).float().to(device))[0]
                    out = (out.softmax(0) if self.task == "segmentation" else out).cpu().numpy()
                    rows.append(self._score(f"sample {i}", out, y, dice, psnr))
            model.train(was)
        return float(np.mean([r["score"] for r in rows])), rows

    def _score(self, name, out, ref, dice, psnr) -> dict[str, Any]:
        if np.ndim(ref) == 0 and np.ndim(out) == 1:
            # Classification (one label per sample): the score is the accuracy.
            pred = int(np.argmax(out))
            return {"case": name, "true": int(ref), "pred": pred, "p": round(float(out[pred]), 4), "score": float(pred == int(ref))}
        if self.task == "segmentation":
            labels = self.labels or list(range(1, out.shape[0]))
            d = dice(out.argmax(0), ref, labels)
            row = {"case": name, **{f"dice_{c}": round(v, 5) for c, v in zip(labels, d)}}
            row["score"] = float(np.mean(d))
        else:
            row = {"case": name, "psnr": round(psnr(out, ref), 4)}
            row["score"] = row["psnr"] if self.metric == "psnr" else -float(np.mean((out - ref) ** 2))
        return row


@dataclass
class TaskHooks:
    """What a task plugs into the shared loop of :func:`train`.

    Attributes:
        batches: ``(first, last)`` steps -> an iterator of one ``(input, target)`` per step; ``target`` is a
            tensor or a dict of tensors (whatever ``loss`` takes); both are moved to the training device.
        loss: ``(output, target)`` -> the loss, or ``(loss, {name: part})``: the parts are logged as
            columns of log.csv.
        validator: ``(model, device)`` -> (score, higher is better; one row per case); None: no validation.
        warmup: Steps of linear learning-rate warm-up (0: none).
    """

    batches: Callable[[int, int], Iterator[tuple[Any, Any]]]
    loss: Callable[[Any, Any], Any]
    validator: Callable[[Any, Any], tuple[float, list[dict[str, Any]]]] | None = None
    warmup: int = 0


def task_hooks(recipe: dict[str, Any], validate: bool) -> TaskHooks:
    """The batch source, loss and validator of the recipe's task (``[model] task``).

    Segmentation and regression: the recipe's generator and a loss of :mod:`medcli.train.losses`;
    registration and landmarks: the same batches with their own loss and validation; detection:
    :func:`medcli.train.detection.task_hooks` (its own targets, loss and whole-volume validation).

    Raises:
        UsageError: an unknown loss.
    """
    from medcli.train import losses
    from medcli.train.data import loader

    task = recipe["model"].get("task")
    if task == "detection":
        from medcli.train.detection import task_hooks as detection_hooks

        return detection_hooks(recipe, validate)
    make_loss, validator_cls = losses.make_loss, Validator
    if task == "registration":  # image pairs in, a velocity field out
        from medcli.train import registration

        make_loss, validator_cls = registration.make_loss, registration.Validator
    elif task == "landmarks":  # subject/template patch pairs in, a heatmap over shifts out
        from medcli.train import landmarks

        make_loss, validator_cls = landmarks.make_loss, landmarks.Validator
    loss_cfg = dict(recipe["loss"])
    if not is_regression(recipe) and recipe["data"].get("ignore_index") is not None:
        loss_cfg.setdefault("ignore_index", recipe["data"]["ignore_index"])
    try:
        loss_fn = make_loss(loss_cfg)
    except ValueError as e:
        raise UsageError(f"[loss]: {e}") from None
    ref, settings = generator_of(recipe)
    t = recipe["train"]
    workers = int(recipe["data"].get("workers", 1))

    def batches(first: int, last: int):
        return loader(ref, settings, int(t["seed"]), int(t["batch"]), first, last, workers=workers)

    return TaskHooks(batches, loss_fn, validator_cls(recipe) if validate else None)


def _to(target, device):
    return {k: v.to(device) for k, v in target.items()} if isinstance(target, dict) else target.to(device)


def train(recipe: dict[str, Any], *, resume: bool = False, force: bool = False) -> Path:
    """Train the model a recipe describes; returns the output folder.

    Args:
        recipe: From :func:`load_recipe`.
        resume: Continue from the output folder's checkpoint.
        force: Start over even if the output folder holds a checkpoint.

    Raises:
        UsageError: inconsistent recipe, or a checkpoint exists without resume/force.
        ProcessingError: a failure while training (non-finite loss, bad init weights).
        KeyboardInterrupt: SIGTERM or Ctrl-C, after saving a checkpoint.
    """
    from medcli.runtime import configure_threads, default_threads, state, torch_device
    from medcli.engine.architectures import build

    t = recipe["train"]
    if int(t.get("threads") or 0) > 0 and state.threads in (None, default_threads()):
        # The recipe's choice unless --threads said otherwise: on a busy machine one
        # thread per process beats two threads that wait for each other.
        configure_threads(int(t["threads"]))
    from medcli.runtime import configure_torch

    torch = configure_torch()
    device = torch_device(None if state.device not in ("auto", "", None) else t.get("device") or "auto")
    out, ckpt = output_folder(recipe, resume, force)

    seed = int(t["seed"])
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    spec = model_spec(recipe)
    try:
        model = build(spec)
    except TypeError as e:
        raise UsageError(f"[model] params do not fit architecture {spec['architecture']!r}: {e}") from None
    if recipe["model"].get("init"):
        _init(model, recipe["model"]["init"])
    frozen = list(recipe["model"].get("freeze") or [])
    for name, p in model.named_parameters():
        if any(name.startswith(f) for f in frozen):
            p.requires_grad_(False)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise UsageError("model.freeze froze every parameter")
    opt = torch.optim.AdamW(params, lr=float(t["lr"]), weight_decay=float(t["weight_decay"]))

    steps, batch = int(t["steps"]), int(t["batch"])
    every_ckpt, every_val, patience = int(t["checkpoint_every"]), int(t["validate_every"]), int(t["patience"])
    max_minutes = float(t.get("max_minutes") or 0)  # a wall-clock budget: validate, checkpoint and stop when spent
    loop: dict[str, Any] = {"best": None, "best_step": 0, "bad": 0, "stopped_early": False, "seconds": 0.0, "best_rows": []}
    start = 1
    if resume:
        loop.update(load_checkpoint(ckpt, model, opt))
        start = int(loop.pop("step")) + 1
        log.warning(f"resuming {out} at step {start}")
    hooks = task_hooks(recipe, every_val > 0)
    validator = hooks.validator

    val_path = out / "validation.csv"
    _truncate_csv(val_path, start - 1)
    step_log = _StepLog(out / "log.csv", start - 1)
    batches = hooks.batches(start, steps)
    model.train()
    t_start = time.perf_counter() - float(loop["seconds"])
    last = start - 1
    bar = _Bar(steps, start - 1)
    try:
        with _Stop() as stop, bar:
            for step in range(start, steps + 1):
                t0 = time.perf_counter()
                x, y = next(batches)
                x, y = x.to(device), _to(y, device)
                lr = _lr(recipe, step) * (min(1.0, step / hooks.warmup) if hooks.warmup > 0 else 1.0)
                for g in opt.param_groups:
                    g["lr"] = lr
                value = hooks.loss(model(x), y)
                value, parts = value if isinstance(value, tuple) else (value, {})
                if not torch.isfinite(value):
                    raise ProcessingError(f"loss is {value.item()} at step {step}: lower train.lr or check the data")
                opt.zero_grad(set_to_none=True)
                value.backward()
                if float(t.get("grad_clip") or 0) > 0:
                    torch.nn.utils.clip_grad_norm_(params, float(t["grad_clip"]))
                opt.step()
                last = step
                dt = time.perf_counter() - t0
                timed_out = max_minutes > 0 and time.perf_counter() - t_start > 60 * max_minutes
                val_score = ""
                if validator is not None and (step % every_val == 0 or step == steps or timed_out):
                    score, rows = validator(model, device)
                    val_score = f"{score:.5f}"
                    _append_validation(val_path, step, rows)
                    if loop["best"] is None or score > loop["best"]:
                        loop.update(best=score, best_step=step, bad=0, best_rows=rows)
                        export(model, recipe, out, loop)
                    else:
                        loop["bad"] += 1
                    log.info(f"step {step}: validation {score:.4f} (best {loop['best']:.4f} at step {loop['best_step']})")
                    if patience and loop["bad"] >= patience:
                        loop["stopped_early"] = True
                loop["seconds"] = time.perf_counter() - t_start
                parts = {k: float(v.detach()) for k, v in parts.items()}
                step_log.write({"step": step, "loss": f"{value.item():.6f}", **{k: f"{v:.6f}" for k, v in parts.items()},
                                "lr": f"{lr:.6g}", "seconds": f"{loop['seconds']:.2f}", "samples_per_s": f"{batch / dt:.2f}",
                                "val_score": val_score})
                bar.update(step, value.item(), loop, parts)
                done = step == steps or loop["stopped_early"] or timed_out
                if step % every_ckpt == 0 or done or stop.signal is not None:
                    save_checkpoint(ckpt, model, opt, step, _loop_state(loop))
                if stop.signal is not None:
                    log.warning(f"signal {stop.signal}: checkpoint saved at step {step}; continue with --resume")
                    raise KeyboardInterrupt(f"signal {stop.signal}")
                if loop["stopped_early"]:
                    log.warning(f"early stop at step {step}: no improvement in {patience} validations")
                    break
                if timed_out:
                    log.warning(f"train.max_minutes ({max_minutes:g}) reached at step {step}; continue with --resume")
                    break
    finally:
        step_log.close()
        del batches
    if validator is None or loop["best"] is None:
        loop["best_step"] = last
        export(model, recipe, out, loop)
    else:
        # Refresh the card with the whole run (the weights stay the best ones).
        write_card(recipe, out, loop)
    return out


def _loop_state(loop: dict[str, Any]) -> dict[str, Any]:
    return {k: loop[k] for k in ("best", "best_step", "bad", "stopped_early", "seconds", "best_rows")}


def _init(model, ref: str) -> None:
    """Load fine-tuning weights: matching names and shapes; the rest stays random (a new head)."""
    sd = initial_weights(ref)
    own = model.state_dict()
    use = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    if not use:
        raise ProcessingError(f"init = {ref!r}: no weight matches the model (another architecture?)")
    model.load_state_dict(use, strict=False)
    skipped = sorted(set(own) - set(use))
    if skipped:
        log.warning(f"init: {len(skipped)} tensors kept random (not in {ref!r} or another shape): {', '.join(skipped[:4])}...")


def _truncate_csv(path: Path, last_step: int) -> None:
    """Drop rows after ``last_step`` (written after the checkpoint a resumed run restarts from)."""
    if not path.exists():
        return
    if last_step <= 0:
        path.unlink()
        return
    lines = path.read_text().splitlines(keepends=True)
    keep = [ln for i, ln in enumerate(lines) if i == 0 or int(ln.split(",", 1)[0]) <= last_step]
    _atomic_text("".join(keep), path)


class _StepLog:
    """log.csv, a row per step; its columns come from the first row written (the loss parts are the task's)."""

    #: Columns of logs written before the loops were one (detection's), under their current names.
    RENAMED: ClassVar[dict[str, str]] = {"val_cpm": "val_score"}

    def __init__(self, path: Path, last_step: int):
        _truncate_csv(path, last_step)
        self.path = path
        self.header = path.read_text().split("\n", 1)[0].split(",") if path.exists() and path.stat().st_size else None
        self._open()

    def _open(self) -> None:
        self.file = open(self.path, "a", newline="")
        self.writer = csv.writer(self.file)

    def write(self, row: dict[str, Any]) -> None:
        keys = list(row)
        if self.header is None:
            self.writer.writerow(keys)
            self.header = keys
        elif self.header != keys:
            self._rewrite(keys)
        self.writer.writerow([row[k] for k in keys])
        self.file.flush()

    def _rewrite(self, keys: list[str]) -> None:
        # A resumed run whose log has other columns (an earlier version's): its rows under the new header, by name.
        import io

        self.file.close()
        with open(self.path, newline="") as f:
            old = [{self.RENAMED.get(k, k): v for k, v in r.items()} for r in csv.DictReader(f)]
        text = io.StringIO()
        w = csv.writer(text)
        w.writerow(keys)
        w.writerows([[r.get(k, "") for k in keys] for r in old])
        _atomic_text(text.getvalue(), self.path)
        self.header = keys
        self._open()

    def close(self) -> None:
        self.file.close()


def _append_validation(path: Path, step: int, rows: list[dict[str, Any]]) -> None:
    new = not path.exists()
    keys = [k for k in rows[0] if k != "score"] + ["score"]
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(["step"] + keys)
        for r in rows:
            w.writerow([step] + [r.get(k, "") for k in keys])


def export(model, recipe: dict[str, Any], out: Path, loop: dict[str, Any]) -> None:
    """Write the hub-format model folder: model.safetensors, spec.json, card.md."""
    weights = out / "model.safetensors"
    _atomic_save(dict(model.state_dict()), weights, {"format": "pt", "name": recipe["model"]["name"]})
    spec = model_spec(recipe)
    spec["sha256"] = sha256_file(weights)
    spec["training"] = {
        "recipe": Path(recipe.get("_path", "")).name,
        "overrides": recipe.get("_overrides", []),
        "step": int(loop.get("best_step") or 0),
        "validation_score": loop.get("best"),
    }
    _atomic_text(json.dumps(spec, indent=2) + "\n", out / "spec.json")
    write_card(recipe, out, loop)


def write_card(recipe: dict[str, Any], out: Path, loop: dict[str, Any]) -> None:
    """A model card draft: what was trained on what, and how it scored on held-out data."""
    m, d, t = recipe["model"], recipe["data"], recipe["train"]
    ref, settings = generator_of(recipe)
    lines = [
        f"# {m['name']} {m['version']}",
        "",
        m.get("description") or "(describe the model)",
        "",
        "## Training",
        "",
        f"* recipe: `{recipe.get('_path', '')}` {' '.join(recipe.get('_overrides', []))}".rstrip(),
        f"* architecture: {m['architecture']} {json.dumps(m['params'])}",
        f"* data: source = {d['source']}, generator `{ref}`",
        f"* steps: {t['steps']} x batch {t['batch']}, lr {t['lr']} ({t['lr_schedule']}), seed {t['seed']}",
        f"* loss: {json.dumps(recipe['loss'])}",
        f"* wall time: {float(loop.get('seconds', 0.0)) / 60:.1f} min" + (" (stopped early)" if loop.get("stopped_early") else ""),
        "",
        "## Held-out validation",
        "",
    ]
    rows = loop.get("best_rows") or []
    if rows:
        keys = [k for k in rows[0] if k not in ("case", "score")]
        lines += [f"Best step {loop.get('best_step')}, score {loop.get('best'):.4f}:", ""]
        lines += ["| case | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        lines += ["| " + r["case"] + " | " + " | ".join(f"{r[k]:.4f}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |" for r in rows]
    else:
        lines.append("(no validation configured)")
    lines += ["", "## Limitations", "", "(fill in: intended use, failure modes, licence of the training data)", ""]
    _atomic_text("\n".join(lines), out / "card.md")


class _Bar:
    """Rich progress (loss, validation, ETA) on stderr, only when a person watches."""

    def __init__(self, total: int, done: int):
        from medcli.runtime import progress_enabled

        self.enabled = progress_enabled()
        self.total, self.done = total, done
        self._p = None

    def __enter__(self):
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._p = Progress(
                TextColumn("train"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._p.__enter__()
            self._task = self._p.add_task("train", total=self.total, completed=self.done, info="")
        return self

    def update(self, step: int, loss: float, loop: dict[str, Any], parts: dict[str, float] | None = None) -> None:
        best = f" val {loop['best']:.3f}" if loop.get("best") is not None else ""
        info = f"loss {loss:.4f}" + "".join(f" {k} {v:.4f}" for k, v in (parts or {}).items()) + best
        if self._p is not None:
            self._p.update(self._task, completed=step, info=info)
        elif step % 10 == 0:  # no one watches (a log file): a line now and then
            log.info(f"step {step}/{self.total}: {info}, {float(loop.get('seconds', 0.0)) / 60:.1f} min")

    def __exit__(self, *exc):
        if self._p is not None:
            self._p.__exit__(*exc)
        return False
