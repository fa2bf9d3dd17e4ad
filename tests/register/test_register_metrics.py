"""The fast paths of the diffeomorphic stage against their plain definitions.

The closed-form local-NCC gradient must equal autograd's through the plain
formula, banded-matrix smoothing must equal a 1D convolution per axis with
replicated edges, and box sums must equal sums over the windows.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medcli.register import grid as G  # noqa: E402
from medcli.register.metrics import LocalNCC, box_sum, local_ncc  # noqa: E402


def _volumes(seed=0, shape=(17, 21, 19)):
    g = torch.Generator().manual_seed(seed)
    f = G.smooth(torch.rand((1, 1) + shape, generator=g), 1.0)
    m = G.smooth(torch.rand((1, 1) + shape, generator=g), 1.0)
    w = (torch.rand((1, 1) + shape, generator=g) > 0.3).float()
    return f, m, w


@pytest.mark.parametrize("radius", [2, 4])
def test_ncc_closed_form_gradient_equals_autograd(radius):
    f, m, w = _volumes()
    mm = m.clone().requires_grad_(True)
    value = local_ncc(f, mm, w, radius)
    (g_auto,) = torch.autograd.grad(value, mm)
    loss, g = LocalNCC(f, w, radius)(m)
    assert float(loss) == pytest.approx(float(value.detach()), rel=1e-5)
    assert float((g - g_auto).abs().max()) < 1e-4 * float(g_auto.abs().max())


def test_box_sum_is_the_window_sum():
    x = torch.rand(1, 2, 9, 8, 7, dtype=torch.float32)
    got = box_sum(x, 2)[0].numpy()
    a = np.pad(x[0].numpy(), ((0, 0), (2, 2), (2, 2), (2, 2)))
    i, j, k = 4, 0, 6  # an inner and two edge positions
    want = a[:, i : i + 5, j : j + 5, k : k + 5].sum((1, 2, 3))
    assert np.allclose(got[:, i, j, k], want, rtol=1e-5)


def test_matrix_smoothing_equals_convolution_with_replicated_edges():
    from scipy import ndimage

    x = torch.rand(1, 3, 12, 15, 11, dtype=torch.float32)
    got = G.smooth(x, 1.3)[0].numpy()
    k = G.gaussian_kernel(1.3, "cpu").numpy().astype(np.float64)
    want = x[0].numpy().astype(np.float64)
    for axis in (1, 2, 3):
        want = ndimage.convolve1d(want, k, axis=axis, mode="nearest")
    assert np.abs(got - want).max() < 1e-5
