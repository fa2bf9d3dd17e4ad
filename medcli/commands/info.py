"""``medcli info``: what an image is, without reading more than needed."""

from __future__ import annotations

import json
import sys
from typing import Annotated, List

import typer

from medcli.cli.command import command


def image_info(source: str, series: str | None = None, stats: bool = True) -> dict:
    """Header facts of one image (and its value range when ``stats``).

    Example:
        >>> image_info("sample:t1")["shape"]  # doctest: +SKIP
        [197, 233, 189]
    """
    from medcli import io

    img = io.read(source, series=series)
    info = {
        "file": source,
        "format": img.meta.get("format", ""),
        "shape": list(img.shape),
        "voxel_size_mm": [round(v, 6) for v in img.spacing],
        "orientation": img.orientation,
        "dtype": str(img.dtype),
        "memory_bytes": img.nbytes,
        "affine": [[round(float(v), 6) for v in row] for row in img.affine],
        "description": img.meta.get("description", ""),
    }
    if img.meta.get("values"):
        info["values"] = img.meta["values"]
    if "dicom" in img.meta:
        info["dicom"] = img.meta["dicom"]
    if img.meta.get("color"):
        info["color"] = img.meta["color"]
    if stats:
        import numpy as np

        data = img.data
        finite = np.isfinite(data) if np.issubdtype(data.dtype, np.floating) else None
        vals = data[finite] if finite is not None else data
        info["min"] = float(vals.min()) if vals.size else None
        info["max"] = float(vals.max()) if vals.size else None
        info["mean"] = float(vals.mean()) if vals.size else None
        if finite is not None:
            info["nonfinite_voxels"] = int((~finite).sum())
        info["contrast"] = _recognise(img)
    return info


def _recognise(img) -> dict | None:
    """Modality, contrast and region by the bundled contrast model (None, with a warning, if it cannot tell)."""
    from medcli.runtime import log

    try:
        from medcli.segment.contrast import recognise

        r = recognise(img)
    except Exception as e:  # noqa: BLE001 - the header facts stand without it
        log.warning(f"{img.meta.get('source', 'image')}: contrast not recognised ({e})")
        return None
    return {k: r[k] for k in ("modality", "contrast", "label", "confidence", "region", "region_confidence", "skull", "probabilities")}


def _dicom_series_list(source: str) -> dict | None:
    """For a DICOM folder holding several series: their summaries (no voxels read)."""
    from pathlib import Path

    path = Path(source)
    if not path.is_dir():
        return None
    from medcli.io.dicom import list_series

    found = list_series(path)
    if len(found) < 2:
        return None
    return {"file": source, "series": found}


def format_series(info: dict) -> str:
    lines = [f"{info['file']}: {len(info['series'])} DICOM series (pick one with --series NUMBER|UID)"]
    for s in info["series"]:
        lines.append(
            f"  {s['series_number'] if s['series_number'] is not None else '-':>4}  {s['modality'] or '':<3} "
            f"{s['slices']:>5} slices  {s['series_description'] or '':<30} {s['series_uid']}"
        )
    return "\n".join(lines)


def format_objects(info: dict) -> str:
    """DICOM objects without an image (SR, RT plan, waveform...): what they are."""
    lines = [f"{info['file']}: DICOM, no image: {len(info['objects'])} object(s)"]
    for o in info["objects"]:
        what = f"{o['sop_class']}" + (f", modality {o['modality']}" if o["modality"] else "")
        desc = f" '{o['description']}'" if o["description"] else ""
        lines.append(f"  {what}{desc}  ({o['sop_class_uid'] or 'no SOP class'})  {o['file']}")
    return "\n".join(lines)


def format_text(info: dict) -> str:
    from medcli.io import human_bytes

    lines = [f"{info['file']}:"]
    lines.append(f"  format       {info['format']}")
    lines.append(f"  shape        {' x '.join(map(str, info['shape']))}")
    lines.append(f"  voxel size   {' x '.join(f'{v:g}' for v in info['voxel_size_mm'])} mm")
    lines.append(f"  orientation  {info['orientation']}")
    lines.append(f"  dtype        {info['dtype']}")
    if info.get("values"):
        lines.append(f"  values       {info['values']}")
    lines.append(f"  memory       {human_bytes(info['memory_bytes'])}")
    if "min" in info:
        lines.append(f"  range        {info['min']:g} .. {info['max']:g} (mean {info['mean']:.4g})")
    if info.get("nonfinite_voxels"):
        lines.append(f"  NaN/Inf      {info['nonfinite_voxels']} voxels")
    if info.get("contrast"):
        c = info["contrast"]
        lines.append(f"  contrast     {c['label']} ({c['confidence']:.2f}), {c['region']} ({c['region_confidence']:.2f}) [likely]")
    if info.get("description"):
        lines.append(f"  description  {info['description']}")
    if info.get("color"):
        lines.append(f"  colour       {info['color']} (components on the last axis)")
    for i, row in enumerate(info["affine"]):
        lines.append(("  affine       " if i == 0 else "               ") + " ".join(f"{v:11.5f}" for v in row))
    dicom = info.get("dicom")
    if dicom:
        for key, val in dicom.items():
            lines.append(f"  dicom {key:<20} {val}")
    return "\n".join(lines)


@command(
    "info",
    summary="Show the header, geometry and value range of images.",
    description="Prints, for each image: format, shape, voxel size, orientation code, dtype, how stored values are "
    "scaled (NIfTI scl_slope/scl_inter, PAR/REC display values, MINC/AFNI/ECAT scale factors; always applied), "
    "memory size, value range, affine (voxel to RAS+ mm), for DICOM a series summary, and (unless --header-only) the likely "
    "modality and contrast (CT; MR T1-, T2-, PD-, FLAIR-like) and region (head with or without skull, other body part) "
    "with their probabilities, by the bundled 'contrast' model (a small CNN trained on synthetic renderings).",
    examples=[
        ("Inspect the bundled T1", "medcli info sample:t1"),
        ("Machine-readable output", "medcli info scan.nii.gz --json | jq .voxel_size_mm"),
        ("List the series of a DICOM folder", "medcli info dicom_dir/"),
    ],
    batch=False,
)
def cli(
    files: Annotated[List[str], typer.Argument(help="Images, DICOM folders, '-' or sample:NAME.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (one object, or a list for several files).")] = False,
    header_only: Annotated[bool, typer.Option("--header-only", help="Skip the value range (reads no voxels).")] = False,
    series: Annotated[str, typer.Option("--series", help="DICOM series to describe.")] = None,  # type: ignore[assignment]
) -> int:
    from medcli.runtime import log
    from medcli.errors import EXIT_PARTIAL, MedcliError
    from medcli.io.dicom import NotAnImage

    infos, failed = [], 0
    for f in files:
        try:
            several = _dicom_series_list(f) if series is None else None
            if several:
                infos.append(several)
                continue
            infos.append(image_info(f, series=series, stats=not header_only))
        except NotAnImage as e:  # an SR, RT plan, waveform...: say what it is
            infos.append({"file": f, "format": "DICOM", "image": False, "objects": e.objects})
        except MedcliError as e:
            if len(files) == 1:
                raise
            log.error(str(e))
            failed += 1
    if as_json:
        doc = infos[0] if len(files) == 1 else infos
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write(
            "\n".join(
                format_series(i) if "series" in i else format_objects(i) if "objects" in i else format_text(i) for i in infos
            )
            + "\n"
        )
    return EXIT_PARTIAL if failed else 0
