"""The registry builds the reference models; freezing keeps state dicts clean."""

from __future__ import annotations

import pytest
import torch

from bloodcell.models.registry import create_model, list_models


def test_unknown_model_names_the_choices() -> None:
    with pytest.raises(ValueError, match="mobilenet_v2"):
        create_model("resnet9000", pretrained=False)
    assert {"mobilenet_v2", "vgg19"} <= set(list_models())


def test_mobilenet_v2_reference_head() -> None:
    model = create_model("mobilenet_v2", pretrained=False).eval()
    linears = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1280, 512), (512, 4)]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)


def test_vgg19_forward_and_backward_on_a_tiny_input() -> None:
    model = create_model("vgg19", pretrained=False)
    linears = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [512, 512, 512, 4]
    x = torch.randn(2, 3, 32, 32)
    loss = torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 3]))
    loss.backward()
    assert model.backbone[0].weight.grad is not None
    assert linears[-1].weight.grad.abs().sum() > 0


def test_freezing_keeps_state_dict_keys_and_frozen_batchnorm_in_eval() -> None:
    model = create_model("mobilenet_v2", pretrained=False)
    keys = set(model.state_dict())
    model.freeze_backbone(3)
    assert set(model.state_dict()) == keys
    model.train()
    assert not model.backbone[0].training and model.backbone[3].training
    assert not any(p.requires_grad for p in model.backbone[:3].parameters())
    assert all(p.requires_grad for p in model.head.parameters())
