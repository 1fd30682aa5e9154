"""Weight-normalised layers and the generators' shapes."""
import pytest
import torch

from groklab.gtn.generator import ConvGenerator, MLPGenerator, WNConv, WNLinear


@pytest.mark.parametrize("make", [lambda wn: WNLinear(7, 5, wn), lambda wn: WNConv(3, 4, 3, 2, wn),
                                  lambda wn: WNConv(3, 4, 3, 1, wn)])
def test_weight_norm_rows_have_norm_g_and_ignore_the_scale_of_v(make):
    torch.manual_seed(0)
    layer = make(True)
    with torch.no_grad():
        layer.g.copy_(torch.rand(layer.g.shape) + 0.5)
    w = layer.weight()
    torch.testing.assert_close(w.flatten(1).norm(dim=1), layer.g.detach())
    with torch.no_grad():
        layer.v.mul_(torch.rand(layer.v.shape[0]).view(-1, *[1] * (layer.v.dim() - 1)) * 10 + 0.1)
    torch.testing.assert_close(layer.weight(), w)


def test_weight_norm_starts_as_the_plain_layer_and_switches_off():
    torch.manual_seed(0)
    wn = WNLinear(6, 3, True)
    torch.testing.assert_close(wn.weight(), wn.v.detach())   # g = ‖v‖ at init
    plain = WNLinear(6, 3, False)
    assert plain.g is None and plain.weight() is plain.v


def test_weight_norm_gradient_is_orthogonal_to_v():
    # Salimans & Kingma 2016, eq. 3: ∇_v L is projected away from v (so ‖v‖ grows, never shrinks)
    torch.manual_seed(0)
    layer = WNLinear(6, 3, True)
    layer(torch.randn(10, 6)).square().sum().backward()
    dots = (layer.v.grad * layer.v.detach()).sum(1)
    torch.testing.assert_close(dots, torch.zeros(3), atol=1e-5, rtol=0)


@pytest.mark.parametrize("wn", [True, False])
def test_generators_make_the_data_shape_within_out_scale(wn):
    torch.manual_seed(0)
    z, y = torch.randn(12, 16), torch.arange(12) % 10
    x = ConvGenerator(16, 10, (1, 8, 8), hidden=32, channels=(8, 4), weight_norm=wn)(z, y)
    assert x.shape == (12, 1, 8, 8) and x.abs().max() <= 2.0
    x = MLPGenerator(16, 10, (1, 40), hidden=32, weight_norm=wn, out_scale=0)(z, y)
    assert x.shape == (12, 1, 40)
    with pytest.raises(ValueError, match="divisible by 4"):
        ConvGenerator(16, 10, (1, 10, 10))
