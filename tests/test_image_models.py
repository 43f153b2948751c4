"""Every registered image model builds and trains; normalisation sits inside the model."""

from __future__ import annotations

import pytest
import torch

from samat_image.models import MODELS, Normalized, architecture_label, build_model, check_model

SMALL = {  # reduced sizes so the forward/backward stays fast on a CPU
    "preactresnet18": {"width": 8},
    "wrn": {"depth": 10, "width": 1, "dropout": 0.1},
    "deit_tiny": {"width": 24, "depth": 2},
    "small_cnn": {"width": 8},
}


def test_every_registered_model_has_a_small_configuration():
    assert set(SMALL) == set(MODELS)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize(("channels", "side"), [(3, 32), (1, 16)])
def test_model_forward_backward(name, channels, side):
    torch.manual_seed(0)
    model = build_model(name, 7, channels, side, [0.5] * channels, [0.25] * channels,
                        **SMALL[name])
    x = torch.rand(2, channels, side, side, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    torch.nn.functional.cross_entropy(out, torch.tensor([0, 6])).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(("name", "n_parameters"), [
    ("preactresnet18", 11_172_170),  # the robustness literature's PRN-18 (final BN included)
    ("wrn", 36_479_194),  # WRN-28-10
])
def test_paper_sizes(name, n_parameters):
    model = build_model(name, 10, 3, 32, [0.5] * 3, [0.25] * 3)
    assert sum(p.numel() for p in model.parameters()) == n_parameters


def test_deit_tiny_is_patch_2_on_32_pixels():
    model = build_model("deit_tiny", 10, 3, 32, [0.5] * 3, [0.25] * 3)
    backbone = model.backbone
    assert backbone.patch_embed.patch_size == (2, 2)
    assert backbone.patch_embed.num_patches == 256 and backbone.embed_dim == 192
    assert len(backbone.blocks) == 12


def test_normalisation_is_inside_the_model():
    torch.manual_seed(0)
    mean, std = [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]
    model = build_model("small_cnn", 10, 3, 32, mean, std, width=4).eval()
    assert isinstance(model, Normalized)
    x = torch.rand(3, 3, 32, 32)
    by_hand = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(model.normalize(x), by_hand)
    torch.testing.assert_close(model(x), model.backbone(by_hand))
    assert not any(n.startswith("normalize") for n, _ in model.named_parameters())
    assert {"normalize.mean", "normalize.std"} <= set(model.state_dict())


def test_unknown_model_and_option_messages():
    with pytest.raises(ValueError, match=r"Unknown model 'wrm'\. Did you mean: wrn\?"):
        check_model("wrm", {})
    with pytest.raises(ValueError, match="'depth' is not an option of model 'small_cnn'"):
        check_model("small_cnn", {"depth": 3})
    with pytest.raises(ValueError, match="depth must be 6n\\+4"):
        build_model("wrn", 10, 3, 32, [0.5] * 3, [0.25] * 3, depth=27)
    with pytest.raises(ValueError, match="multiple of 3"):
        build_model("deit_tiny", 10, 3, 32, [0.5] * 3, [0.25] * 3, width=100)


def test_architecture_label_names_the_exact_model():
    """Defaults filled in, so a narrow PRN-18 never reads like the paper's width-64 one."""
    assert architecture_label("preactresnet18", {}) == "PreActResNet-18 (width 64)"
    assert architecture_label("preactresnet18", {"width": 16}) == "PreActResNet-18 (width 16)"
    assert architecture_label("wrn", {}) == "WideResNet-28-10"
    assert architecture_label("wrn", {"depth": 16, "width": 4, "dropout": 0.3}) == (
        "WideResNet-16-4, dropout 0.3")
    assert architecture_label("deit_tiny", {"depth": 2}) == (
        "DeiT-tiny (patch 2, width 192, depth 2)")
    assert architecture_label("small_cnn", {"width": 8}) == "SmallCNN (width 8)"
    assert all(architecture_label(name, {}) for name in MODELS)  # KeyError if one has none
