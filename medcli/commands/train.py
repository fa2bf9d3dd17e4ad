"""``medcli train``: train or fine-tune a model from a recipe (TOML)."""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from medcli.cli.command import command


@command(
    "train",
    summary="Train or fine-tune a model from a recipe.",
    description="Reads a TOML recipe ([model], [data], [loss], [train], [validation], [output]); KEY=VALUE "
    "arguments override its values (train.steps=200). The output folder gets model.safetensors + spec.json "
    "(usable at once with --model DIR or 'medcli models import DIR'), a card.md draft, log.csv (every step) "
    "and validation.csv. A checkpoint is saved every train.checkpoint_every steps and on SIGTERM or Ctrl-C "
    "(exit 130); --resume continues from it, also after kill -9, to the same result as an uninterrupted run. "
    "Progress (loss, validation score, ETA) is shown on stderr when it is a terminal.",
    examples=[
        ("Reproduce the bundled tissue model", "medcli train recipes/tissue.toml"),
        ("A short run elsewhere", "medcli train recipes/tissue.toml train.steps=200 output.dir=runs/try"),
        ("Continue after a kill or a job time limit", "medcli train recipes/tissue.toml --resume"),
        ("Fine-tune on your own labelled images", "medcli train recipes/tissue.toml data.source=pairs data.pairs=pairs.csv model.init=tissue"),
    ],
    references=[
        "Billot B. et al. SynthSeg: segmentation of brain MRI scans of any contrast and resolution without retraining. Med Image Anal 2023;86:102789.",
        "Isensee F. et al. nnU-Net: a self-configuring method for deep learning-based biomedical image segmentation. Nat Methods 2021;18:203-211.",
    ],
    batch=False,
)
def cli(
    recipe: Annotated[str, typer.Argument(help="Recipe TOML file.", show_default=False)],
    overrides: Annotated[
        Optional[List[str]], typer.Argument(help="SECTION.KEY=VALUE overrides, e.g. train.steps=200.", show_default=False)
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the output folder's checkpoint.")] = False,
    force: Annotated[bool, typer.Option("-f", "--force", help="Start over, discarding an existing checkpoint.")] = False,
) -> int:
    from medcli.runtime import log
    from medcli.train.engine import load_recipe, train

    rec = load_recipe(recipe, overrides or [])
    out = train(rec, resume=resume, force=force)
    log.info(f"model written to {out}")
    # stdout is data: the folder to pass to --model or 'medcli models import'.
    typer.echo(str(out))
    return 0
