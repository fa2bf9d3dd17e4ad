"""Options shared by every command, declared once.

:func:`medcli.cli.command.command` appends :data:`COMMON` to every command and
:data:`BATCH` to every command that maps input images to output files, so a
flag means the same thing everywhere and its help is written once.
"""

from __future__ import annotations

from typing import Annotated, Any, List, Optional

import typer

Inputs = Annotated[
    List[str],
    typer.Argument(
        help="Input images: files, DICOM folders, '-' for stdin, or sample:NAME (e.g. sample:t1).",
        show_default=False,
    ),
]

OptionalInputs = Annotated[
    Optional[List[str]],
    typer.Argument(
        help="Input images: files, DICOM folders, '-' for stdin, or sample:NAME. May be omitted with --list.",
        show_default=False,
    ),
]

#: (name, annotation, default) triples appended to every command.
COMMON: list[tuple[str, Any, Any]] = [
    ("quiet", Annotated[bool, typer.Option("-q", "--quiet", help="Print nothing but errors.")], False),
    ("verbose", Annotated[int, typer.Option("-v", "--verbose", count=True, help="More messages on stderr (-vv: debug).")], 0),
    ("debug", Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error.")], False),
    (
        "threads",
        Annotated[
            Optional[int],
            typer.Option(
                "--threads",
                min=1,
                help="CPU threads for torch, ITK and BLAS [default: SLURM_CPUS_PER_TASK, else OMP_NUM_THREADS, else all cores].",
                show_default=False,
            ),
        ],
        None,
    ),
    (
        "device",
        Annotated[str, typer.Option("--device", help="Compute device: auto, cpu, cuda, cuda:N or mps.")],
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
                help="Output file, '-' for stdout, or a template for several inputs: {stem}, {name}, {dir}, {index} "
                "(e.g. out/{stem}_mask.nii.gz).",
                show_default=False,
            ),
        ],
        None,
    ),
    ("force", Annotated[bool, typer.Option("-f", "--force", help="Overwrite existing outputs.")], False),
    (
        "list_file",
        Annotated[
            Optional[str],
            typer.Option(
                "--list",
                help="Text file with one input per line and an optional output path after a tab or comma.",
                show_default=False,
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
                help="Process only chunk N (0-based) of the inputs [default: SLURM_ARRAY_TASK_ID, PBS_ARRAY_INDEX, "
                "SGE_TASK_ID or LSB_JOBINDEX when set].",
                show_default=False,
            ),
        ],
        None,
    ),
    ("chunk", Annotated[int, typer.Option("--chunk", min=1, help="Inputs per array task.")], 1),
    ("skip_existing", Annotated[bool, typer.Option("--skip-existing", help="Skip inputs whose output exists (resume a batch).")], False),
    ("sidecar", Annotated[bool, typer.Option("--sidecar", help="Also write OUT.json with provenance (BIDS-style).")], False),
    (
        "series",
        Annotated[
            Optional[str],
            typer.Option("--series", help="DICOM series to read (SeriesInstanceUID or SeriesNumber).", show_default=False),
        ],
        None,
    ),
]
