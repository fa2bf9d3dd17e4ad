"""The model hub: one registry, a verified cache, site folders, offline use.

Where weights come from, in the order they are searched:

1. **Site folders** ``MEDCLI_MODELS_PATH`` (``:``-separated, read-only: medcli
   never writes there). A file may sit at ``SITE/NAME/VERSION/FILE``,
   ``SITE/NAME/FILE`` or ``SITE/FILE``; an admin fills one with
   ``MEDCLI_HOME=SITE medcli models pull NAME`` (which writes
   ``SITE/models/NAME/VERSION/FILE``; ``SITE/models`` is searched too).
2. **Bundled** files (``bundled = true``) in ``medcli/models/weights/``.
3. **The cache**: ``$MEDCLI_HOME/models`` or else the platformdirs user cache
   folder of "medcli" (``~/.cache/medcli/models`` on Linux), laid out as
   ``NAME/VERSION/FILE``; imported user models in ``user/NAME/``.

What is missing is downloaded (:mod:`medcli.models.download`: one transfer
per file across processes, resumed, sha256-checked before it becomes
visible) from ``$MEDCLI_MODEL_URL/FILE`` first when that mirror is set, then
from the registry's URLs. ``MEDCLI_OFFLINE=1`` never touches the network and
says in one line how to get the model onto the node.

Every file is checked against its sha256 before it is loaded, and only
safetensors are loaded. A third-party pickle (HD-BET's ``.model``) is
converted once by the registry's ``convert`` hook (``torch.load(...,
weights_only=True)``) into ``STEM.safetensors`` beside it in the cache, with
``STEM.safetensors.json`` recording both hashes and the converter (a converter
whose output changes must come with a new model ``version``).

**Registry schema** (``medcli/models/registry.toml``, documented at its top;
``MEDCLI_REGISTRY`` adds ``:``-separated TOML files of the same form, whose
models override same-named ones): ``[models.NAME]`` with ``version``,
``task``, ``summary``, ``architecture`` (a key of
:data:`medcli.engine.architectures.ARCHITECTURES`), ``params``, ``licence``,
``citation``, ``card``, optional ``convert``, ``input`` (modality, spacing,
orientation, normalisation, patch_size), ``labels`` (value -> name), ``files``
and/or ``folds`` (arrays of ``{name, sha256, size, urls, bundled}``).

**User models** (what ``medcli train`` writes, see :func:`save_user_model`):
a folder with ``model.safetensors`` and ``spec.json`` (or ``spec.toml``), or a
``.safetensors`` file with ``STEM.json``/``spec.json`` beside it. The spec has
the keys of a registry entry; its ``files`` give the sha256 checked before
loading.

Example:
    >>> from medcli.models import hub
    >>> [m["name"] for m in hub.list_models()]  # doctest: +SKIP
    ['deepbet', 'hdbet', ...]
    >>> spec, state = hub.load("deepbet")  # doctest: +SKIP
    >>> spec["labels"]  # doctest: +SKIP
    {0: 'background', 1: 'brain'}
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tomllib
from pathlib import Path
from typing import Any, Iterator

from medcli.errors import InputError, ProcessingError, UsageError
from medcli.models.download import download, sha256_file, umask, verify_file

PACKAGE = Path(__file__).resolve().parent
REGISTRY = PACKAGE / "registry.toml"
WEIGHTS = PACKAGE / "weights"
USER_SPEC_NAMES = ("spec.json", "spec.toml")
REQUIRED = ("version", "task", "architecture", "licence")


# -- locations ------------------------------------------------------------------------------------


def home() -> Path:
    """medcli's writable cache root: ``MEDCLI_HOME``, else the user cache folder."""
    env = os.environ.get("MEDCLI_HOME", "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("medcli", appauthor=False))


def cache_dir() -> Path:
    """Folder of downloaded and imported weights (``home()/models``)."""
    return home() / "models"


def site_dirs() -> list[Path]:
    """Read-only folders of ``MEDCLI_MODELS_PATH``, searched before anything else."""
    raw = os.environ.get("MEDCLI_MODELS_PATH", "")
    return [Path(p).expanduser() for p in raw.split(os.pathsep) if p.strip()]


def offline() -> bool:
    """``MEDCLI_OFFLINE`` set to 1/true/yes/on: never use the network."""
    return os.environ.get("MEDCLI_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def offline_hint(name: str) -> str:
    return (
        f"on a node with internet run 'medcli models pull {name}' (same MEDCLI_HOME), "
        f"or copy the files here and run 'medcli models import PATH', "
        f"or set MEDCLI_MODELS_PATH to a folder that holds them"
    )


# -- registry -------------------------------------------------------------------------------------

_registry_cache: dict[tuple, dict[str, dict]] = {}


def registry() -> dict[str, dict[str, Any]]:
    """All registered models, name -> entry (the package registry plus ``MEDCLI_REGISTRY``)."""
    extra = tuple(p for p in os.environ.get("MEDCLI_REGISTRY", "").split(os.pathsep) if p.strip())
    key = (REGISTRY, extra)
    if key not in _registry_cache:
        models: dict[str, dict] = {}
        for path in (REGISTRY, *map(Path, extra)):
            models.update(_read_registry(path))
        _registry_cache[key] = models
    return _registry_cache[key]


def _read_registry(path: Path) -> dict[str, dict]:
    try:
        doc = tomllib.loads(Path(path).read_text())
    except OSError as e:
        raise InputError(f"cannot read the model registry: {e.strerror}", path) from e
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"invalid model registry: {e}", path) from e
    models = doc.get("models", {})
    for name, entry in models.items():
        missing = [k for k in REQUIRED if k not in entry]
        if missing:
            raise InputError(f"model {name!r} lacks {', '.join(missing)}", path)
        for f in _all_files(entry):
            if not {"name", "sha256"} <= set(f):
                raise InputError(f"model {name!r}: every file needs a name and a sha256", path)
    return models


def _all_files(entry: dict) -> list[dict]:
    return list(entry.get("files", [])) + list(entry.get("folds", []))


def spec(name: str) -> dict[str, Any]:
    """A copy of a model's registry entry with ``name`` set and integer label keys.

    Example:
        >>> spec("hdbet")["task"]
        'brain-extraction'
    """
    reg = registry()
    if name in reg:
        return _normalise(name, copy.deepcopy(reg[name]))
    user = _user_model_dir(name)
    if user is not None:
        return _read_user_spec(user)[0]
    raise UsageError(f"unknown model {name!r} (known: {', '.join(sorted(reg)) or 'none'}; see 'medcli models list')")


def _normalise(name: str, entry: dict) -> dict:
    entry.setdefault("name", name)
    entry.setdefault("params", {})
    entry.setdefault("files", [])
    entry.setdefault("input", {})
    if "labels" in entry:
        entry["labels"] = {int(k): v for k, v in entry["labels"].items()}
    return entry


# -- finding files --------------------------------------------------------------------------------


def _candidates(model: dict, fname: str) -> Iterator[tuple[str, Path]]:
    """(origin, path) where a file of ``model`` may already be, in search order."""
    name, version = model["name"], str(model.get("version", ""))
    for site in site_dirs():
        for base in (site, site / "models"):
            yield "site", base / name / version / fname
            yield "site", base / name / fname
        yield "site", site / fname
    yield "bundled", WEIGHTS / fname
    yield "cache", cache_dir() / name / version / fname


def _find(model: dict, f: dict, check: bool = True) -> tuple[str, Path] | None:
    """The first copy of file ``f`` whose size (and sha256 when ``check``) match."""
    from medcli.runtime import log

    for origin, p in _candidates(model, f["name"]):
        if origin == "bundled" and not f.get("bundled"):
            continue
        try:
            if not p.is_file():
                continue
            if f.get("size") is not None and p.stat().st_size != f["size"]:
                log.warning(f"{p}: size differs from the registry; ignored")
                continue
        except OSError:
            continue
        if check and sha256_file(p) != f["sha256"].lower():
            log.warning(f"{p}: sha256 differs from the registry (corrupt or another version); ignored")
            continue
        return origin, p
    return None


def _cache_path(model: dict, fname: str) -> Path:
    return cache_dir() / model["name"] / str(model.get("version", "")) / fname


def _select_folds(model: dict, folds: list[int] | None) -> list[dict]:
    all_folds = list(model.get("folds", []))
    if folds is None:
        return all_folds
    bad = [i for i in folds if not 0 <= i < len(all_folds)]
    if bad:
        raise UsageError(f"model {model['name']!r} has {len(all_folds)} folds (0..{len(all_folds) - 1}); no fold {bad[0]}")
    return [all_folds[i] for i in folds]


def _urls(f: dict) -> list[str]:
    base = os.environ.get("MEDCLI_MODEL_URL", "").strip()
    mirror = [base.rstrip("/") + "/" + f["name"]] if base else []
    return mirror + list(f.get("urls", []))


def fetch(name: str, folds: list[int] | None = None, convert: bool = True) -> list[Path]:
    """Make a model's files (and the chosen folds) available; download what is missing.

    Args:
        name: A registry name.
        folds: Indices of the folds of an ensemble (default: all).
        convert: Also run the registry's ``convert`` hook now (so that compute
            nodes only read safetensors).

    Returns:
        The verified path of each file, as the registry names them.

    Raises:
        ProcessingError: offline and missing, or the download failed (one line).
    """
    model = spec(name)
    if model.get("source") == "user":
        return [p for _, p in _user_files(model)]
    paths = []
    for f in model["files"] + _select_folds(model, folds):
        paths.append(_fetch_one(model, f))
        if convert and model.get("convert") and not f["name"].endswith(".safetensors"):
            _converted(model, f, paths[-1])
    return paths


def _fetch_one(model: dict, f: dict) -> Path:
    """The verified path of one file of ``model``, downloaded into the cache if missing."""
    found = _find(model, f)
    if found is not None:
        return found[1]
    name = model["name"]
    if offline():
        raise ProcessingError(f"model {name!r} ({f['name']}) is not on this node and MEDCLI_OFFLINE is set: {offline_hint(name)}")
    dest = _cache_path(model, f["name"])
    try:
        download(_urls(f), dest, f["sha256"], f.get("size"), label=f"{name}/{f['name']}")
    except ProcessingError as e:
        raise ProcessingError(f"{e.message}; offline node? {offline_hint(name)}", e.path) from e
    return dest


# -- conversion -----------------------------------------------------------------------------------


def _converted_name(fname: str) -> str:
    stem = fname.rsplit(".", 1)[0] if "." in fname else fname
    return stem + ".safetensors"


def _find_converted(model: dict, f: dict) -> Path | None:
    """A converted copy whose record names this file's sha256 and whose own hash holds."""
    from medcli.runtime import log

    target = _converted_name(f["name"])
    for origin, p in _candidates(model, target):
        if origin == "bundled" or not p.is_file():
            continue
        record = _read_record(p)
        if record is None or record.get("source_sha256") != f["sha256"].lower() or record.get("converter") != model.get("convert"):
            continue
        if sha256_file(p) != record.get("sha256"):
            log.warning(f"{p}: converted weights are corrupt; ignored")
            continue
        return p
    return None


def _read_record(p: Path) -> dict | None:
    try:
        return json.loads(Path(str(p) + ".json").read_text())
    except (OSError, ValueError):
        return None


def _converted(model: dict, f: dict, original: Path) -> Path:
    """The safetensors conversion of ``original`` (already verified), made once under a lock."""
    found = _find_converted(model, f)
    if found is not None:
        return found
    from filelock import FileLock

    dest = _cache_path(model, _converted_name(f["name"]))
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ProcessingError(f"cannot create the model cache folder: {e.strerror}", dest.parent) from e
    try:
        lock = FileLock(str(dest) + ".lock", mode=0o666 & ~umask())
        lock.acquire()
    except OSError as e:
        raise ProcessingError(f"cannot write to the model cache ({e.strerror}); set MEDCLI_HOME to a writable folder", dest.parent) from e
    try:
        found = _find_converted(model, f)
        if found is not None:
            return found
        state = _run_converter(model, original)
        _save_safetensors(state, dest, {"source": f["name"], "source_sha256": f["sha256"].lower(), "converter": model["convert"]})
    finally:
        lock.release()
    return dest


def _run_converter(model: dict, path: Path) -> dict:
    import importlib

    module, _, attr = model["convert"].partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ProcessingError(f"model {model['name']!r}: converter {model['convert']} is not available ({e})") from e
    try:
        state = fn(path)
    except Exception as e:  # noqa: BLE001 - a third-party file we could not read
        raise ProcessingError(f"cannot convert {path.name}: {type(e).__name__}: {e}", path) from e
    return {k: v.contiguous() for k, v in state.items()}


def _save_safetensors(state: dict, dest: Path, record: dict) -> str:
    """Write ``dest`` atomically and ``dest.json`` with its sha256; returns the sha256."""
    from safetensors.torch import save_file

    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    try:
        save_file(state, str(tmp))
        # safetensors creates the file 0600: give it the umask's mode, as any other file
        # here, so that a shared site cache stays readable by its users.
        os.chmod(tmp, 0o666 & ~umask())
        digest = sha256_file(tmp)
        rec_tmp = Path(str(tmp) + ".json")
        rec_tmp.write_text(json.dumps({**record, "sha256": digest}, indent=2) + "\n")
        # The record first: a safetensors file without its record is ignored, never trusted.
        os.replace(rec_tmp, str(dest) + ".json")
        os.replace(tmp, dest)
    finally:
        for t in (tmp, Path(str(tmp) + ".json")):
            t.unlink(missing_ok=True)
    return digest


# -- loading --------------------------------------------------------------------------------------


def _load_safetensors(path: Path, sha256: str) -> dict:
    from safetensors.torch import load_file

    if sha256_file(path) != sha256.lower():
        raise InputError("sha256 mismatch: the weights are corrupt or were changed (refusing to load)", path)
    try:
        return load_file(str(path))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise InputError(f"not a valid safetensors file ({e})", path) from e


def load(name_or_path: str | os.PathLike, fold: int | None = None) -> tuple[dict[str, Any], dict]:
    """A model's spec and state dict (sha256-checked safetensors), fetching it if needed.

    Args:
        name_or_path: A registry name, an imported user model's name, a user
            model folder (``model.safetensors`` + ``spec.json``) or a
            ``.safetensors`` file with its spec beside it.
        fold: For an ensemble, which fold (default 0); see :func:`load_folds`.

    Returns:
        ``(spec, state_dict)``; ``spec`` has the keys of a registry entry.

    Example:
        >>> spec, state = load("hdbet", fold=0)  # doctest: +SKIP
    """
    model, states = _load_states(name_or_path, None if fold is None else [fold], first_only=fold is None)
    return model, states[0]


def load_folds(name_or_path: str | os.PathLike, folds: list[int] | None = None) -> tuple[dict[str, Any], list[dict]]:
    """Like :func:`load`, but one state dict per fold (all folds by default).

    A model without folds gives a list of one state dict.

    Example:
        >>> spec, states = load_folds("hdbet", [0, 1])  # doctest: +SKIP
        >>> len(states)  # doctest: +SKIP
        2
    """
    return _load_states(name_or_path, folds)


def _load_states(name_or_path: str | os.PathLike, folds: list[int] | None, first_only: bool = False) -> tuple[dict[str, Any], list[dict]]:
    model = _resolve(name_or_path)
    if model.get("source") == "user":
        return model, [_load_safetensors(p, f["sha256"]) for f, p in _user_files(model)][:1]
    name = model["name"]
    if model.get("folds"):
        chosen = [0] if first_only else folds
    else:
        if folds not in (None, [0]):
            raise UsageError(f"model {name!r} is not an ensemble: it has no folds")
        chosen = None
    from safetensors.torch import load_file

    entries = model["files"] + _select_folds(model, chosen)
    states = []
    for f in entries:
        if f["name"].endswith(".safetensors"):
            p = _fetch_one(model, f)  # sha256 checked by _find or by the download
        elif model.get("convert"):
            # A verified conversion spares hashing the (large) original again.
            p = _find_converted(model, f) or _converted(model, f, _fetch_one(model, f))
        else:
            raise ProcessingError(f"model {name!r}: {f['name']} is not safetensors and the registry names no converter")
        try:
            states.append(load_file(str(p)))
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise InputError(f"not a valid safetensors file ({e})", p) from e
    # Files shared by all folds (e.g. a normaliser) come first; merge them into each fold.
    shared = {}
    for s in states[: len(model["files"])]:
        shared.update(s)
    fold_states = states[len(model["files"]) :]
    return model, [{**shared, **s} for s in fold_states] or [shared]


def _resolve(name_or_path: str | os.PathLike) -> dict:
    s = str(name_or_path)
    if s in registry() or _user_model_dir(s) is not None:
        return spec(s)
    p = Path(s).expanduser()
    if p.exists():
        return _read_user_spec(p)[0]
    if "/" in s or s.endswith((".safetensors", ".json", ".toml")):
        raise InputError("no such model file or folder", s)
    return spec(s)  # raises the "unknown model" error


# -- user models ----------------------------------------------------------------------------------


def _user_model_dir(name: str) -> Path | None:
    if not name or "/" in name or name.startswith("."):
        return None
    for base in [*(s / "user" for s in site_dirs()), *(s / "models" / "user" for s in site_dirs()), cache_dir() / "user"]:
        d = base / name
        if any((d / n).is_file() for n in USER_SPEC_NAMES):
            return d
    return None


def _read_user_spec(p: Path) -> tuple[dict, Path]:
    """The spec of a user model folder or .safetensors file, and the spec's path."""
    if p.is_dir():
        cands = [p / n for n in USER_SPEC_NAMES]
        folder = p
    else:
        folder = p.parent
        stem = p.name[: -len(".safetensors")] if p.name.endswith(".safetensors") else p.stem
        cands = [folder / f"{stem}.json", folder / f"{stem}.toml", *(folder / n for n in USER_SPEC_NAMES)]
    for c in cands:
        if c.is_file():
            try:
                doc = json.loads(c.read_text()) if c.suffix == ".json" else tomllib.loads(c.read_text())
            except (OSError, ValueError) as e:
                raise InputError(f"unreadable model spec: {e}", c) from e
            break
    else:
        raise InputError(f"no model spec beside it (expected {' or '.join(x.name for x in cands)})", p)
    if not isinstance(doc, dict) or "architecture" not in doc:
        raise InputError("model spec has no 'architecture'", c)
    listed = [f for f in doc.get("files") or [] if isinstance(f, dict)]
    if not listed and doc.get("sha256"):
        # The short form: one weights file whose hash sits at the top of the spec.
        listed = [{"name": "model.safetensors", "sha256": doc["sha256"]}]
    if p.is_dir():
        files = listed or [{"name": "model.safetensors"}]
    else:
        # A lone .safetensors names its own weights, whatever the spec's file list calls them.
        same = [f for f in listed if f.get("name") == p.name]
        files = same or ([{**listed[0], "name": p.name}] if len(listed) == 1 else [{"name": p.name}])
    for f in files:
        if not f.get("sha256"):
            raise InputError(f"model spec gives no sha256 for {f.get('name')} (needed to check the weights before loading)", c)
        if not str(f.get("name", "")).endswith(".safetensors"):
            raise InputError(f"user model weights must be .safetensors, not {f.get('name')}", c)
    doc = _normalise(doc.get("name") or (folder.name if p.is_dir() else stem), doc)
    doc["files"] = files
    doc["source"] = "user"
    doc["folder"] = str(folder)
    return doc, c


def _user_files(model: dict) -> list[tuple[dict, Path]]:
    folder = Path(model["folder"])
    out = []
    for f in model["files"]:
        p = folder / f["name"]
        if not p.is_file():
            raise InputError("model weights are missing", p)
        out.append((f, p))
    return out


def save_user_model(folder: str | os.PathLike, spec: dict[str, Any], state_dict: dict) -> Path:
    """Write a user model as the hub loads it: ``model.safetensors`` + ``spec.json``.

    The sha256 of the weights goes into the spec's ``files``; both files are
    written atomically. This is the format ``medcli train`` produces.

    Example:
        >>> save_user_model("runs/my_unet", {"architecture": "unet", "task": "tissue-segmentation",
        ...                 "params": {"dim": 3}}, net.state_dict())  # doctest: +SKIP
        PosixPath('runs/my_unet')
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "model.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    digest = _save_safetensors(state, weights, {"kind": "user model"})
    Path(str(weights) + ".json").unlink(missing_ok=True)
    doc = {k: v for k, v in spec.items() if k not in ("source", "folder")}
    doc["files"] = [{"name": weights.name, "sha256": digest, "size": weights.stat().st_size}]
    if "labels" in doc:
        doc["labels"] = {str(k): v for k, v in doc["labels"].items()}
    tmp = folder / f".spec.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, folder / "spec.json")
    return folder


# -- listing, import, verify, rm ------------------------------------------------------------------


def _status(model: dict) -> dict[str, Any]:
    files = _all_files(model)
    origins = []
    for f in files:
        found = _find(model, f, check=False)
        origins.append(found[0] if found else None)
    present = [o for o in origins if o]
    return {
        "bundled": bool(files) and all(o == "bundled" for o in origins),
        "cached": bool(files) and len(present) == len(files),
        "partial": 0 < len(present) < len(files),
        "where": sorted(set(present)),
    }


def list_models() -> list[dict[str, Any]]:
    """One row per model: name, task, version, size (bytes), licence, summary and where it is.

    ``cached`` is true when every file is on this node (cache, site folder or
    bundled); ``bundled`` when every file ships in the package.
    """
    rows = []
    for name in sorted(registry()):
        m = spec(name)
        st = _status(m)
        rows.append(
            {
                "name": name,
                "task": m["task"],
                "version": str(m["version"]),
                "size": sum(int(f.get("size") or 0) for f in _all_files(m)),
                "licence": m.get("licence", ""),
                "summary": m.get("summary", ""),
                "folds": len(m.get("folds", [])),
                **st,
            }
        )
    user_root = cache_dir() / "user"
    if user_root.is_dir():
        for d in sorted(user_root.iterdir()):
            try:
                m, _ = _read_user_spec(d)
            except InputError:
                continue
            rows.append(
                {
                    "name": d.name,
                    "task": m.get("task", ""),
                    "version": str(m.get("version", "")),
                    "size": sum((d / f["name"]).stat().st_size for f in m["files"] if (d / f["name"]).is_file()),
                    "licence": m.get("licence", ""),
                    "summary": m.get("summary", "user model"),
                    "folds": 0,
                    "bundled": False,
                    "cached": True,
                    "partial": False,
                    "where": ["user"],
                }
            )
    return rows


def path(name: str) -> Path:
    """The folder holding a model's files on this node (or where the cache would put them)."""
    model = spec(name)
    if model.get("source") == "user":
        return Path(model["folder"])
    for f in _all_files(model):
        found = _find(model, f, check=False)
        if found:
            return found[1].parent
    return cache_dir() / name / str(model["version"])


def import_(source: str | os.PathLike) -> list[Path]:
    """Copy verified weights into the cache, for nodes without internet.

    ``source`` is a file or a folder (searched recursively). A file is
    imported when its sha256 matches a registry file (whatever its name: the
    upstream ``0.model`` of HD-BET is recognised); a folder holding a user
    model (``spec.json`` + ``model.safetensors``) is imported whole, after its
    hashes are checked, as ``cache/user/NAME``.

    Returns:
        The installed paths.

    Raises:
        InputError: nothing in ``source`` is a known model file.
    """
    from medcli.runtime import log

    src = Path(source).expanduser()
    if not src.exists():
        raise InputError("no such file or folder", src)
    by_size: dict[int | None, list[tuple[dict, dict]]] = {}
    for name in registry():
        m = spec(name)
        for f in _all_files(m):
            by_size.setdefault(f.get("size"), []).append((m, f))
    installed: list[Path] = []
    if src.is_dir() and any((src / n).is_file() for n in USER_SPEC_NAMES):
        return [_import_user_model(src)]
    files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
    for p in files:
        if src.is_dir() and p.name in USER_SPEC_NAMES and p.parent != src:
            installed.append(_import_user_model(p.parent))
            continue
        size = p.stat().st_size
        cands = by_size.get(size, []) + by_size.get(None, [])
        if not cands:
            continue
        digest = sha256_file(p)
        match = [(m, f) for m, f in cands if f["sha256"].lower() == digest]
        if not match:
            continue
        for m, f in match:
            dest = _cache_path(m, f["name"])
            _copy_verified(p, dest, f["sha256"], f.get("size"))
            log.info(f"{p} -> {dest} ({m['name']})")
            installed.append(dest)
            if m.get("convert") and not f["name"].endswith(".safetensors"):
                _converted(m, f, dest)
    if not installed:
        raise InputError("nothing to import: no file matches the sha256 of a registered model, and no spec.json was found", src)
    return installed


def _copy_verified(src: Path, dest: Path, sha256: str, size: int | None) -> None:
    from filelock import FileLock

    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock", mode=0o666 & ~umask()):
        if verify_file(dest, sha256, size):
            return
        tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
        try:
            shutil.copyfile(src, tmp)
            if sha256_file(tmp) != sha256.lower():
                raise ProcessingError("the copy does not match its sha256 (disk or file changing?); nothing imported", src)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)


def _import_user_model(folder: Path) -> Path:
    model, spec_path = _read_user_spec(folder)
    for f, p in _user_files(model):
        if sha256_file(p) != f["sha256"].lower():
            raise InputError("sha256 mismatch with spec; nothing imported", p)
    name = model["name"]
    if "/" in name or name.startswith(".") or not name:
        raise InputError(f"bad model name {name!r} in spec", spec_path)
    dest = cache_dir() / "user" / name
    tmp = dest.with_name(f".{name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for f, p in _user_files(model):
            shutil.copyfile(p, tmp / f["name"])
        shutil.copyfile(spec_path, tmp / USER_SPEC_NAMES[0 if spec_path.suffix == ".json" else 1])
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def verify() -> list[dict[str, Any]]:
    """Re-hash every cached and bundled file; one row per file with ``ok`` true or false.

    Rows: ``model``, ``file``, ``path``, ``where`` (cache, bundled, site, user) and ``ok``.
    """
    rows = []
    for name in sorted(registry()):
        m = spec(name)
        for f in _all_files(m):
            for origin, p in _candidates(m, f["name"]):
                if (origin == "bundled" and not f.get("bundled")) or not p.is_file():
                    continue
                rows.append({"model": name, "file": f["name"], "path": str(p), "where": origin, "ok": verify_file(p, f["sha256"], f.get("size"))})
            conv = _cache_path(m, _converted_name(f["name"]))
            if m.get("convert") and conv.is_file():
                rec = _read_record(conv) or {}
                rows.append({"model": name, "file": conv.name, "path": str(conv), "where": "cache", "ok": bool(rec) and sha256_file(conv) == rec.get("sha256")})
    user_root = cache_dir() / "user"
    if user_root.is_dir():
        for d in sorted(user_root.iterdir()):
            try:
                m, _ = _read_user_spec(d)
            except InputError:
                continue
            for f in m["files"]:
                p = d / f["name"]
                rows.append({"model": d.name, "file": f["name"], "path": str(p), "where": "user", "ok": p.is_file() and sha256_file(p) == f["sha256"].lower()})
    return rows


def rm(name: str) -> list[Path]:
    """Delete a model's files from the cache (never from site folders or the package)."""
    if name not in registry() and _user_model_dir(name) is None:
        spec(name)  # raises the "unknown model" error
    removed = []
    for d in (cache_dir() / name, cache_dir() / "user" / name):
        if d.is_dir():
            shutil.rmtree(d)
            removed.append(d)
    return removed


__all__ = [
    "cache_dir",
    "fetch",
    "home",
    "import_",
    "list_models",
    "load",
    "load_folds",
    "path",
    "registry",
    "rm",
    "save_user_model",
    "site_dirs",
    "spec",
    "verify",
]
