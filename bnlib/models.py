"""The networks the notebooks train.

Every builder takes a ``norm`` kind (see :func:`bnlib.norms.norm_layer`) and an
``activation`` name, so the same architecture can be trained with and without
Batch Normalization.

Example:
    >>> import torch
    >>> from bnlib.models import mlp
    >>> net = mlp(norm="bn", activation="sigmoid")
    >>> net(torch.zeros(8, 1, 28, 28)).shape
    torch.Size([8, 10])
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from bnlib.norms import norm_layer

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


def mlp(
    in_features: int = 784,
    hidden: Sequence[int] = (100, 100, 100),
    num_classes: int = 10,
    *,
    norm: str = "none",
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
        norm: a kind of :func:`bnlib.norms.norm_layer` ("none", "bn", "torch_bn", ...).
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
        for module in net.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, init_std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
    return net


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters.

    Example:
        >>> count_parameters(torch.nn.Linear(3, 2))
        8
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
