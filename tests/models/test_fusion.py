"""models.fusion: BatchNorm folded into inference copies of backbone blocks."""

from __future__ import annotations

import torch
from torch import nn

from bloodcell.models.fusion import fused_blocks
from bloodcell.models.registry import create_model


def _model_with_real_statistics() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("mobilenet_v2", pretrained=False).eval()
    for bn in model.modules():  # non-trivial statistics, so that folding them is tested
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return model


def test_fused_blocks_give_the_same_outputs_without_batchnorm() -> None:
    model = _model_with_real_statistics()
    fused = fused_blocks(model.backbone[:6])
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(fused(x), model.backbone[:6](x), atol=1e-5)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    assert not any(p.requires_grad for p in fused.parameters())


def test_fused_blocks_keep_indexing_and_leave_the_model_alone() -> None:
    model = _model_with_real_statistics().train()  # as during training: fused as in eval
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fused_blocks(model.backbone[:6])
    seen = []
    fused[3].register_forward_hook(lambda _m, _i, out: seen.append(out))
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        fused(x)
        assert torch.allclose(seen[0], model.eval().backbone[:4](x), atol=1e-5)
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_fused_classifier_gives_the_same_logits_and_taps() -> None:
    from bloodcell.models.fusion import fused_classifier

    model = _model_with_real_statistics()
    fast = fused_classifier(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        logits, taps = model.forward_with_taps(x, [3, 10])
        fast_logits, fast_taps = fast.forward_with_taps(x, [3, 10])
    assert torch.allclose(fast_logits, logits, atol=1e-4)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(fast_taps, taps, strict=True))
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is kept


def test_fusing_leaves_modules_called_by_other_threads_alone() -> None:
    """Folding is not torch.fx tracing, which patches every module call in the process: a
    thread making batches through torchvision's transforms (`data.batches.made_ahead`) while
    the torch engine fuses its model on its first batch must not be traced."""
    import threading

    from torchvision.transforms import v2

    model = _model_with_real_statistics()
    transform = v2.Compose([v2.ToDtype(torch.float32), v2.Normalize([0.5] * 3, [0.2] * 3)])
    errors: list[BaseException] = []
    done = threading.Event()

    def make_batches() -> None:
        while not done.is_set():
            try:
                transform(torch.rand(3, 8, 8))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    import sys

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often, so that they meet mid-fusion
    thread = threading.Thread(target=make_batches)
    thread.start()
    try:
        for _ in range(3):
            fused_blocks(model.backbone)
    finally:
        done.set()
        thread.join()
        sys.setswitchinterval(interval)
    assert errors == []
