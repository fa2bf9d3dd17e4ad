"""Fit the default Nyul standard shipped as medcli/data/harmonize_standard.json.

Fit on the bundled MNI152 T1 (sample:t1) and four variants of it with a
smooth 30 % bias field and 2 % Rician noise (seeds 0-3, medcli.enhance.degrade),
so that the standard describes a clean 1 mm T1 brain histogram and is not
tied to one noise realisation. Run from the repository root:

    python scripts/fit_harmonize_standard.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medcli import io
from medcli.enhance import degrade
from medcli.enhance.harmonize import DEFAULT_STANDARD, fit_nyul


def main() -> None:
    t1 = io.read("sample:t1")
    clean = np.asarray(t1.data, np.float32)
    brain = clean > 0
    images, masks, names = [t1], [brain], ["sample:t1"]
    for seed in range(4):
        g = np.random.default_rng(seed)
        x = clean * degrade.bias_field(clean.shape, 0.3, g, spacing=t1.spacing)
        x = degrade.add_rician(x, 2, rng=g)
        images.append(t1.with_data(x))
        masks.append(brain)
        names.append(f"sample:t1 x bias_field(0.3, seed={seed}) + 2% Rician noise (seed={seed})")
    std = fit_nyul(images, masks, sources=names)
    std["description"] = (
        "Default Nyul standard of medcli harmonize: MNI152 2009a T1 (1 mm, skull-stripped) and 4 bias/noise "
        "variants, brain mask = T1 > 0. Written by scripts/fit_harmonize_standard.py."
    )
    Path(DEFAULT_STANDARD).write_text(json.dumps(std, indent=2) + "\n")
    print(json.dumps(std["landmarks"]))


if __name__ == "__main__":
    main()
