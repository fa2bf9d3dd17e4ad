"""The ``medcli`` entry point: one table of commands, each imported only when run.

``medcli --help`` lists the table without importing any command module, so it
starts in the time it takes to import typer (no numpy, torch, SimpleITK or
scipy). A command's module is imported when it runs or when its own help is
asked for.
"""

from __future__ import annotations

import os
import sys

import typer
from typer.core import TyperGroup

from medcli import __version__
from medcli.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, MedcliError

try:  # typer >= 0.20 vendors click
    from typer import _click as click
except ImportError:  # pragma: no cover
    import click  # type: ignore[no-redef]

#: name -> (module, one-line summary). The one place commands are registered.
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("medcli.commands.info", "Show the header, geometry and value range of images."),
    "convert": ("medcli.commands.convert", "Convert images (DICOM, NIfTI, MGZ, NRRD, MetaImage in; all but DICOM out); change dtype or orientation."),
    "segment": ("medcli.commands.segment", "Segment brain, tissue classes or CT structures; write label maps, stats and QC."),
    "biascorrect": ("medcli.commands.biascorrect", "Correct MR intensity inhomogeneity (N4 or learned)."),
    "denoise": ("medcli.commands.denoise", "Remove noise (non-local means, MP-PCA or learned)."),
    "harmonize": ("medcli.commands.harmonize", "Normalise intensities across scanners (z-score, WhiteStripe, Nyul, learned)."),
    "superres": ("medcli.commands.superres", "Through-plane super-resolution of thick-slice MR."),
    "register": ("medcli.commands.register", "Register images (rigid, affine, diffeomorphic), apply transforms to images, labels and points."),
    "landmarks": ("medcli.commands.landmarks", "Anatomical landmarks (32 AFIDs) on a head image as Slicer markups; radial-error evaluation."),
    "recon": ("medcli.commands.recon", "Reconstruct images from raw data: MRI k-space (zero-filled, SENSE, CS, learned) or CT sinograms."),
    "models": ("medcli.commands.models", "List, download, import and verify model weights."),
    "train": ("medcli.commands.train", "Train or fine-tune a model from a recipe."),
    "detect": ("medcli.commands.detect", "Detect focal lesions; write findings (centre, box, diameter, score) in world mm; FROC/CPM eval."),
    "report": ("medcli.commands.report", "Write a self-contained report (HTML, Markdown, JSON) of a scan and what medcli found in it."),
}


#: Click commands built in this process (building one costs ~0.1 s of typer introspection).
_built: dict = {}


class LazyGroup(TyperGroup):
    """A group whose commands live in :data:`COMMANDS` and load on demand."""

    def list_commands(self, ctx):  # noqa: ARG002
        return [name for name, (module, _) in COMMANDS.items() if _available(module)]

    def get_command(self, ctx, cmd_name):  # noqa: ARG002
        if cmd_name not in COMMANDS or not _available(COMMANDS[cmd_name][0]):
            return None  # click: "No such command" (exit 2), as for a typo
        if cmd_name not in _built:
            import importlib

            module = importlib.import_module(COMMANDS[cmd_name][0])
            _built[cmd_name] = module.cli.click_command()
        return _built[cmd_name]

    def resolve_command(self, ctx, args):
        name = args[0] if args else None
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            import difflib

            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            ctx.fail(f"no such command '{name}'" + (f"; did you mean '{close[0]}'?" if close else " (see 'medcli --help')"))
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def format_epilog(self, ctx, formatter):  # noqa: ARG002
        from medcli.errors import EXIT_CODES

        with formatter.section("Exit codes"):
            formatter.write_dl([(str(k), v) for k, v in EXIT_CODES.items()])
        formatter.write_paragraph()
        formatter.write_text("Run 'medcli COMMAND --help' for a command's options and examples; 'man medcli' for more.")


def _available(module: str) -> bool:
    """A registered command whose module is not written yet is hidden, not broken."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"medcli {__version__}\n")
        raise typer.Exit()


app = typer.Typer(
    cls=LazyGroup,
    name="medcli",
    help="Composable command-line tools for deep-learning medical image processing.\n\n"
    "Every command reads standard image files (NIfTI, MGZ, NRRD, MetaImage, DICOM series) and writes NIfTI, MGZ, NRRD or MetaImage; '-' is stdin/stdout, "
    "so commands chain in pipes: medcli biascorrect sample:t1 -o - | medcli segment - -o mask.nii.gz",
    rich_markup_mode=None,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", callback=_version, is_eager=True),
) -> None:
    """Composable command-line tools for deep-learning medical image processing."""


def group():
    """The click group of the whole CLI (for docs generation and tests)."""
    return typer.main.get_command(app)


def main(argv: list[str] | None = None) -> None:
    """Run medcli and exit with a documented exit code (see medcli.errors)."""
    from medcli.runtime import install_signal_handlers, state

    install_signal_handlers()
    state.argv = list(sys.argv[1:] if argv is None else argv)
    # `medcli CMD --help`: print the help rendered by an earlier call when nothing it came from changed.
    from medcli.cli import helpcache

    help_words = helpcache.request(state.argv) if state.argv and state.argv[0] in COMMANDS else None
    recorder = None
    if help_words:
        text = helpcache.lookup(help_words)
        if text is not None:
            sys.stdout.write(text)
            sys.stdout.flush()
            sys.exit(0)
        recorder = sys.stdout = helpcache.Recorder(sys.stdout)
    code = 0
    try:
        rv = group().main(args=argv, prog_name="medcli", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
        if code == EXIT_INTERRUPTED:  # typer turns KeyboardInterrupt (and SIGTERM) into a silent Exit(130)
            _err("interrupted; no partial output was left")
    except typer.Exit as e:
        code = e.exit_code
    except typer.Abort:
        _err("aborted")
        code = EXIT_INTERRUPTED
    except click.exceptions.NoArgsIsHelpError as e:
        sys.stdout.write(e.ctx.get_help() + "\n")
        code = EXIT_USAGE
    except click.exceptions.ClickException as e:
        ctx = getattr(e, "ctx", None)
        hint = f" (see 'medcli {ctx.info_name} --help')" if ctx is not None and ctx.parent is not None else ""
        _err(f"{e.format_message()}{hint}")
        code = e.exit_code if e.exit_code else EXIT_USAGE
    except MedcliError as e:
        if state.debug:
            import traceback

            traceback.print_exc()
        _err(str(e))
        code = e.exit_code
    except KeyboardInterrupt:
        _err("interrupted; no partial output was left")
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        code = EXIT_INTERRUPTED
    except SystemExit as e:  # rich exits this way on a closed pipe
        code = e.code if isinstance(e.code, int) else EXIT_INTERNAL
    except Exception as e:  # noqa: BLE001 - the last line of defence
        if state.debug:
            import traceback

            traceback.print_exc()
        _err(f"internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)")
        code = EXIT_INTERNAL
    finally:
        if recorder is not None:
            sys.stdout = recorder.real
            if code == 0:
                try:
                    helpcache.store(help_words, recorder.getvalue())  # type: ignore[arg-type]
                except Exception:  # noqa: BLE001 - a cache must never break the help it caches
                    pass
        try:
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            # Keep Python from complaining at exit when the reader went away.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(code)


def _err(message: str) -> None:
    sys.stderr.write(f"medcli: error: {message}\n")
