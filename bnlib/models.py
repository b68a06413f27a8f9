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

import copy
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from bnlib.norms import BatchedBatchNorm, BatchNorm, TorchBatchNorm, norm_layer

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


class _BatchedLinearFunction(torch.autograd.Function):
    """y = x W^T + b per model, with a backward that writes dW = dy^T x directly (contiguous, one bmm)."""

    @staticmethod
    def forward(ctx, x, weight, bias):  # x (S, B, in), weight (S, out, in), bias (S, out) or None
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        if bias is None:
            return torch.bmm(x, weight.transpose(1, 2))
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        dx = torch.bmm(dy, weight) if need_x else None
        dw = torch.bmm(dy.transpose(1, 2), x) if need_w else None
        db = dy.sum(1) if ctx.has_bias and need_b else None
        return dx, dw, db


class BatchedLinear(nn.Module):
    """``num_models`` linear layers applied at once: weight (S, out, in), bias (S, out) or None.

    Input (S, B, in) gives (S, B, out); an input (B, in) shared by all models gives
    (S, B, out). Training goes through a small autograd function whose weight
    gradient is one contiguous ``bmm`` (autograd's own would need a transposed copy).

    Example:
        >>> layer = BatchedLinear(torch.zeros(3, 2, 5), torch.ones(3, 2))
        >>> layer(torch.randn(4, 5)).shape
        torch.Size([3, 4, 2])
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone().contiguous())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # one batch shared by every model (evaluation): one large matmul for all of them
            s, n_out, n_in = self.weight.shape
            out = (x @ self.weight.reshape(s * n_out, n_in).T).view(len(x), s, n_out).transpose(0, 1).contiguous()
            return out if self.bias is None else out + self.bias.unsqueeze(1)
        return _BatchedLinearFunction.apply(x, self.weight, self.bias)


class BatchedMLP(nn.Module):
    """S independent copies of :func:`mlp`, trained together with batched matrix products.

    Built from S ``mlp(...)`` models with the same architecture (:meth:`from_seeds`
    builds model ``s`` under ``torch.manual_seed(seeds[s])``, so its initial weights are
    those of a separate run with that seed). Children keep the names of :func:`mlp`
    (``fc1, norm1, act1, ..., out``); the BN layers become :class:`bnlib.norms.BatchedBatchNorm`
    with per-model statistics and running buffers. Input (S, B, C, H, W) (one batch per
    model) or (B, C, H, W) (the same batch for every model); output (S, B, classes).
    :meth:`model_at` gives model ``s`` back as a plain ``mlp``.

    Example:
        >>> net = BatchedMLP.from_seeds([0, 1, 2], norm="bn", activation="sigmoid")
        >>> net(torch.zeros(5, 1, 28, 28)).shape
        torch.Size([3, 5, 10])
        >>> torch.equal(net.model_at(1).fc1.weight, (torch.manual_seed(1), mlp(norm="bn"))[1].fc1.weight)
        True
    """

    def __init__(self, models: Sequence[nn.Sequential]) -> None:
        super().__init__()
        if not models:
            raise ValueError("BatchedMLP needs at least one model, got none")
        names = [[name for name, _ in m.named_children()] for m in models]
        if any(n != names[0] for n in names):
            raise ValueError("all models must have the same architecture (the same named layers)")
        self.num_models = len(models)
        self._template = [copy.deepcopy(models[0]).cpu()]  # a list, so it is not a submodule
        for name, first in models[0].named_children():
            layers = [dict(m.named_children())[name] for m in models]
            self.add_module(name, self._batched(first, layers))

    def _batched(self, first: nn.Module, layers: list[nn.Module]) -> nn.Module:
        if isinstance(first, nn.Flatten):
            return nn.Flatten(start_dim=-3)
        if isinstance(first, nn.Linear):
            bias = None if first.bias is None else torch.stack([m.bias for m in layers])
            return BatchedLinear(torch.stack([m.weight for m in layers]), bias)
        if isinstance(first, (BatchNorm, TorchBatchNorm)):
            bn = BatchedBatchNorm(self.num_models, first.num_features, first.eps, first.momentum)
            with torch.no_grad():
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(bn, name).copy_(torch.stack([getattr(m, name) for m in layers]))
            return bn
        if isinstance(first, (nn.Identity, *ACTIVATIONS.values())):
            return copy.deepcopy(first)
        raise ValueError(f"BatchedMLP cannot batch a {type(first).__name__} layer")

    @classmethod
    def from_seeds(cls, seeds: Sequence[int], **mlp_kwargs) -> "BatchedMLP":
        """One ``mlp(**mlp_kwargs)`` per seed, each built under ``torch.manual_seed(seed)``, batched."""
        models = []
        for seed in seeds:
            torch.manual_seed(seed)
            models.append(mlp(**mlp_kwargs))
        return cls(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.children():
            x = module(x)
        return x

    def model_at(self, index: int) -> nn.Sequential:
        """Model ``index`` as a plain ``mlp`` (a copy, on the CPU)."""
        model = copy.deepcopy(self._template[0])
        with torch.no_grad():
            for name, module in model.named_children():
                batched = getattr(self, name)
                for key, value in module.state_dict().items():
                    source = batched.state_dict()[key]
                    value.copy_(source if key == "num_batches_tracked" else source[index])
        return model
