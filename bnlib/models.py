"""The networks the notebooks train.

Every builder takes a ``norm`` kind (see :func:`bnlib.norms.norm_layer`) and an
``activation`` name, so the same architecture can be trained with and without
Batch Normalization: :func:`mlp` (the paper's MNIST network), :func:`vgg` (VGG-11/13/16/19
for small images, with a width multiplier), :func:`small_cnn` (the study note's CNN) and
:func:`small_resnet`; :func:`build_model` builds any of them by name (:class:`bnlib.lab.batched.BatchedMLP`
trains S copies of an ``mlp`` at once).

Example:
    >>> import torch
    >>> from bnlib.models import mlp
    >>> net = mlp(norm="bn", activation="sigmoid")
    >>> net(torch.zeros(8, 1, 28, 28)).shape
    torch.Size([8, 10])

To copy it into another project, copy ``norms.py`` beside it, both in a folder named ``bnlib`` (with an empty ``__init__.py``):
the pair needs no other module (``tests/test_copy_alone.py``).
"""

from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn

from bnlib.norms import NormSpec, norm_layer

# ---------------------------------------------------------------- activations

ACTIVATIONS = {
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}


def activation_layer(name: str) -> nn.Module:
    """Return a fresh activation module by name.

    Example:
        >>> activation_layer("relu")
        ReLU()
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid activations: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


# ---------------------------------------------------------------- fully connected networks

def mlp(
    in_features: int = 784,
    hidden: Sequence[int] = (100, 100, 100),
    num_classes: int = 10,
    *,
    norm: NormSpec = "none",
    activation: str = "sigmoid",
    init_std: float | None = None,
) -> nn.Sequential:
    """The fully connected network of Ioffe & Szegedy (2015), Sec. 4.1.

    Three hidden layers of 100 units by default. Each hidden layer is
    ``fc{i} -> norm{i} -> act{i}``; with a norm other than ``"none"`` the
    linear layer has no bias, because BN's shift replaces it (Sec. 3.2:
    z = g(BN(Wu))). ``norm{i}`` is an ``nn.Identity`` without BN, so the
    input of the i-th nonlinearity is always the output of the module named
    ``norm{i}`` (convenient for hooks).

    Args:
        in_features: input size after flattening (784 for MNIST).
        hidden: widths of the hidden layers.
        num_classes: size of the output layer.
        norm: a kind or factory of :func:`bnlib.norms.norm_layer` ("none", "bn", "torch_bn", ...).
        activation: one of ``ACTIVATIONS``.
        init_std: if given, every weight is drawn from N(0, init_std^2) and biases
            start at zero (the paper's "small random Gaussian values"); if None,
            PyTorch's default initialization is kept.

    Example:
        >>> net = mlp(hidden=(32, 32), norm="bn", activation="relu", init_std=0.1)
        >>> [name for name, _ in net.named_children()][:4]
        ['flatten', 'fc1', 'norm1', 'act1']
    """
    if not hidden:
        raise ValueError("hidden must name at least one layer width, got an empty sequence")
    if init_std is not None and not init_std > 0:
        raise ValueError(f"init_std must be > 0 or None, got {init_std}")
    activation_layer(activation)  # fail early with the list of valid names
    layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
    width = in_features
    for i, h in enumerate(hidden, start=1):
        layers[f"fc{i}"] = nn.Linear(width, h, bias=(norm == "none"))
        layers[f"norm{i}"] = norm_layer(norm, h)
        layers[f"act{i}"] = activation_layer(activation)
        width = h
    layers["out"] = nn.Linear(width, num_classes)
    net = nn.Sequential(layers)
    if init_std is not None:
        gaussian_init_(net, init_std)
    return net


def deep_linear_network(layers: int = 25, dim: int = 10, *, norm: NormSpec = "none",
                        init_std: float | None = None) -> nn.Sequential:
    """Santurkar et al. 2018's deep linear network (DLN): ``layers`` bias-free linear maps of width ``dim``.

    With ``norm`` other than "none", a norm layer follows every linear map but the last. Weights from
    N(0, init_std^2); the default ``init_std = 1 / sqrt(dim)`` keeps the scale of the product of the layers
    (with PyTorch's default initialization a product of 25 layers all but vanishes).

    Example:
        >>> net = deep_linear_network(layers=3, dim=4, norm="bn")
        >>> [type(m).__name__ for m in net], net(torch.randn(8, 4)).shape
        (['Linear', 'BatchNorm', 'Linear', 'BatchNorm', 'Linear'], torch.Size([8, 4]))
    """
    if layers < 1 or dim < 1:
        raise ValueError(f"layers and dim must be >= 1, got layers={layers}, dim={dim}")
    std = dim**-0.5 if init_std is None else init_std
    modules: list[nn.Module] = []
    for i in range(layers):
        linear = nn.Linear(dim, dim, bias=False)
        nn.init.normal_(linear.weight, 0.0, std)
        modules.append(linear)
        if norm != "none" and i < layers - 1:
            modules.append(norm_layer(norm, dim))
    return nn.Sequential(*modules)


# ---------------------------------------------------------------- initialization

def gaussian_init_(model: nn.Module, std: float) -> nn.Module:
    """Draw every linear and convolution weight from N(0, std^2) and zero their biases, in place.

    Norm layers keep their own initialization (gamma = 1, beta = 0). Returns ``model``.

    Example:
        >>> net = gaussian_init_(torch.nn.Conv2d(3, 8, 3), std=0.01)
        >>> round(net.weight.std().item(), 2), net.bias.abs().max().item()
        (0.01, 0.0)
    """
    if not std > 0:
        raise ValueError(f"std must be > 0, got {std}")
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(module.weight, 0.0, std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def he_init_(model: nn.Module, scale: float = 1.0) -> nn.Module:
    """Draw every linear and convolution weight from N(0, (scale * sqrt(2 / fan_in))^2) and zero their biases, in place.

    ``scale = 1`` is He et al. 2015's initialization for ReLU networks (it keeps the size of the
    activations from layer to layer); other scales shrink or blow them up by ``scale`` per layer,
    which is what an initialization-sensitivity sweep varies. Norm layers keep gamma = 1, beta = 0.

    Example:
        >>> conv = he_init_(torch.nn.Conv2d(8, 16, 3), scale=0.5)  # fan_in = 8 * 3 * 3 = 72
        >>> round(conv.weight.std().item() / (0.5 * (2 / 72) ** 0.5), 1), conv.bias.abs().max().item()
        (1.0, 0.0)
    """
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            fan_in = module.weight[0].numel()
            nn.init.normal_(module.weight, 0.0, scale * math.sqrt(2 / fan_in))
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def xavier_init_(model: nn.Module) -> nn.Module:
    """Glorot & Bengio 2010 ("Xavier") uniform initialization of every linear and convolution weight, zero biases, in place.

    U(-a, a) with a = sqrt(6 / (fan_in + fan_out)): TensorFlow's default, used by the original code of
    notebook 04's failed BN variants. Norm layers keep gamma = 1, beta = 0.

    Example:
        >>> conv = xavier_init_(torch.nn.Conv2d(8, 16, 3))  # fan_in 72, fan_out 144
        >>> conv.weight.abs().max().item() <= (6 / (72 + 144)) ** 0.5, conv.bias.abs().max().item()
        (True, 0.0)
    """
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return model


def _init_(net: nn.Module, init_scale: float, init_std: float | None) -> nn.Module:
    """``init_std`` given: every weight N(0, init_std^2); else He initialization times ``init_scale``."""
    return gaussian_init_(net, init_std) if init_std is not None else he_init_(net, init_scale)


# ---------------------------------------------------------------- convolutional networks

VGG_LAYERS: dict[str, list[int | str]] = {  # channels of each 3x3 convolution, "M" = 2x2 max pooling (Simonyan & Zisserman 2015)
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


MIN_CHANNELS = 4
"""The fewest channels a width multiplier may leave in a conv net's narrowest layer (:func:`check_width`).

Four is more than the three colour channels of the input, and the fewest the series trains (VGG-11 x1/16 in notebooks 05
and 06, the ResNet x1/4 in notebook 04). Below it a network is no longer a model of the claims it
tests: at one channel per layer (VGG-11 at width 1e-9: 126 parameters) each layer is a single feature map, so LN and GN
over the channels become instance norm and there is nothing across channels left to compare.
"""

NARROWEST_CHANNELS: dict[str, int] = {
    "small_cnn": 32, "small_resnet": 16, **{depth: min(c for c in VGG_LAYERS[depth] if c != "M") for depth in VGG_LAYERS}
}
"""Channels of each conv net's narrowest layer at width 1 (the first convolution of each)."""


def min_width(model: str) -> float:
    """The smallest width multiplier ``model`` takes: its narrowest layer then keeps :data:`MIN_CHANNELS` channels.

    Example:
        >>> min_width("vgg11"), min_width("small_cnn"), min_width("small_resnet")
        (0.0625, 0.125, 0.25)
    """
    if model not in NARROWEST_CHANNELS:
        raise ValueError(f"no width multiplier for model {model!r}; models with one: {', '.join(NARROWEST_CHANNELS)}")
    return MIN_CHANNELS / NARROWEST_CHANNELS[model]


def check_width(model: str, width: float) -> None:
    """Raise ``ValueError`` naming ``width`` unless it is a finite number >= :func:`min_width` of ``model``.

    Every conv builder calls it, so a width that would leave the narrowest layer with fewer than :data:`MIN_CHANNELS`
    channels (once silently rounded up to 1) is refused before any layer is built.

    Example:
        >>> check_width("vgg11", 0.0625)
        >>> check_width("vgg11", 1e-9)
        Traceback (most recent call last):
        ...
        ValueError: width 1e-09 leaves vgg11's narrowest layer 64 x 1e-09 = 6.4e-08 channels, fewer than 4; use width >= 0.0625
    """
    if isinstance(width, bool) or not isinstance(width, numbers.Real) or not (width > 0 and math.isfinite(width)):
        raise ValueError(f"width must be a finite number > 0, got {width!r}")
    if width < min_width(model):
        c = NARROWEST_CHANNELS[model]
        raise ValueError(f"width {width:g} leaves {model}'s narrowest layer {c} x {width:g} = {c * width:.3g} channels, "
                         f"fewer than {MIN_CHANNELS}; use width >= {min_width(model):g}")


def _scaled(channels: int, width: float) -> int:
    """Channels after a width multiplier (the builders first refuse widths below :func:`min_width`)."""
    return max(1, round(channels * width))


def conv_norm_act(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1, *,
                  norm: NormSpec = "none", activation: str = "relu") -> nn.Sequential:
    """``conv -> norm -> activation`` with "same" padding; the convolution has no bias when a norm follows it.

    Example:
        >>> conv_norm_act(3, 8, norm="bn")
        Sequential(
          (conv): Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
          (norm): BatchNorm(8, eps=1e-05, momentum=0.1, affine=True)
          (act): ReLU()
        )
    """
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=(norm == "none")),
        norm=norm_layer(norm, out_channels),
        act=activation_layer(activation),
    ))


def vgg(
    depth: str = "vgg11",
    num_classes: int = 10,
    in_channels: int = 3,
    *,
    width: float = 1.0,
    norm: NormSpec = "bn",
    activation: str = "relu",
    dropout: float = 0.0,
    init_scale: float = 1.0,
    init_std: float | None = None,
) -> nn.Sequential:
    """A VGG network for small images (CIFAR-10: 32x32; MNIST: 28x28), with a width multiplier.

    Every 3x3 convolution is ``conv -> norm -> activation`` (BN before the nonlinearity, as in
    Ioffe & Szegedy 2015, Sec. 3.2; no convolution bias with a norm). Pooling uses
    ``ceil_mode`` so that 28x28 inputs also come down to 1x1 after five poolings. The head is
    ``flatten -> dropout -> linear``, the usual CIFAR variant of VGG.

    Args:
        depth: a key of ``VGG_LAYERS`` ("vgg11", "vgg13", "vgg16", "vgg19").
        width: multiplies every channel count (0.25 gives 16..128 channels); at least :func:`min_width` (1/16).
        dropout: dropout probability before the classifier (0 = none).
        init_scale: weights from He initialization times this factor (:func:`he_init_`).
        init_std: if given, every weight from N(0, init_std^2) instead (:func:`gaussian_init_`).

    Example:
        >>> net = vgg("vgg11", width=0.25, norm="bn")
        >>> net(torch.zeros(2, 3, 32, 32)).shape, net(torch.zeros(2, 3, 28, 28)).shape
        (torch.Size([2, 10]), torch.Size([2, 10]))
    """
    if depth not in VGG_LAYERS:
        raise ValueError(f"unknown VGG depth {depth!r}; valid depths: {', '.join(VGG_LAYERS)}")
    check_width(depth, width)
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels, n_conv, n_pool = in_channels, 0, 0
    for item in VGG_LAYERS[depth]:
        if item == "M":
            n_pool += 1
            layers[f"pool{n_pool}"] = nn.MaxPool2d(2, ceil_mode=True)
        else:
            n_conv += 1
            layers[f"conv{n_conv}"] = conv_norm_act(channels, _scaled(item, width), norm=norm, activation=activation)
            channels = _scaled(item, width)
    layers["flatten"] = nn.Flatten()
    layers["dropout"] = nn.Dropout(dropout)
    layers["out"] = nn.Linear(channels, num_classes)
    return _init_(nn.Sequential(layers), init_scale, init_std)


def small_cnn(
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int = 32,
    *,
    width: float = 1.0,
    norm: NormSpec = "bn",
    activation: str = "relu",
    dropout: float = 0.0,
    init_scale: float = 1.0,
    init_std: float | None = None,
) -> nn.Sequential:
    """The study note's small CNN: 5x5 conv 32 -> pool -> 5x5 conv 64 -> pool -> dense 1024 -> classes.

    Each conv and the dense layer are followed by ``norm -> activation`` (no bias with a norm);
    ``dropout`` acts before the output layer. ``image_size`` (32 for CIFAR-10, 28 for MNIST)
    fixes the size of the dense layer's input; ``width`` multiplies every layer (at least 1/8: :func:`min_width`).
    Weights: He initialization times ``init_scale``, or N(0, init_std^2) when ``init_std`` is given.

    Example:
        >>> small_cnn(in_channels=1, image_size=28)(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    check_width("small_cnn", width)
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    c1, c2, hidden = _scaled(32, width), _scaled(64, width), _scaled(1024, width)
    side = math.ceil(math.ceil(image_size / 2) / 2)  # after two 2x2 poolings with ceil_mode
    net = nn.Sequential(OrderedDict(
        conv1=conv_norm_act(in_channels, c1, 5, norm=norm, activation=activation),
        pool1=nn.MaxPool2d(2, ceil_mode=True),
        conv2=conv_norm_act(c1, c2, 5, norm=norm, activation=activation),
        pool2=nn.MaxPool2d(2, ceil_mode=True),
        flatten=nn.Flatten(),
        fc=nn.Linear(c2 * side * side, hidden, bias=(norm == "none")),
        norm=norm_layer(norm, hidden),
        act=activation_layer(activation),
        dropout=nn.Dropout(dropout),
        out=nn.Linear(hidden, num_classes),
    ))
    return _init_(net, init_scale, init_std)


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): two 3x3 ``conv -> norm`` with a shortcut, activation after the sum.

    The shortcut is the identity, or a 1x1 ``conv -> norm`` when the shape changes.

    Example:
        >>> BasicBlock(16, 32, stride=2, norm="bn")(torch.zeros(2, 16, 8, 8)).shape
        torch.Size([2, 32, 4, 4])
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, norm: NormSpec = "bn", activation: str = "relu"):
        super().__init__()
        self.conv1 = conv_norm_act(in_channels, out_channels, 3, stride, norm=norm, activation=activation)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=(norm == "none"))
        self.norm2 = norm_layer(norm, out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=(norm == "none")),
                                          norm_layer(norm, out_channels))
        self.act = activation_layer(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm2(self.conv2(self.conv1(x))) + self.shortcut(x))


def small_resnet(
    num_classes: int = 10,
    in_channels: int = 3,
    *,
    width: float = 1.0,
    blocks_per_stage: int = 2,
    norm: NormSpec = "bn",
    activation: str = "relu",
    dropout: float = 0.0,
    init_scale: float = 1.0,
    init_std: float | None = None,
) -> nn.Sequential:
    """A small CIFAR ResNet: 3x3 stem, three stages of 16/32/64 channels (x ``width``), ``blocks_per_stage``
    basic blocks each (stride 2 at the start of stages 2 and 3), global average pooling, linear output. ``width``
    is at least 1/4 (:func:`min_width`: the stem keeps 4 channels).

    With 2 blocks per stage it has 14 weight layers (He et al. 2016, Sec. 4.2 use n = 3, 5, 7, ...).
    ``dropout`` acts before the output layer. Weights: He initialization times ``init_scale``, or
    N(0, init_std^2) when ``init_std`` is given.

    Example:
        >>> net = small_resnet(norm="none", activation="relu")
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    check_width("small_resnet", width)
    if blocks_per_stage < 1:
        raise ValueError(f"blocks_per_stage must be >= 1, got {blocks_per_stage}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    widths = [_scaled(c, width) for c in (16, 32, 64)]
    layers: OrderedDict[str, nn.Module] = OrderedDict(stem=conv_norm_act(in_channels, widths[0], norm=norm,
                                                                         activation=activation))
    channels = widths[0]
    for stage, out_channels in enumerate(widths, start=1):
        for block in range(1, blocks_per_stage + 1):
            stride = 2 if stage > 1 and block == 1 else 1
            layers[f"stage{stage}_block{block}"] = BasicBlock(channels, out_channels, stride, norm=norm, activation=activation)
            channels = out_channels
    layers["pool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    layers["dropout"] = nn.Dropout(dropout)
    layers["out"] = nn.Linear(channels, num_classes)
    return _init_(nn.Sequential(layers), init_scale, init_std)


# ---------------------------------------------------------------- models by name, parameter counts

MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp, "small_cnn": small_cnn, "small_resnet": small_resnet, **{depth: partial(vgg, depth) for depth in VGG_LAYERS}
}


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a model of :data:`MODELS` by name; keyword arguments go to its builder.

    Example:
        >>> build_model("vgg11", width=0.125, norm="none")(torch.zeros(1, 3, 32, 32)).shape
        torch.Size([1, 10])
        >>> build_model("vgg12")
        Traceback (most recent call last):
        ...
        ValueError: unknown model 'vgg12'; valid models: mlp, small_cnn, small_resnet, vgg11, vgg13, vgg16, vgg19
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters.

    Example:
        >>> count_parameters(torch.nn.Linear(3, 2))
        8
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
