"""Shapes, norms, gradients and invariances of the feature extractors and the CE head."""
from __future__ import annotations

import pytest
import torch

from mcr2.models import ClassifierHead, ResNet18Features, UNet, UNetOutput, count_parameters


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _unit_rows(z: torch.Tensor, dim: int = 1) -> bool:
    return torch.allclose(z.norm(dim=dim), torch.ones(()), atol=1e-5)


# ----------------------------------------------------------------------------- ResNet18


@pytest.mark.parametrize("width", [8, 64])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_resnet_shapes_and_norms(width, in_channels):
    model = ResNet18Features(in_channels=in_channels, feature_dim=16, width=width)
    z = model(torch.randn(2, in_channels, 28, 28))
    assert z.shape == (2, 16)
    assert model.feature_dim == 16
    assert _unit_rows(z)


def test_resnet_unnormalized():
    model = ResNet18Features(width=8, normalize=False)
    z = model(torch.randn(4, 1, 28, 28))
    assert z.shape == (4, 128)
    assert not _unit_rows(z)


def test_resnet_stem_is_stride_one_without_maxpool():
    model = ResNet18Features(width=8)
    h = model.stem(torch.randn(2, 1, 28, 28))
    assert h.shape == (2, 8, 28, 28)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
    conv = model.stem[0]
    assert conv.kernel_size == (3, 3) and conv.stride == (1, 1)
    # Stage strides (1, 2, 2, 2): 28 -> 28 -> 14 -> 7 -> 4.
    assert model.stages(h).shape == (2, 64, 4, 4)


def test_resnet_backward():
    model = ResNet18Features(width=8, feature_dim=16)
    z = model(torch.randn(4, 1, 28, 28))
    (z @ z.T).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_resnet_parameter_count():
    # ResNet18 trunk without the 1000-way fc: 11.17 M; head 512·512 + 512 + 2·512 + 512·128 + 128.
    model = ResNet18Features()
    n = count_parameters(model)
    head = 512 * 512 + 512 + 2 * 512 + 512 * 128 + 128
    trunk = n - head
    assert 11.0e6 < trunk < 11.3e6, trunk
    assert count_parameters(model.head) == head


def test_resnet_channels_last_matches():
    model = ResNet18Features(width=8).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        ref = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        out = model_cl(x.to(memory_format=torch.channels_last))
    assert torch.allclose(ref, out, atol=1e-5)


# ----------------------------------------------------------------------------- U-Net


@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("background_head", [False, True])
def test_unet_shapes_and_norms(size, in_channels, background_head):
    model = UNet(in_channels=in_channels, feature_dim=16, width=8, depth=4, background_head=background_head)
    out = model(torch.randn(2, in_channels, size, size))
    assert isinstance(out, UNetOutput)
    assert out.features.shape == (2, 16, size, size)
    assert _unit_rows(out.features, dim=1)
    if background_head:
        assert out.background_logits.shape == (2, 2, size, size)
        # Logits are raw, not normalised with the features.
        assert not _unit_rows(out.background_logits, dim=1)
    else:
        assert out.background_logits is None


def test_unet_rectangular_and_too_small():
    model = UNet(feature_dim=8, width=8, depth=2)
    assert model(torch.randn(1, 1, 5, 9)).features.shape == (1, 8, 5, 9)
    with pytest.raises(ValueError, match="H, W >= 4"):
        model(torch.randn(1, 1, 3, 8))


def test_unet_backward():
    model = UNet(feature_dim=16, width=8, background_head=True)
    out = model(torch.randn(2, 1, 28, 28))
    (out.features.square().mean(dim=(2, 3)).sum() + out.background_logits.mean()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_unet_channels():
    # Bilinear variant: encoder 64 -> 512 and a 512-channel bottleneck for width 64, depth 4.
    model = UNet(width=64, depth=4)
    assert [d[3].out_channels for d in model.downs] == [128, 256, 512, 512]
    assert [u[3].out_channels for u in model.ups] == [256, 128, 64, 64]
    assert model.out_conv.out_channels == 128
    assert UNet(width=64, background_head=True).out_conv.out_channels == 130


def test_unet_channels_last_matches():
    model = UNet(feature_dim=16, width=8, background_head=True).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        ref = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        out = model_cl(x.to(memory_format=torch.channels_last))
    assert torch.allclose(ref.features, out.features, atol=1e-5)
    assert torch.allclose(ref.background_logits, out.background_logits, atol=1e-4)


# ----------------------------------------------------------------------------- CE head


@pytest.mark.parametrize("hidden", [None, 32])
def test_classifier_head_per_pixel_matches_vector_path(hidden):
    head = ClassifierHead(feature_dim=16, num_classes=11, hidden=hidden)
    maps = torch.randn(2, 16, 5, 7)
    out = head(maps)
    assert out.shape == (2, 11, 5, 7)
    vec = head(maps.permute(0, 2, 3, 1).reshape(-1, 16))  # (B, d, H, W) -> (B*H*W, d) -> (B*H*W, k)
    assert torch.allclose(out.permute(0, 2, 3, 1).reshape(-1, 11), vec, atol=1e-6)
    # Channels-last maps give the same logits.
    assert torch.allclose(head(maps.to(memory_format=torch.channels_last)), out, atol=1e-6)


def test_classifier_head_linear_is_a_1x1_conv():
    head = ClassifierHead(feature_dim=8, num_classes=3)
    maps = torch.randn(2, 8, 4, 4)
    conv = torch.nn.functional.conv2d(maps, head.net.weight[:, :, None, None], head.net.bias)
    assert torch.allclose(head(maps), conv, atol=1e-6)
    assert count_parameters(head) == 8 * 3 + 3


def test_classifier_head_rejects_bad_shape():
    with pytest.raises(ValueError):
        ClassifierHead(4, 2)(torch.randn(2, 4, 3))
