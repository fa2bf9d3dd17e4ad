"""The bundled tissue model segments real and remapped renderings of the MNI template."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def model():
    from medcli.engine.architectures import build
    from medcli.models import hub

    spec, state = hub.load("tissue")
    net = build(spec)
    net.load_state_dict(state)
    return spec, net.eval()


@pytest.fixture(scope="module")
def template():
    from medcli import io
    from medcli.train.synth import tissue_maps

    t1 = io.read("sample:t1").reorient("RAS").data.astype(np.float32)
    return t1, tissue_maps().labels


def _dice_every_4th_slice(net, image, labels):
    from medcli.train.synth import normalise_percentile
    from medcli.train.validate import dice, predict_volume

    x = normalise_percentile(image)[..., 30:170:4]
    ref = labels[..., 30:170:4]
    pred = predict_volume(net, x, dim=2, axes=[2]).argmax(0)
    return dice(pred, ref, [2, 3])


def test_spec_matches_the_engine_contract(model):
    spec, net = model
    assert spec["labels"] == {0: "background", 1: "CSF", 2: "GM", 3: "WM"} or spec["labels"] == {
        "0": "background", "1": "CSF", "2": "GM", "3": "WM"}
    assert spec["input"]["orientation"] == "RAS" and spec["input"]["spacing"] == [1.0, 1.0, 1.0]
    assert sum(p.numel() for p in net.parameters()) * 4 < 5e6  # a few MB at most


def test_real_t1(model, template):
    gm, wm = _dice_every_4th_slice(model[1], *template)
    assert gm > 0.83 and wm > 0.80


def test_t2_like_contrast(model, template):
    from medcli.train.synth import _remap

    t1, labels = template
    gm, wm = _dice_every_4th_slice(model[1], _remap(t1, labels, [1.0, 0.55, 0.35]), labels)
    assert gm > 0.80 and wm > 0.80
