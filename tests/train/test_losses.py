"""Each loss on a small problem where it must change the outcome."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from medcli.train.losses import make_loss  # noqa: E402
from medcli.train.toy import blobs  # noqa: E402


@pytest.fixture(scope="module")
def imbalanced():
    """8 noisy images: a large bright disc and a small dim one (the minority class 2, ~3 % of pixels)."""
    data = [blobs(np.random.default_rng(i), size=32, noise=0.35) for i in range(8)]
    x = torch.from_numpy(np.stack([a for a, _ in data]))
    y = torch.from_numpy(np.stack([b for _, b in data]))
    return x, y


def _fit_conv(x, y, cfg, steps=100):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 1))
    opt = torch.optim.Adam(net.parameters(), 0.03)
    loss = make_loss(cfg)
    for _ in range(steps):
        value = loss(net(x), y)
        opt.zero_grad()
        value.backward()
        opt.step()
    with torch.no_grad():
        return int((net(x).argmax(1) == 2).sum())


def test_class_weights_and_focal_grow_the_minority_class(imbalanced):
    x, y = imbalanced
    truth = int((y == 2).sum())
    ce = _fit_conv(x, y, {"name": "ce"})
    weighted = _fit_conv(x, y, {"name": "ce", "class_weights": [1, 1, 10]})
    focal = _fit_conv(x, y, {"name": "focal", "focal_gamma": 2})
    dice_ce = _fit_conv(x, y, {"name": "dice_ce"})
    # Plain CE all but ignores the minority; every remedy predicts far more of it.
    assert ce < 0.3 * truth
    assert weighted > 2 * ce + 50
    assert focal > ce + 10
    assert dice_ce > 0.5 * truth


def _fit_linear(x, y, cfg, steps=200):
    w = torch.zeros(2, requires_grad=True)
    opt = torch.optim.Adam([w], 0.05)
    loss = make_loss(cfg)
    for _ in range(steps):
        value = loss(torch.stack([torch.zeros_like(x), w[0] * x + w[1]], 1), y)
        opt.zero_grad()
        value.backward()
        opt.step()
    return w.detach()


def test_gce_resists_label_noise_better_than_ce():
    g = torch.Generator().manual_seed(0)
    n = 400
    x = torch.cat([torch.randn(n, generator=g) * 0.5 - 1, torch.randn(n, generator=g) * 0.5 + 1])
    y = torch.cat([torch.zeros(n), torch.ones(n)]).long()
    # 10 % wrong labels far from the boundary (annotation errors).
    outliers = -4.0 + 0.2 * torch.randn(80, generator=g)
    xn, yn = torch.cat([x, outliers]), torch.cat([y, torch.ones(80).long()])
    acc = {}
    for name in ("ce", "gce"):
        w = _fit_linear(xn, yn, {"name": name})
        acc[name] = float(((w[0] * x + w[1] > 0).long() == y).float().mean())
    assert acc["gce"] > 0.95
    assert acc["gce"] > acc["ce"] + 0.05


def test_tv_prior_removes_label_noise():
    g = torch.Generator().manual_seed(0)
    clean = torch.from_numpy(blobs(np.random.default_rng(3), size=48, noise=0)[1])
    noisy = clean.clone()
    flip = torch.rand(clean.shape, generator=g) < 0.15
    noisy[flip] = torch.randint(0, 3, clean.shape, generator=g)[flip]
    errors = {}
    for tv in (0.0, 2.0):
        z = torch.zeros(1, 3, 48, 48, requires_grad=True)
        opt = torch.optim.Adam([z], 0.1)
        loss = make_loss({"name": "ce", "tv_weight": tv})
        for _ in range(150):
            value = loss(z, noisy[None])
            opt.zero_grad()
            value.backward()
            opt.step()
        errors[tv] = float((z.argmax(1)[0] != clean).float().mean())
    assert errors[0.0] > 0.05  # fits the noise
    assert errors[2.0] < 0.3 * errors[0.0]


def test_volume_prior_sets_the_fraction_of_unlabelled_voxels():
    target = torch.full((1, 16, 16), -1, dtype=torch.long)  # nothing labelled ...
    target[0, 0, :4] = 0  # ... but four voxels
    z = torch.zeros(1, 2, 16, 16, requires_grad=True)
    opt = torch.optim.Adam([z], 0.1)
    loss = make_loss({"name": "ce", "ignore_index": -1, "volume_prior": {"class": 1, "fraction": 0.3, "weight": 10}})
    for _ in range(200):
        value = loss(z, target)
        opt.zero_grad()
        value.backward()
        opt.step()
    assert abs(float(z.detach().softmax(1)[:, 1].mean()) - 0.3) < 0.03


def test_ignore_index_ignores_and_label_smoothing_softens():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8)
    t1 = torch.randint(0, 3, (2, 8, 8))
    t1[:, :4] = -1
    t2 = t1.clone()
    t2[:, :4] = -1
    for name in ("ce", "dice", "dice_ce", "focal", "gce"):
        loss = make_loss({"name": name, "ignore_index": -1})
        a = loss(logits, t1)
        t3 = t1.clone()
        t3[t3 == -1] = -1
        assert torch.isfinite(a), name
    # Changing ignored labels changes nothing; changing counted ones does.
    loss = make_loss({"name": "dice_ce", "ignore_index": 9})
    t = torch.randint(0, 3, (2, 8, 8))
    u = t.clone()
    t[:, :2], u[:, :2] = 9, 9
    assert torch.equal(loss(logits, t), loss(logits, u))
    u[:, 5] = (u[:, 5] + 1) % 3
    assert not torch.equal(loss(logits, t), loss(logits, u))
    # Label smoothing keeps the fitted probabilities away from 1.
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    peaks = {}
    for s in (0.0, 0.2):
        z = torch.zeros(1, 3, 4, 4, requires_grad=True)
        opt = torch.optim.Adam([z], 0.2)
        for _ in range(200):
            value = make_loss({"name": "ce", "label_smoothing": s})(z, target)
            opt.zero_grad()
            value.backward()
            opt.step()
        peaks[s] = float(z.detach().softmax(1)[:, 0].mean())
    assert peaks[0.0] > 0.99 and abs(peaks[0.2] - (0.8 + 0.2 / 3)) < 0.02


def test_regression_losses():
    torch.manual_seed(0)
    a = torch.rand(2, 1, 16, 16)
    for name in ("l1", "l2", "ssim"):
        loss = make_loss({"name": name})
        assert float(loss(a, a)) < 1e-6, name
        assert float(loss(a + 0.1 * torch.randn_like(a), a)) > 1e-3, name
    # SSIM punishes lost structure more than a global shift of the same L1 size.
    ssim = make_loss({"name": "ssim"})
    blurred = torch.nn.functional.avg_pool2d(a, 3, 1, 1)
    shifted = a + (blurred - a).abs().mean()
    assert float(ssim(blurred, a)) > float(ssim(shifted, a))


def test_unknown_loss_or_setting():
    with pytest.raises(ValueError):
        make_loss({"name": "hinge"})
    with pytest.raises(ValueError):
        make_loss({"name": "ce", "gamma": 2})
