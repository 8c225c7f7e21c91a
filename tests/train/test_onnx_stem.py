"""The caching's stem on ONNX Runtime gives torch's outputs, the detector's taps included, for
any batch size."""

from __future__ import annotations

import torch

from bloodcell.models.registry import create_model
from bloodcell.train.features import StemTaps, frozen_stem, stem_runner


def test_onnx_stem_gives_the_torch_outputs_and_taps_for_any_batch() -> None:
    torch.manual_seed(0)
    model = create_model("mobilenet_v2", pretrained=False).eval()
    stem = StemTaps(frozen_stem(model, 8), taps=(2, 5))
    run = stem_runner(stem, "cpu", image_size=64, channels_last=True)
    for n in (1, 5):
        x = torch.randn(n, 3, 64, 64)
        with torch.inference_mode():
            expected = stem(x)
            blocks = model.backbone[:8]
            assert torch.allclose(expected[0], blocks(x), atol=1e-5)  # BatchNorm folded in
            assert torch.allclose(expected[1], blocks[:3](x).mean(dim=(2, 3)), atol=1e-5)
        got = run(x)
        assert len(got) == 3 and all(g.shape == e.shape for g, e in zip(got, expected, strict=True))
        for g, e in zip(got, expected, strict=True):
            assert torch.allclose(g, e, rtol=1e-4, atol=1e-5)


def test_a_wholly_frozen_backbone_gives_pooled_vectors() -> None:
    model = create_model("mobilenet_v2", pretrained=False).eval()
    run = stem_runner(StemTaps(frozen_stem(model, "pooled")), "cpu", 32, channels_last=False)
    (pooled,) = run(torch.randn(2, 3, 32, 32))
    assert pooled.shape[:2] == (2, 1280)
