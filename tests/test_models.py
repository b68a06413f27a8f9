"""The conv nets of bnlib.models: shapes, where BN sits, biases, width, initialization, names and errors."""

import pytest
import torch
from torch import nn

from bnlib.models import (
    MIN_CHANNELS,
    MODELS,
    VGG_LAYERS,
    build_model,
    check_width,
    gaussian_init_,
    min_width,
    mlp,
    small_cnn,
    small_resnet,
    vgg,
)
from bnlib.norms import BatchNorm

CONV_MODELS = ["small_cnn", "small_resnet", *VGG_LAYERS]


@pytest.mark.parametrize("name", CONV_MODELS)
@pytest.mark.parametrize("channels, side", [(3, 32), (1, 28)])
def test_conv_models_classify_cifar_and_mnist_sized_images(name, channels, side):
    kw = {"image_size": side} if name == "small_cnn" else {}
    net = build_model(name, in_channels=channels, width=max(0.125, min_width(name)), norm="bn", **kw)
    out = net(torch.randn(4, channels, side, side))
    assert out.shape == (4, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("depth", list(VGG_LAYERS))
def test_vgg_puts_bn_after_every_convolution_and_drops_its_bias(depth):
    n_conv = sum(item != "M" for item in VGG_LAYERS[depth])
    with_bn = vgg(depth, width=0.125, norm="bn")
    convs = [m for m in with_bn.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == n_conv == sum(isinstance(m, BatchNorm) for m in with_bn.modules())
    assert all(c.bias is None for c in convs)
    for block in (m for name, m in with_bn.named_children() if name.startswith("conv")):
        assert [type(m).__name__ for m in block] == ["Conv2d", "BatchNorm", "ReLU"]  # BN before the nonlinearity
    plain = vgg(depth, width=0.125, norm="none")
    assert all(c.bias is not None for c in plain.modules() if isinstance(c, nn.Conv2d))
    assert not any(isinstance(m, BatchNorm) for m in plain.modules())


def test_vgg11_full_width_has_the_known_size():
    params = sum(p.numel() for p in vgg("vgg11", norm="bn").parameters())
    # 8 conv layers (no bias) + their BN (gamma, beta) + the 512 -> 10 classifier
    convs = [(3, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512), (512, 512)]
    assert params == sum(9 * i * o + 2 * o for i, o in convs) + 512 * 10 + 10


def test_width_multiplies_channels():
    assert vgg("vgg11", width=0.25).out.in_features == 128
    assert small_cnn(width=0.5).fc.out_features == 512
    assert small_resnet(width=2.0).out.in_features == 128


def test_small_cnn_matches_the_study_note():
    net = small_cnn(norm="none")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(3, 32, (5, 5)), (32, 64, (5, 5))]
    assert (net.fc.in_features, net.fc.out_features) == (64 * 8 * 8, 1024)
    assert isinstance(small_cnn(norm="bn").norm, BatchNorm) and small_cnn(norm="bn").fc.bias is None


def test_small_resnet_has_three_stages_of_two_blocks():
    net = small_resnet(norm="bn")
    blocks = [name for name, _ in net.named_children() if "block" in name]
    assert blocks == [f"stage{s}_block{b}" for s in (1, 2, 3) for b in (1, 2)]
    convs3x3 = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs3x3) + 1 == 14  # stem + 12 block convs + the output layer (1x1 shortcuts not counted)
    x = torch.randn(2, 3, 32, 32)
    features = net[:-4](x)  # before pool, flatten, dropout, out
    assert features.shape == (2, 64, 8, 8)


def test_gaussian_init_sets_every_weight_scale():
    net = gaussian_init_(vgg("vgg11", width=0.5, norm="bn"), 0.05)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            assert abs(m.weight.std().item() - 0.05) < 0.01
        if isinstance(m, BatchNorm):
            assert torch.equal(m.weight, torch.ones_like(m.weight))  # norms keep gamma = 1
    assert vgg("vgg11", width=0.125, init_std=0.2).conv1.conv.weight.std().item() == pytest.approx(0.2, rel=0.25)
    with pytest.raises(ValueError, match="std must be > 0, got 0"):
        gaussian_init_(nn.Linear(2, 2), 0)


def test_channels_last_gives_the_same_output():
    torch.manual_seed(0)
    net = vgg("vgg11", width=0.25, norm="torch_bn").eval()
    x = torch.randn(4, 3, 32, 32)
    ref = net(x)
    fast = net.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    assert torch.allclose(ref, fast, atol=1e-5)


def test_names_and_bad_arguments_give_clear_errors():
    assert set(CONV_MODELS) | {"mlp"} == set(MODELS)
    with pytest.raises(ValueError, match="unknown model 'vgg12'; valid models: mlp, small_cnn, small_resnet, vgg11"):
        build_model("vgg12")
    with pytest.raises(ValueError, match="unknown VGG depth 'vgg10'"):
        vgg("vgg10")
    with pytest.raises(ValueError, match="unknown norm kind 'bnn'"):
        vgg("vgg11", norm="bnn")
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        small_resnet(activation="swish")
    with pytest.raises(ValueError, match="width must be a finite number > 0, got 0"):
        vgg("vgg11", width=0)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1"):
        small_cnn(dropout=1)


@pytest.mark.parametrize("name, narrowest", [*((depth, 64) for depth in VGG_LAYERS), ("small_cnn", 32), ("small_resnet", 16)])
def test_a_width_that_leaves_fewer_than_min_channels_is_refused_naming_width(name, narrowest):
    """Once floored silently at 1 channel (VGG-11 at width 1e-9: 126 parameters); now a ValueError that names width, the
    narrowest layer's channels and the smallest width the model takes, from every builder."""
    low = MIN_CHANNELS / narrowest
    assert MIN_CHANNELS == 4 and min_width(name) == low
    convs = [m for m in build_model(name, width=low, norm="bn").modules() if isinstance(m, nn.Conv2d)]
    assert min(c.out_channels for c in convs) == MIN_CHANNELS  # the smallest width allowed gives exactly MIN_CHANNELS
    for width in (1e-9, low / 2, low * 0.99):  # low * 0.99 rounds to 4 channels, but the smallest width is low
        message = (f"width {width:g} leaves {name}'s narrowest layer {narrowest} x {width:g} = {narrowest * width:.3g} channels, "
                   f"fewer than {MIN_CHANNELS}; use width >= {low:g}")
        with pytest.raises(ValueError) as error:
            build_model(name, width=width, norm="bn")
        assert str(error.value) == message
        with pytest.raises(ValueError) as error:
            check_width(name, width)
        assert str(error.value) == message
    for bad in (0, -0.5, float("inf"), float("nan"), "0.5", True):
        with pytest.raises(ValueError, match=r"^width must be a finite number > 0, got "):
            build_model(name, width=bad)


def test_the_series_widths_stay_valid():
    """Every width the presets, notebooks and tests use builds: VGG x1/16 (notebooks 05, 06), the small CNN x1/8 and x1/4,
    the ResNet x1/4 (notebook 04)."""
    assert (min_width("vgg11"), min_width("small_cnn"), min_width("small_resnet")) == (0.0625, 0.125, 0.25)
    assert vgg("vgg11", width=0.0625).conv1.conv.out_channels == 4
    assert small_cnn(width=0.125).conv1.conv.out_channels == 4
    assert small_resnet(width=0.25).stem.conv.out_channels == 4
    with pytest.raises(ValueError) as error:
        vgg("vgg11", width=1e-9)  # the review's reproduction: 1-channel layers, 126 parameters, trained without a word
    assert str(error.value) == ("width 1e-09 leaves vgg11's narrowest layer 64 x 1e-09 = 6.4e-08 channels, fewer than 4; "
                                "use width >= 0.0625")
    with pytest.raises(ValueError, match="no width multiplier for model 'mlp'; models with one: small_cnn, small_resnet, vgg11"):
        min_width("mlp")


@pytest.mark.exact
def test_dropout_is_active_only_in_training():
    torch.manual_seed(0)
    net = small_cnn(width=0.25, norm="none", dropout=0.5)
    x = torch.randn(8, 3, 32, 32)
    net.eval()
    assert torch.equal(net(x), net(x))
    net.train()
    assert not torch.equal(net(x), net(x))


@pytest.mark.parametrize("builder", [lambda **kw: vgg("vgg11", width=0.5, **kw), small_cnn, small_resnet])
def test_he_init_scale_multiplies_every_layers_std(builder):
    torch.manual_seed(0)
    for scale in (1.0, 0.1):
        net = builder(norm="bn", init_scale=scale)
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)) and module.weight.numel() >= 1000:
                expected = scale * (2 / module.weight[0].numel()) ** 0.5
                assert module.weight.std().item() == pytest.approx(expected, rel=0.1)
    with pytest.raises(ValueError, match="scale must be > 0"):
        vgg("vgg11", init_scale=0)


def test_deep_linear_network_keeps_the_product_scale():
    from bnlib.models import deep_linear_network

    torch.manual_seed(0)
    net = deep_linear_network(25, 10)
    assert len(net) == 25 and all(m.bias is None for m in net)
    x = torch.randn(2000, 10)
    ratio = net(x).pow(2).mean().sqrt().item() / x.pow(2).mean().sqrt().item()
    assert 0.05 < ratio < 20  # N(0, 1/dim) keeps the scale within a small factor over 25 layers
    torch.manual_seed(0)
    tiny = deep_linear_network(25, 10, init_std=0.1)
    assert tiny(x).abs().max().item() < 1e-6  # a smaller scale shrinks the product geometrically
    assert len(deep_linear_network(4, 3, norm="bn")) == 7
    with pytest.raises(ValueError, match="layers and dim must be >= 1"):
        deep_linear_network(0, 3)


def test_mlp_structure_follows_the_paper():
    plain, bn = mlp(), mlp(norm="bn")
    assert [m.out_features for m in plain if isinstance(m, nn.Linear)] == [100, 100, 100, 10]
    assert all(m.bias is not None for m in plain if isinstance(m, nn.Linear))
    assert [m.bias is None for m in bn if isinstance(m, nn.Linear)] == [True, True, True, False]
    assert sum(isinstance(m, BatchNorm) for m in bn) == 3
    assert isinstance(bn.act1, nn.Sigmoid) and isinstance(mlp(activation="relu").act2, nn.ReLU)


def test_mlp_init_std_and_errors():
    torch.manual_seed(0)
    net = mlp(hidden=(500,), init_std=0.01)
    assert net.fc1.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert net.fc1.bias.abs().max().item() == 0
    with pytest.raises(ValueError, match="unknown activation 'swish'; valid activations: sigmoid, relu"):
        mlp(activation="swish")
    with pytest.raises(ValueError, match="unknown norm kind 'switch_bn'"):
        mlp(norm="switch_bn")
    with pytest.raises(ValueError, match="init_std must be > 0"):
        mlp(init_std=0)
