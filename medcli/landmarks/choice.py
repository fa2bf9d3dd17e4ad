"""Which landmark method fits an image (``--method auto``), decided by measurement (``results/landmarks.md``).

On held-out synthetic heads with their skull, the learned method (affine start + the local matching network)
measured 0.91 and 1.01 mm mean radial error (model 1.0.0; 0.76 and 0.85 with 1.1.0) against the atlas method's 1.24
and 2.58 mm; on skull-stripped
heads the atlas method measured 0.37-0.57 mm against the learned method's 0.59-1.14 mm. On 1 mm grids (second
run): skull-stripped, atlas 0.34-0.56 vs learned 0.59-1.10 mm; skull on, atlas 0.63 vs learned 0.95 mm on the T1 head
but refused on the T2 head with 3 mm slices (learned 1.09): too few heads to split the choice by resolution. Session 8
(atlas on the template's landmark box): skull-stripped, atlas 0.29-0.50 vs learned 0.50-1.05 mm at 2 mm, 0.25-0.50 vs
0.49-1.00 at 1 mm; skull on, atlas 1.24/1.93 vs learned 0.76/0.85 at 2 mm, 0.60/1.45 vs 0.72/0.91 at 1 mm: unchanged
choice. Kept free of heavy imports: ``medcli landmarks --help`` reads it.
"""

from __future__ import annotations

#: Template grid (mm) each method registers on when ``--spacing`` is not given (learned's affine stops at 2 mm anyway).
TEMPLATE_MM = {"atlas": 1.0, "learned": 2.0}


def auto_method(skull_on: bool, user_mask: bool = False) -> str:
    """``learned`` for a head with its skull, ``atlas`` for a brain (skull-stripped, or given by ``--mask``).

    Example:
        >>> auto_method(skull_on=True), auto_method(skull_on=False), auto_method(True, user_mask=True)
        ('learned', 'atlas', 'atlas')
    """
    return "learned" if skull_on and not user_mask else "atlas"
