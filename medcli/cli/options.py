"""Options shared by every command, declared once.

:func:`medcli.cli.command.command` appends :data:`COMMON` to every command and
:data:`BATCH` to every command that maps input images to output files, so a
flag means the same thing everywhere and its help is written once.
"""

from __future__ import annotations

from typing import Annotated, Any, List, Optional

import typer

#: Help panels, so that a command's own options come first and the shared ones
#: are grouped the same way in every command's help.
BATCH_PANEL = "Output and batch"
COMMON_PANEL = "Common"

#: Values of --device (cuda:N is accepted too); shell completions offer these.
DEVICES = ("auto", "cpu", "cuda", "mps")

Inputs = Annotated[
    List[str],
    typer.Argument(
        help="Input images: files, DICOM folders, '-' for stdin, or sample:NAME (e.g. sample:t1).",
        metavar="INPUT",
        show_default=False,
    ),
]

OptionalInputs = Annotated[
    Optional[List[str]],
    typer.Argument(
        help="Input images: files, DICOM folders, '-' for stdin, or sample:NAME. May be omitted with --list.",
        metavar="INPUT",
        show_default=False,
    ),
]

def _flag(*decls: str, help: str, panel: str = COMMON_PANEL) -> Any:
    # metavar="" keeps help from showing a type ('<bool>') for a switch.
    return typer.Option(*decls, help=help, metavar="", rich_help_panel=panel)


#: (name, annotation, default) triples appended to every command.
COMMON: list[tuple[str, Any, Any]] = [
    ("quiet", Annotated[bool, _flag("-q", "--quiet", help="Print nothing but errors.")], False),
    (
        "verbose",
        Annotated[
            int,
            typer.Option(
                "-v",
                "--verbose",
                count=True,
                metavar="",
                show_default=False,
                help="More messages on stderr (-vv: debug).",
                rich_help_panel=COMMON_PANEL,
            ),
        ],
        0,
    ),
    ("debug", Annotated[bool, _flag("--debug", help="Show the full traceback of an error.")], False),
    (
        "threads",
        Annotated[
            Optional[int],
            typer.Option(
                "--threads",
                min=1,
                metavar="N",
                help="CPU threads for torch, ITK and BLAS.",
                show_default="SLURM_CPUS_PER_TASK, else OMP_NUM_THREADS, else all cores",
                rich_help_panel=COMMON_PANEL,
            ),
        ],
        None,
    ),
    (
        "device",
        Annotated[
            str,
            typer.Option(
                "--device",
                metavar="|".join(DEVICES[:3]) + "[:N]|mps",
                help="Compute device; auto picks CUDA, then MPS, then CPU.",
                rich_help_panel=COMMON_PANEL,
            ),
        ],
        "auto",
    ),
]

#: Options of commands that turn each input into output files.
BATCH: list[tuple[str, Any, Any]] = [
    (
        "output",
        Annotated[
            Optional[str],
            typer.Option(
                "-o",
                "--output",
                metavar="FILE",
                help="Output file, '-' for stdout, or a template for several inputs: {stem}, {name}, {dir}, {index} "
                "(e.g. out/{stem}_mask.nii.gz); a folder keeps the input names.",
                show_default=False,
                rich_help_panel=BATCH_PANEL,
            ),
        ],
        None,
    ),
    ("force", Annotated[bool, _flag("-f", "--force", help="Overwrite existing outputs.", panel=BATCH_PANEL)], False),
    (
        "list_file",
        Annotated[
            Optional[str],
            typer.Option(
                "--list",
                metavar="FILE",
                help="Text file with one input per line and an optional output path after a tab or comma "
                "('-' reads the list from stdin).",
                show_default=False,
                rich_help_panel=BATCH_PANEL,
            ),
        ],
        None,
    ),
    (
        "array_index",
        Annotated[
            Optional[int],
            typer.Option(
                "--array-index",
                min=0,
                metavar="N",
                help="Process only chunk N of the inputs (0-based, K inputs per chunk; see --chunk). "
                "SLURM_ARRAY_TASK_ID and PBS_ARRAY_INDEX are taken as given (submit --array=0-M); "
                "SGE_TASK_ID and LSB_JOBINDEX, which start at 1, are reduced by 1.",
                show_default="the scheduler's array index, with --list",
                rich_help_panel=BATCH_PANEL,
            ),
        ],
        None,
    ),
    (
        "chunk",
        Annotated[
            int,
            typer.Option("--chunk", min=1, metavar="K", help="Inputs per array task.", rich_help_panel=BATCH_PANEL),
        ],
        1,
    ),
    (
        "skip_existing",
        Annotated[
            bool, _flag("--skip-existing", help="Skip inputs whose output exists (resume a batch).", panel=BATCH_PANEL)
        ],
        False,
    ),
    (
        "sidecar",
        Annotated[
            bool,
            _flag(
                "--sidecar",
                help="Also write OUT.json beside each output: command line, version, input and model sha256, "
                "parameters, duration (BIDS-style).",
                panel=BATCH_PANEL,
            ),
        ],
        False,
    ),
    (
        "series",
        Annotated[
            Optional[str],
            typer.Option(
                "--series",
                metavar="UID|N",
                help="DICOM series to read (SeriesInstanceUID or SeriesNumber).",
                show_default=False,
                rich_help_panel=BATCH_PANEL,
            ),
        ],
        None,
    ),
]
