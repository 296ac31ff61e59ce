"""The dry run on the meta device gives what the real dry run gives: the calls per pass and every output shape."""

import numpy as np
import pytest
import torch
from torch import nn

import visreps
import visreps.capture as capture
from visreps.capture import make_capture, meta_dry_run, parse_layers, plan_layers


def _plans(lm, layers, **kw):
    """plan_layers with the meta dry run, then with the real one (META_MIN_PARAMETERS out of reach)."""
    meta = plan_layers(lm, layers, **kw)
    limit = capture.META_MIN_PARAMETERS
    capture.META_MIN_PARAMETERS = 10**15
    try:
        real = plan_layers(lm, layers, **kw)
    finally:
        capture.META_MIN_PARAMETERS = limit
    return [(s.module, s.keys, s.calls, s.shapes) for s in meta], [(s.module, s.keys, s.calls, s.shapes) for s in real]


def _ran_on_meta(lm, layers, pool="flatten"):
    cap = make_capture(lm, parse_layers(lm.layer_names(), layers, pool), stop_early=False, dry_run=True)
    with cap, torch.inference_mode():
        return meta_dry_run(cap, lm.dummy_input())


@pytest.mark.parametrize(
    "model_id, layers, pool, recurrent",
    [
        ("torchvision:resnet18", ["conv1", "layer2.0.relu", "layer4", "avgpool", "fc"], "flatten", "all"),
        ("timm:vit_small_patch16_224", ["patch_embed", "blocks.3", "blocks.11.attn", "head"], "cls", None),
        ("cornet:s", ["V1", "V2.output", "IT", "decoder.avgpool"], "avg", "all"),
    ],
)
def test_meta_plan_equals_real_plan(model_id, layers, pool, recurrent):
    lm = visreps.load_model(model_id, pretrained=False, seed=0)
    before = {k: v.clone() for k, v in lm.module.state_dict().items()}
    assert _ran_on_meta(lm, layers, pool)  # these models run on meta: the fast path is taken
    meta, real = _plans(lm, layers, pool=pool, recurrent=recurrent)
    assert meta == real
    assert all(shape for _, _, _, shapes in meta for shape in shapes.values())
    after = lm.module.state_dict()  # the model keeps its own tensors, unchanged, on its device
    assert all(after[k].device.type == "cpu" and torch.equal(after[k], v) for k, v in before.items())


class _ValueBranch(nn.Module):
    """10 M parameters and a branch on a tensor's value, which the meta device cannot take."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3300), nn.ReLU())
        self.head = nn.Linear(3300, 5)
        self.extra = nn.Linear(3300, 3300)

    def forward(self, x):
        h = self.body(x)
        if float(h.sum()) >= 0:  # always true after a ReLU, but only a real tensor can say so
            h = self.extra(h)
        return self.head(h)


def test_a_model_that_cannot_run_on_meta_gets_the_real_dry_run(tmp_path):
    from conftest import write_images
    from visreps.data import load_image
    from visreps.models import Preprocessing

    net = _ValueBranch().eval()
    assert sum(p.numel() for p in net.parameters()) >= capture.META_MIN_PARAMETERS
    lm = visreps.load_model(net, preprocessing=Preprocessing(resize=32, crop=32))
    assert not _ran_on_meta(lm, ["extra", "head"])
    meta, real = _plans(lm, ["extra", "head"])
    assert meta == real == [("extra", ("extra",), 1, {"extra": (3300,)}), ("head", ("head",), 1, {"head": (5,)})]
    root = tmp_path / "im"
    write_images(root, ["a.png", "b.png"], size=(32, 32), seed=0)
    res = visreps.extract(lm, root, layers=["head"], progress=False)
    x = torch.stack([lm.transform(load_image(root / n)) for n in ("a.png", "b.png")])
    with torch.no_grad():
        np.testing.assert_allclose(res["head"], net(x).numpy(), rtol=1e-5, atol=1e-6)
