"""The CoPer metric with all weights one equals LPIPS (Zhang et al. 2018) computed by the `lpips` package on the
same features; no download: random trunk (pnet_rand=True), no calibrated linear layers (pretrained=False)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmark.perceptual.metric import FeatureExtractor, coper_distance, random_extractor

lpips = pytest.importorskip("lpips")  # in the [test] extra

# torchvision's notice about LPIPS's ``pretrained=`` argument (its trunk is built with weights=None).
pytestmark = pytest.mark.filterwarnings("ignore:.*(pretrained|weight enum).*:UserWarning")


@pytest.fixture(scope="module")
def resnet():
    return random_extractor("resnet_unet", size="smoke")


def _images(seed=0, b=2, s=32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 1, s, s, generator=g), torch.randn(b, 1, s, s, generator=g)


class _Trunk(nn.Module):
    """Our extractor's features as an LPIPS trunk (LPIPS indexes the trunk's outputs 0..L-1)."""

    def __init__(self, ext):
        super().__init__()
        self.ext = ext

    def forward(self, x):
        return self.ext(x)


def _lpips(net="alex", **kw):
    return lpips.LPIPS(pretrained=False, net=net, pnet_rand=True, verbose=False, **kw)


def test_ones_equal_lpips_formula_on_our_features(resnet):
    """All weights one, same features: our distance = LPIPS's forward (lpips=False: no linear layers)."""
    lp = _lpips(lpips=False)
    lp.scaling_layer, lp.net, lp.L = nn.Identity(), _Trunk(resnet), len(resnet.channels())
    x0, x1 = (x.repeat(1, 3, 1, 1) for x in _images())
    torch.testing.assert_close(coper_distance(x0, x1, resnet), lp(x0, x1).flatten())


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_ones_equal_lpips_on_lpips_own_random_trunk(net):
    """LPIPS's own random AlexNet / VGG-16 trunk, wrapped as our extractor: the same number as LPIPS computes."""
    lp = _lpips(net=net, lpips=False)
    ext = FeatureExtractor(lp.net, lambda x: list(lp.net(lp.scaling_layer(x))), in_channels=3, name=f"lpips-{net}", relu=True)
    x0, x1 = (x.repeat(1, 3, 1, 1) for x in _images(b=2, s=32))
    with torch.no_grad():
        torch.testing.assert_close(coper_distance(x0, x1, ext), lp(x0, x1).flatten(), rtol=1e-5, atol=1e-7)


def test_weights_are_lpips_linear_layers_squared(resnet):
    """w_l scales the difference before squaring (LPIPS / CoPer eq.); LPIPS's code weights the squared difference: w^2."""
    chans = resnet.channels()
    lp = _lpips(lpips=True, use_dropout=False)
    lp.scaling_layer, lp.net, lp.L = nn.Identity(), _Trunk(resnet), len(chans)
    lp.lins = nn.ModuleList(lpips.NetLinLayer(c, use_dropout=False) for c in chans)
    g = torch.Generator().manual_seed(1)
    w = [torch.rand(c, generator=g) for c in chans]
    with torch.no_grad():
        for lin, wl in zip(lp.lins, w):
            lin.model[-1].weight.copy_(wl.pow(2).view(1, -1, 1, 1))
    x0, x1 = (x.repeat(1, 3, 1, 1) for x in _images())
    with torch.no_grad():
        torch.testing.assert_close(coper_distance(x0, x1, resnet, w), lp(x0, x1).flatten())
