"""``medcli models``: list, inspect, download, import, verify and remove model weights.

A group of sub-commands over :mod:`medcli.models.hub`. Each sub-command is an
ordinary ``@command(batch=False)`` declaration (so it gets the shared options,
logging and error handling); :class:`GroupSpec` gathers them into one click
group that :mod:`medcli.cli.app` loads like any other command.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Annotated, List, Optional, Sequence

import typer

from medcli.cli.command import CommandSpec, command

HPC_NOTE = (
    "Weights are searched in MEDCLI_MODELS_PATH (read-only site folders), in the package, then in the cache "
    "(MEDCLI_HOME, default the user cache folder). MEDCLI_MODEL_URL is a mirror tried first; MEDCLI_OFFLINE=1 "
    "never uses the network."
)


@dataclass
class GroupSpec:
    """A command made of sub-commands; quacks like :class:`CommandSpec` for the app and docs."""

    name: str
    summary: str
    description: str
    examples: Sequence[tuple[str, str]]
    subcommands: list[CommandSpec] = field(default_factory=list)
    batch: bool = False
    references: Sequence[str] = ()

    def help_text(self) -> str:
        return f"{self.summary}\n\n{self.description}".strip()

    def epilog(self) -> str:
        if not self.examples:
            return ""
        return "Examples:\n\n" + "\n\n".join(f"{d}: {c}" for d, c in self.examples)

    def click_command(self):
        class _Group(typer.core.TyperGroup):
            def get_help_option(self, ctx):
                opt = super().get_help_option(ctx)
                if opt is not None:
                    opt.metavar = ""  # not typer's '<bool>'
                return opt

        app = typer.Typer(
            cls=_Group,
            name=self.name,
            help=self.help_text(),
            epilog=self.epilog(),
            add_completion=False,
            rich_markup_mode="rich",
            # Without a sub-command: one error line pointing at --help (rich help printed
            # by no_args_is_help would bypass medcli's error path).
            no_args_is_help=False,
            pretty_exceptions_enable=False,
            context_settings={"help_option_names": ["-h", "--help"]},
        )
        for sub in self.subcommands:
            sub.register(app, sub.name.split()[-1])
        cmd = typer.main.get_command(app)
        cmd.medcli_spec = self  # type: ignore[attr-defined]
        # Same attribute as harmonize's 'fit' form: docs generation walks it.
        cmd.medcli_subcommands = {sub.name.split()[-1]: sub for sub in self.subcommands}  # type: ignore[attr-defined]
        return cmd


def human_size(n: int) -> str:
    """Bytes for people.

    Example:
        >>> human_size(65443735)
        '62.4 MiB'
    """
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows) + "\n"


def _where(row: dict) -> str:
    if row["bundled"]:
        return "bundled"
    if row["cached"]:
        return "cached" if row["where"] == ["cache"] else "+".join(row["where"])
    return "partial" if row["partial"] else "remote"


JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@command(
    "models list",
    summary="List the registered models and where their weights are.",
    description="Columns: name, task, version, size, licence and where the weights are: bundled (in the package), "
    "cached (downloaded or imported), site (MEDCLI_MODELS_PATH), partial, or remote (not on this node yet).",
    examples=[("All models", "medcli models list"), ("As JSON", "medcli models list --json")],
    batch=False,
)
def list_cli(as_json: JsonOpt = False) -> int:
    from medcli.models import hub

    rows = hub.list_models()
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return 0
    table = [["NAME", "TASK", "VERSION", "SIZE", "LICENCE", "STATUS"]]
    table += [[r["name"], r["task"], r["version"], human_size(r["size"]), r["licence"], _where(r)] for r in rows]
    sys.stdout.write(_table(table))
    return 0


@command(
    "models info",
    summary="Show a model's spec, files, citation and model card.",
    examples=[("HD-BET", "medcli models info hdbet"), ("Spec as JSON", "medcli models info hdbet --json")],
    batch=False,
)
def info_cli(
    name: Annotated[str, typer.Argument(help="Model name (see 'medcli models list'), or a user model folder.", show_default=False)],
    as_json: JsonOpt = False,
) -> int:
    from medcli.models import hub

    spec = hub._resolve(name)
    if as_json:
        sys.stdout.write(json.dumps(spec, indent=2, default=str) + "\n")
        return 0
    out = [f"{spec['name']} {spec.get('version', '')}".rstrip()]
    for key in ("summary", "task", "architecture", "licence", "citation"):
        if spec.get(key):
            out.append(f"  {key + ':':14}{spec[key]}")
    if spec.get("input"):
        out.append("  input:        " + ", ".join(f"{k}={v}" for k, v in spec["input"].items()))
    if spec.get("labels"):
        out.append("  labels:       " + ", ".join(f"{k}={v}" for k, v in spec["labels"].items()))
    files = list(spec.get("files", [])) + list(spec.get("folds", []))
    if files:
        out.append(f"  files:        {len(files)}" + (f" ({len(spec['folds'])} folds)" if spec.get("folds") else ""))
        for f in files:
            size = human_size(f["size"]) if f.get("size") else ""
            out.append(f"    {f['name']}  {size}  sha256:{f.get('sha256', '?')[:16]}")
    out.append(f"  path:         {hub.path(name) if spec.get('source') != 'user' else spec['folder']}")
    text = "\n".join(out) + "\n"
    card = spec.get("card")
    if card and (hub.PACKAGE / card).is_file():
        text += "\n" + (hub.PACKAGE / card).read_text()
    sys.stdout.write(text)
    return 0


@command(
    "models pull",
    summary="Download models into the cache (verified, resumable, one transfer for many processes).",
    description="Prints the path of each file. Run it on a login node before jobs on offline compute nodes; "
    "with MEDCLI_HOME=SITE it fills a shared folder that compute nodes read through MEDCLI_MODELS_PATH=SITE. "
    + HPC_NOTE,
    examples=[
        ("One model", "medcli models pull hdbet"),
        ("Only two folds of an ensemble", "medcli models pull hdbet --folds 0,1"),
        ("Fill a shared site folder", "MEDCLI_HOME=/shared/medcli medcli models pull hdbet"),
    ],
    batch=False,
)
def pull_cli(
    names: Annotated[List[str], typer.Argument(help="Model names (see 'medcli models list').", show_default=False)],
    folds: Annotated[Optional[str], typer.Option("--folds", help="Comma-separated fold numbers of an ensemble (default: all folds).", show_default=False)] = None,
) -> int:
    from medcli.runtime import log
    from medcli.errors import UsageError
    from medcli.models import hub

    chosen = None
    if folds:
        try:
            chosen = [int(x) for x in folds.split(",") if x.strip()]
        except ValueError as e:
            raise UsageError(f"--folds: expected numbers such as 0,1,2, got {folds!r}") from e
    for name in names:
        paths = hub.fetch(name, chosen)
        for p in paths:
            sys.stdout.write(f"{p}\n")
        log.info(f"{name}: {len(paths)} file(s) ready")
    return 0


@command(
    "models import",
    summary="Install weights copied from elsewhere (air-gapped nodes), checked by sha256.",
    description="A file is recognised by its sha256 whatever its name (HD-BET's upstream 0.model ... 4.model "
    "work as they are); a folder is searched recursively; a user model folder (model.safetensors + spec.json, "
    "as 'medcli train' writes) is imported whole and then usable by its name. Prints the installed paths.",
    examples=[
        ("Upstream HD-BET folds", "medcli models import ~/Downloads/hd-bet_params/"),
        ("A trained model", "medcli models import runs/my_unet/"),
    ],
    batch=False,
)
def import_cli(
    sources: Annotated[List[str], typer.Argument(help="Files or folders to import.", show_default=False)],
) -> int:
    from medcli.models import hub

    for src in sources:
        for p in hub.import_(src):
            sys.stdout.write(f"{p}\n")
    return 0


@command(
    "models verify",
    summary="Re-hash every cached and bundled model file; fail if any is corrupt.",
    description="Prints one line per file: ok or CORRUPT, model, file, path. Exit code 4 when a file is corrupt "
    "(remove it with 'medcli models rm NAME' and pull again).",
    examples=[("Check the cache", "medcli models verify")],
    batch=False,
)
def verify_cli(as_json: JsonOpt = False) -> int:
    from medcli.errors import ProcessingError
    from medcli.models import hub

    rows = hub.verify()
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    elif rows:
        sys.stdout.write(_table([["ok" if r["ok"] else "CORRUPT", r["model"], r["file"], r["path"]] for r in rows]))
    bad = [r for r in rows if not r["ok"]]
    if bad:
        models = sorted({r["model"] for r in bad})
        raise ProcessingError(
            f"{len(bad)} corrupt model file(s) ({', '.join(r['path'] for r in bad)}): "
            f"run 'medcli models rm {' '.join(models)}' and pull again"
        )
    return 0


@command(
    "models path",
    summary="Print the folder that holds a model's weights on this node.",
    examples=[("Where HD-BET is", "ls $(medcli models path hdbet)")],
    batch=False,
)
def path_cli(name: Annotated[str, typer.Argument(help="Model name.", show_default=False)]) -> int:
    from medcli.models import hub

    sys.stdout.write(f"{hub.path(name)}\n")
    return 0


@command(
    "models rm",
    summary="Delete models from the cache (never from site folders or the package).",
    examples=[("Free the disk HD-BET uses", "medcli models rm hdbet")],
    batch=False,
)
def rm_cli(names: Annotated[List[str], typer.Argument(help="Model names.", show_default=False)]) -> int:
    from medcli.runtime import log
    from medcli.models import hub

    for name in names:
        removed = hub.rm(name)
        if not removed:
            log.warning(f"{name}: nothing in the cache ({hub.cache_dir()})")
        for d in removed:
            log.info(f"removed {d}")
    return 0


cli = GroupSpec(
    name="models",
    summary="List, download, import and verify model weights.",
    description="Every model medcli runs is declared in one registry (name, version, files with sha256 and "
    "mirrors, licence, citation, input spec, labels). " + HPC_NOTE,
    examples=[
        ("What is available", "medcli models list"),
        ("Download on a login node", "medcli models pull hdbet"),
        ("Air-gapped install", "medcli models import hd-bet_params/"),
        ("Check the cache", "medcli models verify"),
    ],
    subcommands=[list_cli, info_cli, pull_cli, import_cli, verify_cli, path_cli, rm_cli],
)
