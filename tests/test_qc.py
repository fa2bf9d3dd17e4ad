"""medcli.qc: the parts every QC picture shares (orientation, window, outlines, panel sizes)."""

from __future__ import annotations

import numpy as np
from PIL import Image as PILImage

from medcli import qc
from medcli.image import Image


def test_ras_volume_reorients_and_takes_the_first_volume():
    data = np.zeros((4, 5, 6, 2), np.int16)
    data[0, 0, 0, 0] = 7  # voxel (0, 0, 0) of an LPS-stored image is the most right, anterior corner
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    vol = qc.ras_volume(Image(data, lps))
    assert vol.shape == (4, 5, 6) and vol.data.dtype == np.float32
    assert vol.data[3, 4, 0] == 7


def test_display_puts_superior_up_and_the_first_axis_across():
    p = np.zeros((3, 5))
    p[2, 4] = 1  # last along the first axis (R), last along the second (superior)
    shown = qc.display(p)
    assert shown.shape == (5, 3)
    assert shown[0, 2] == 1  # top row, right column


def test_window_ignores_the_background_and_is_never_empty():
    v = np.concatenate([np.zeros(10000), np.linspace(100, 200, 1001)])
    lo, hi = qc.window(v)
    assert 100 <= lo < 102 and 198 < hi <= 200
    assert qc.window(np.full(10, 5.0)) == (5.0, 5.0 + 1e-6)
    assert qc.window(np.array([np.nan])) == (0.0, 1.0)
    assert qc.window(v, ct=True) == qc.CT_WINDOW


def test_outline_is_the_border_of_each_label():
    lab = np.zeros((7, 7), np.uint8)
    lab[1:6, 1:6] = 2
    edge = qc.outline(lab)
    assert edge.sum() == 16 and not edge[3, 3] and edge[1, 3]


def test_panel_width_keeps_millimetres_true():
    # 100 x 50 voxels at 1 x 2 mm: a square 100 x 100 mm plane
    assert qc.panel_width((100, 50, 10), (1.0, 2.0, 3.0), 2, 256) == 256
    assert qc.panel_width((100, 50, 10), (1.0, 2.0, 3.0), 1, 100) == 333  # 100 mm wide, 30 mm high


def test_strip_lays_panels_side_by_side_with_room_on_the_right():
    a = PILImage.new("RGB", (30, 40), (255, 0, 0))
    b = PILImage.new("RGB", (50, 40), (0, 255, 0))
    canvas, x = qc.strip([("axial", a), ("sagittal", b)], pad=5, header=10, extra_width=60)
    assert canvas.size == (30 + 50 + 3 * 5 + 60, 40 + 2 * 5 + 10)
    assert x == 5 + 30 + 5 + 50 + 5
    px = np.asarray(canvas)
    assert tuple(px[5 + 10 + 20, 5 + 10]) == (255, 0, 0) and tuple(px[5 + 10 + 20, 40 + 20]) == (0, 255, 0)
    assert qc.png(canvas)[:8] == b"\x89PNG\r\n\x1a\n"
