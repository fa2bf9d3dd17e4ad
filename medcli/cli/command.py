"""The declaration of a command, and the batch engine every image command shares.

A command module declares itself once::

    @command(
        "denoise",
        summary="Remove noise from MR images.",
        examples=[("Denoise a T1", "medcli denoise t1.nii.gz -o t1_dn.nii.gz")],
        references=["Coupe et al. 2008, ..."],
    )
    def cli(method: Annotated[str, typer.Option(help="...")] = "auto") -> Step:
        return lambda image, job: denoise(image, method=method)

The function receives the command's own options and returns a *step*: a
callable ``step(image, job) -> Image | None`` run once per input (heavy
state such as a model is created by the command function, once per process).
The decorator adds the shared options (:mod:`medcli.cli.options`), reads each
input, writes each output atomically, and turns errors into exit codes. Help,
man pages and shell completions are all generated from this declaration.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import typer

from medcli import __version__
from medcli.cli import options as opt
from medcli.errors import (
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_PARTIAL,
    InputError,
    MedcliError,
    ProcessingError,
    UsageError,
)
from medcli.files import IMAGE_SUFFIXES, sha256_of, sidecar_path
from medcli.runtime import check_device, configure_threads, log, progress, setup_logging, state


@dataclass
class Job:
    """One input of a batch, handed to the step with helpers for side outputs.

    ``provenance`` is merged into the ``--sidecar`` JSON: learned commands set
    ``job.provenance["Model"] = {"Name": name, "SHA256": sha}`` and, when they
    draw random numbers, ``job.provenance["Seed"] = seed``.
    """

    source: str
    output: str | None
    index: int
    force: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    #: --skip-existing is redoing this input (its output is missing): side outputs that an
    #: interrupted run left (sidecar, --stats ...) are replaced, so that a resubmission completes.
    resume: bool = False

    def _side_force(self, dest: str) -> bool:
        if self.resume and not self.force and Path(dest).exists():
            log.warning(f"{dest}: left by an interrupted run (its output {self.output} is missing); replaced")
            return True
        return self.force

    def path(self, template: str | None) -> str | None:
        """Expand ``{stem}``-style placeholders of a side-output option."""
        return None if template is None else expand(template, self.source, self.index)

    def write_image(self, image, template: str | None) -> None:
        from medcli import io

        dest = self.path(template)
        if dest:
            io.write(image, dest, force=self._side_force(dest), description=describe())
            self.written.append(dest)

    def write_text(self, text: str | bytes, template: str | None) -> None:
        dest = self.path(template)
        if not dest:
            return
        if dest == "-":
            out = sys.stdout.buffer
            out.write(text if isinstance(text, bytes) else text.encode())
            out.flush()
            return
        from medcli.io.safe import atomic_output

        with atomic_output(dest, self._side_force(dest)) as tmp:
            if isinstance(text, bytes):
                tmp.write_bytes(text)
            else:
                tmp.write_text(text)
        self.written.append(dest)


Step = Callable[[Any, Job], Any]


@dataclass
class CommandSpec:
    """Everything a command declares: used for help, man pages and completions."""

    name: str
    summary: str
    description: str
    examples: Sequence[tuple[str, str]]
    references: Sequence[str]
    batch: bool
    fn: Callable[..., Any]
    needs_3d: bool = False
    allow_nonfinite: bool = False
    output_required: bool = True
    output_kind: str = "image"
    #: Reads one input instead of medcli.io.read (raw data: k-space, sinograms); its
    #: result goes to the step as is, without the image checks (finite, 3D).
    reader: Callable[[str], Any] | None = None
    #: Sub-commands recognised by the first word (``harmonize fit``, ``register apply``):
    #: word -> declaration, or a function returning it (imported only when used).
    subcommands: dict[str, "CommandSpec | Callable[[], CommandSpec]"] = field(default_factory=dict)

    def with_subcommands(self, **subs: "CommandSpec | Callable[[], CommandSpec]") -> "CommandSpec":
        """This declaration with sub-commands added (``cli = cli.with_subcommands(fit=fit_cli)``)."""
        return replace(self, subcommands={**self.subcommands, **subs})

    def subcommand(self, word: str) -> "CommandSpec":
        sub = self.subcommands[word]
        return sub if isinstance(sub, CommandSpec) else sub()

    def click_command(self):
        """The click command typer builds from the declaration.

        The declaration (spec) stays reachable as ``cmd.medcli_spec``: the man
        pages and shell completions are generated from it. A first argument that
        names a sub-command hands the rest of the line to that sub-command: the
        main command keeps its positional inputs (a click group could not).
        """
        app = typer.Typer(
            add_completion=False,
            pretty_exceptions_enable=False,
            rich_markup_mode="rich",
            context_settings={"help_option_names": ["-h", "--help"]},
        )
        self.register(app)
        cmd = typer.main.get_command(app)
        if not self.subcommands:
            return cmd
        make_context = cmd.make_context
        spec = self

        def dispatch(info_name, args, parent=None, **extra):
            if args and args[0] in spec.subcommands:
                sub = spec.subcommand(args[0]).click_command()
                return sub.make_context(f"{info_name} {args[0]}", list(args[1:]), parent=parent, **extra)
            return make_context(info_name, args, parent=parent, **extra)

        cmd.make_context = dispatch  # type: ignore[method-assign]
        cmd.medcli_subcommands = {w: spec.subcommand(w) for w in spec.subcommands}  # type: ignore[attr-defined]
        return cmd

    def register(self, app: typer.Typer, name: str | None = None) -> None:
        """Add this command to a typer app (also as a sub-command of a group, under ``name``).

        The click command is a :class:`MedcliCommand` that knows its declaration
        (``cmd.medcli_spec``): help, man pages and completions come from it.
        """
        cls = type("MedcliCommand", (MedcliCommand,), {"medcli_spec": self})
        app.command(name or self.name, cls=cls, help=self.help_text(), short_help=self.summary)(self.wrapper())

    def help_text(self) -> str:
        return f"{self.summary}\n\n{self.description}".strip()

    def epilog(self) -> str:
        """Examples and references as plain text (the help without rich, man pages)."""
        parts = []
        if self.examples:
            parts.append("Examples:\n" + "\n".join(f"  {d}:\n    $ {c}" for d, c in self.examples))
        if self.references:
            parts.append("References:\n" + "\n".join(f"  {r}" for r in self.references))
        return "\n\n".join(parts)

    def wrapper(self) -> Callable[..., int]:
        own = list(inspect.signature(self.fn, eval_str=True).parameters.values())
        hints = typing_hints(self.fn)
        shared = (opt.BATCH if self.batch else []) + opt.COMMON
        first = []
        if self.batch:
            first = [inspect.Parameter("inputs", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None, annotation=opt.OptionalInputs)]
        params = first + [p.replace(annotation=hints.get(p.name, p.annotation)) for p in own]
        params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a) for n, a, d in shared]
        shared_names = {n for n, _, _ in shared} | ({"inputs"} if self.batch else set())
        spec = self

        def run(**kwargs: Any) -> int:
            common = {k: kwargs.pop(k) for k in list(kwargs) if k in shared_names}
            state.quiet, state.verbose, state.debug = common["quiet"], common["verbose"], common["debug"]
            state.command = spec.name
            setup_logging(state.quiet, state.verbose)
            configure_threads(common["threads"])
            state.device = check_device(common["device"])
            if not spec.batch:
                rv = spec.fn(**kwargs)
                return int(rv or 0)
            return run_batch(spec, common, kwargs)

        run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        run.__doc__ = self.help_text()
        run.__name__ = self.name.replace("-", "_")
        return run


class MedcliCommand(typer.core.TyperCommand):
    """A typer command whose help ends with the declaration's examples and references.

    Help texts are written as plain text (not rich markup), so that a
    ``[default: ...]`` or ``[0, 1]`` in them is shown, not swallowed.
    """

    medcli_spec: "CommandSpec | None" = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.param_type_name == "argument":
                # The metavar says it all ('INPUT'); typer would add '<list[str]>'.
                param.metavar = param.metavar or (param.name or "arg").upper()
                param.display_type_rich = lambda ctx: None
            elif getattr(param, "metavar", None) is None:
                param.metavar = _metavar(param)

    def get_help_option(self, ctx):
        help_option = super().get_help_option(ctx)
        if help_option is not None:
            help_option.metavar = ""
            help_option.rich_help_panel = opt.COMMON_PANEL
        return help_option

    def format_help(self, ctx, formatter) -> None:
        spec = self.medcli_spec
        if not typer.core.HAS_RICH or self.rich_markup_mode is None:
            super().format_help(ctx, formatter)
            return
        from rich.markup import escape

        saved = [(self, self.help)] + [(p, getattr(p, "help", None)) for p in self.get_params(ctx)]
        try:
            for obj, text in saved:
                if text:
                    obj.help = escape(text)
            super().format_help(ctx, formatter)
        finally:
            for obj, text in saved:
                obj.help = text
        if spec is None or not (spec.examples or spec.references):
            return
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text
        from typer import rich_utils

        console = rich_utils._get_rich_console()
        if spec.examples:
            table = Table.grid(padding=(0, 1))
            for desc, cmdline in spec.examples:
                table.add_row(Text(desc, style="dim"))
                table.add_row(Text("  $ " + cmdline, style="bold"))
            console.print(Panel(table, title="Examples", title_align="left", border_style="dim"))
        if spec.references:
            table = Table.grid()
            for ref in spec.references:
                table.add_row(Text(ref))
            console.print(Panel(table, title="References", title_align="left", border_style="dim"))

    def format_epilog(self, ctx, formatter) -> None:  # noqa: ARG002 - plain (non-rich) help only
        spec = self.medcli_spec
        if spec is not None and spec.epilog():
            formatter.write_paragraph()
            for line in spec.epilog().splitlines():
                formatter.write(line + "\n")


def _metavar(param) -> str | None:
    """A short metavar for help: none for switches, TEXT/INTEGER/FLOAT or the choices otherwise."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    try:
        label = param.display_type(None).strip("<>")
    except Exception:  # noqa: BLE001 - an unusual type: let typer show its own label
        return None
    label = label.replace(" range", "")
    return {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "path": "PATH", "file": "PATH"}.get(label, label)


def typing_hints(fn: Callable) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:
        return {}


def command(
    name: str,
    *,
    summary: str,
    description: str = "",
    examples: Sequence[tuple[str, str]] = (),
    references: Sequence[str] = (),
    batch: bool = True,
    needs_3d: bool = False,
    allow_nonfinite: bool = False,
    output_required: bool = True,
    output_kind: str = "image",
) -> Callable[[Callable[..., Any]], CommandSpec]:
    """Declare a command (see the module docstring)."""

    def deco(fn: Callable[..., Any]) -> CommandSpec:
        return CommandSpec(
            name=name,
            summary=summary,
            description=inspect.cleandoc(description or (fn.__doc__ or "")),
            examples=list(examples),
            references=list(references),
            batch=batch,
            fn=fn,
            needs_3d=needs_3d,
            allow_nonfinite=allow_nonfinite,
            output_required=output_required,
            output_kind=output_kind,
        )

    return deco


# -- batch engine ---------------------------------------------------------------------------------


def stem_of(source: str) -> str:
    name = Path(source.rstrip("/")).name
    low = name.lower()
    for suf in IMAGE_SUFFIXES:
        if low.endswith(suf):
            return name[: -len(suf)]
    return name


def expand(template: str, source: str, index: int) -> str:
    """Fill an output template for one input.

    Example:
        >>> expand("out/{stem}_mask.nii.gz", "data/sub-01_T1w.nii.gz", 0)
        'out/sub-01_T1w_mask.nii.gz'
    """
    if source == "-":
        stem, name, folder = "stdin", "stdin.nii", "."
    elif source.startswith("sample:"):
        stem, name, folder = source[7:], source[7:] + ".nii.gz", "."
    else:
        stem, name, folder = stem_of(source), Path(source.rstrip("/")).name, str(Path(source).parent)
    try:
        return template.format(stem=stem, name=name, dir=folder, index=index)
    except (KeyError, IndexError, ValueError) as e:
        raise UsageError(f"bad output template {template!r}: use {{stem}}, {{name}}, {{dir}} or {{index}} ({e})") from e


def read_list(path: str) -> list[tuple[str, str | None]]:
    """Lines of ``--list``: input, optionally followed by a tab or comma and an output."""
    try:
        text = Path(path).read_text() if path != "-" else sys.stdin.read()
    except OSError as e:
        from medcli.io.safe import os_error_to_input

        raise os_error_to_input(e, path) from e
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        sep = "\t" if "\t" in line else ("," if "," in line else None)
        if sep:
            a, b = (s.strip() for s in line.split(sep, 1))
            rows.append((a, b or None))
        else:
            rows.append((line, None))
    return rows


#: Array-task variables of the schedulers, and whether each counts from 1.
#: SLURM and PBS Pro take whatever range was submitted (``--array=0-9``, ``-J 0-9``);
#: SGE (``-t``) and LSF (``J[1-10]``) cannot start below 1.
ARRAY_ENV_BASE = {"SLURM_ARRAY_TASK_ID": 0, "PBS_ARRAY_INDEX": 0, "PBS_ARRAYID": 0, "SGE_TASK_ID": 1, "LSB_JOBINDEX": 1}


def array_index_from_env() -> tuple[int, str] | None:
    """The 0-based chunk index of this array task, and the variable it came from.

    SLURM and PBS indices are taken as given (submit ``--array=0-M``); SGE and
    LSF indices, which start at 1, are reduced by 1. ``LSB_JOBINDEX=0`` means
    "not an array job" for LSF and is ignored.
    """
    for var, base in ARRAY_ENV_BASE.items():
        val = os.environ.get(var, "").strip()
        if val.isdigit() and int(val) >= base and not (var == "LSB_JOBINDEX" and val == "0"):
            return int(val) - base, var
    return None


def _warn_about_slurm_range(n_chunks: int) -> None:
    """Catch the two classic SLURM array mistakes: starting at 1, and too few tasks."""
    lo, hi = os.environ.get("SLURM_ARRAY_TASK_MIN", ""), os.environ.get("SLURM_ARRAY_TASK_MAX", "")
    if lo.isdigit() and int(lo) > 0:
        log.warning(f"the SLURM array starts at {lo}, so chunks 0..{int(lo) - 1} are never run: submit --array=0-{n_chunks - 1}")
    if hi.isdigit() and int(hi) < n_chunks - 1:
        log.warning(f"the SLURM array ends at {hi} but there are {n_chunks} chunks: submit --array=0-{n_chunks - 1}")


def plan(spec: CommandSpec, common: dict[str, Any]) -> list[Job]:
    """The (input, output) pairs this process handles.

    Outputs come from the list file's second column, else from ``-o`` (a file,
    a folder, or a template expanded per input). ``{index}`` is the position
    in the whole list, so array tasks name their outputs consistently.

    Raises:
        UsageError: no input, stdin used twice, one output for many inputs.
    """
    inputs = list(common.get("inputs") or [])
    rows: list[tuple[str, str | None]] = [(i, None) for i in inputs]
    stdin_uses = inputs.count("-") + (common.get("list_file") == "-")
    if common.get("list_file"):
        if stdin_uses < 2:
            rows += read_list(common["list_file"])
            stdin_uses += [src for src, _ in rows[len(inputs) :]].count("-")
    if stdin_uses > 1:
        raise UsageError("stdin ('-') can be read only once")
    if not rows:
        raise UsageError("no input given (name files, '-', sample:NAME, or use --list FILE)")
    output = common.get("output")
    many = len(rows) > 1
    if output and output != "-" and "{" not in output and (Path(output).is_dir() or output.endswith("/")):
        output = str(Path(output) / "{name}")
    if many and output and output != "-" and "{" not in output and not all(o for _, o in rows):
        raise UsageError(f"{len(rows)} inputs but one output {output!r}: use a template such as out/{{stem}}.nii.gz")
    if many and output == "-":
        raise UsageError("several inputs cannot all go to stdout")
    jobs = []
    for i, (src, out) in enumerate(rows):
        dest = out or (expand(output, src, i) if output else None)
        if dest is None and spec.output_required:
            if stdout_is_pipe() and not many:
                dest = "-"  # the next command of a pipe reads it
            else:
                raise UsageError("no output given: use -o FILE (or -o - to write to stdout)")
        jobs.append(Job(src, dest, i, force=common.get("force", False)))
    outs = [j.output for j in jobs if j.output and j.output != "-"]
    if len(set(outs)) < len(outs):
        dup = next(o for o in outs if outs.count(o) > 1)
        raise UsageError(f"two inputs would write the same output {dup!r}: use {{stem}} or {{index}} in the template")
    idx = common.get("array_index")
    k = common.get("chunk") or 1
    if idx is None and common.get("list_file"):
        found = array_index_from_env()
        if found is not None:
            idx, var = found
            log.debug(f"array task {idx} from {var}")
            if var == "SLURM_ARRAY_TASK_ID":
                _warn_about_slurm_range(-(-len(jobs) // k))
    if idx is not None:
        jobs = jobs[idx * k : (idx + 1) * k]
        if not jobs:
            log.warning(f"array index {idx} (chunk {k}) is past the end of {len(rows)} inputs: nothing to do")
    return jobs


def stdout_is_pipe() -> bool:
    """Whether stdout feeds another process (a pipe or socket).

    Only then may a forgotten ``-o`` mean stdout: a terminal must never get
    image bytes, and neither should a batch job's log file (``> out.nii`` works
    with an explicit ``-o -``).
    """
    import stat

    try:
        mode = os.fstat(sys.stdout.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def describe() -> str:
    """The provenance line written into every image header (NIfTI descrip, NRRD/MHA metadata)."""
    return f"medcli {__version__} {state.command}".strip()


def run_batch(spec: CommandSpec, common: dict[str, Any], params: dict[str, Any]) -> int:
    """Run the command's step over every planned input; return the exit code.

    Every output is checked before any work (a batch must not fail after an
    hour on a typo). One input: its error is raised (exit 3/4). Several: a
    failing input is reported, the others go on, and the exit code is 5.
    """
    from medcli import io

    jobs = plan(spec, common)
    sidecar = bool(common.get("sidecar"))
    todo = []
    for job in jobs:
        if job.output and job.output != "-":
            if common.get("skip_existing") and Path(job.output).exists():
                if sidecar and not Path(sidecar_path(job.output)).exists():
                    # A task killed between the image and its sidecar: say so rather than hide it.
                    log.warning(f"{job.output}: exists without its sidecar (an interrupted run?): skipped; redo it with --force")
                else:
                    log.info(f"{job.output}: exists, skipped")
                continue
            job.resume = bool(common.get("skip_existing"))
            if spec.output_kind == "image" and io.format_of(job.output) is None:
                raise ProcessingError(
                    "unknown output extension (use .nii.gz, .nii, .mgz, .nrrd, .nhdr, .mha or .mhd)", job.output
                )
            io.check_writable(job.output, job.force)
            if sidecar:
                io.check_writable(sidecar_path(job.output), job.force or job.resume)
        elif sidecar and job.output == "-":
            log.warning("--sidecar: no sidecar for an image written to stdout")
        todo.append(job)
    if not todo:
        return EXIT_OK
    # Heavy state (a model) is built here, once per process, not once per input.
    step = spec.fn(**params)
    failures: list[tuple[Job, BaseException]] = []
    single = len(todo) == 1 and len(jobs) == 1
    with progress(len(todo) if len(todo) > 1 else None, spec.name) as advance:
        for job in todo:
            t0 = time.perf_counter()
            try:
                if spec.reader is not None:
                    image = spec.reader(job.source)
                else:
                    image = io.read(job.source, series=common.get("series"))
                    image = io.check_finite(image, job.source, allow=spec.allow_nonfinite)
                    if spec.needs_3d:
                        _refuse_planar(image, job.source)
                        io.check_3d(image, job.source)
                result = step(image, job)
                if result is not None and job.output:
                    io.write(result, job.output, force=job.force, description=describe())
                    if job.output != "-":
                        job.written.insert(0, job.output)
                if sidecar and job.output and job.output != "-":
                    write_sidecar(job, params, time.perf_counter() - t0)
                log.info(f"{job.source} -> {job.output} ({time.perf_counter() - t0:.1f} s)")
            except KeyboardInterrupt:
                raise
            except MedcliError as e:
                if single:
                    raise
                if state.debug:
                    import traceback

                    traceback.print_exc()
                log.error(str(e))
                failures.append((job, e))
            except Exception as e:  # a bug, or a library failure we did not foresee
                if single or state.debug:
                    raise
                log.error(f"{job.source}: internal error: {type(e).__name__}: {e} (rerun with --debug)")
                failures.append((job, e))
            advance()
    if failures:
        names = ", ".join(j.source for j, _ in failures)
        log.error(f"{len(failures)} of {len(todo)} inputs failed ({names}); the other {len(todo) - len(failures)} were written")
        return EXIT_PARTIAL
    return EXIT_OK


def _refuse_planar(image, source: str) -> None:
    """A radiograph, screenshot or ultrasound frame (2D DICOM, no patient position): say so."""
    dicom = image.meta.get("dicom") or {}
    if dicom.get("geometry"):
        what = "colour " if image.meta.get("color") else ""
        kind = dicom.get("sop_class") or dicom.get("modality") or "DICOM"
        raise InputError(
            f"this command needs a 3D image; this is a 2D {what}image ({kind}, shape {image.shape}) without patient position",
            source,
        )


def write_sidecar(job: Job, params: dict[str, Any], seconds: float) -> None:
    """A BIDS-style provenance JSON beside the output (``OUT.json``).

    Learned commands put ``{"Model": {"Name": ..., "SHA256": ...}}`` and
    ``{"Seed": ...}`` in ``job.provenance``; it is merged in last.
    """
    doc = {
        "GeneratedBy": [{"Name": "medcli", "Version": __version__, "CodeURL": "https://pypi.org/project/medcli/"}],
        "Command": state.command,
        "CommandLine": shlex_join(["medcli"] + (state.argv or sys.argv[1:])),
        "Sources": [{"Path": job.source, "SHA256": sha256_of(job.source)}],
        "Parameters": {k: _jsonable(v) for k, v in params.items()},
        "Seed": params.get("seed"),
        "DurationSeconds": round(seconds, 3),
        **job.provenance,
    }
    job.write_text(json.dumps(doc, indent=2) + "\n", sidecar_path(job.output or ""))


def shlex_join(argv: Sequence[str]) -> str:
    import shlex

    return shlex.join(str(a) for a in argv)


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return str(v)


__all__ = ["command", "CommandSpec", "Job", "Step", "expand", "plan", "run_batch", "Optional", "InputError", "ProcessingError", "EXIT_INTERNAL"]
