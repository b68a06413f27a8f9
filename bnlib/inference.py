"""BN at inference time: recompute the running statistics, and fold BN into the convolution before it.

* :func:`recompute_running_stats` replaces every BN layer's running mean and variance by
  the plain average over a pass of training batches (``momentum=None``: a cumulative
  average), with the weights fixed. Use it when the moving averages lag behind the
  weights (a high learning rate, a Keras-style momentum of 0.99, weights loaded from
  elsewhere) or after surgery on a trained net.
* :func:`fold_batch_norm` returns a copy of a model for inference in which every
  ``Conv2d -> BN`` pair (consecutive children of the same module) is one convolution.
  In eval mode BN is the affine map ``y = gamma (x - E[x]) / sqrt(Var[x] + eps) + beta``
  (Ioffe & Szegedy 2015, Sec. 3.1 and Algorithm 2, step 11), so with
  ``s = gamma / sqrt(Var[x] + eps)`` the pair equals a convolution with weights
  ``s * W`` (per output channel) and bias ``s * (b - E[x]) + beta``.

Works with ``torch.nn.BatchNorm1d/2d`` (and subclasses such as ``bnlib.norms.TorchBatchNorm``)
and with bnlib's from-scratch ``BatchNorm``: the layers of ``bnlib.norms.is_batch_norm(m, plain=True)``.

Example:
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
    >>> _ = net(torch.randn(8, 3, 6, 6))  # one training step's statistics
    >>> folded = fold_batch_norm(net)
    >>> x = torch.randn(2, 3, 6, 6)
    >>> bool((folded(x) - net.eval()(x)).abs().max() < 1e-5), type(folded[1]).__name__
    (True, 'Identity')

To copy it into another project, copy ``norms.py`` beside it, both in a folder named ``bnlib`` (with an empty ``__init__.py``):
the pair needs no other module (``tests/test_copy_alone.py``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from bnlib.norms import is_batch_norm


@torch.no_grad()
def recompute_running_stats(model: nn.Module, batches: Iterable[Tensor]) -> int:
    """Set every BN layer's running statistics to their average over ``batches`` (a pass in train mode).

    Every BN layer is reset (mean 0, variance 1, count 0) and switched to ``momentum=None``
    (the cumulative average: batch k gets weight 1/k), the model runs forward in train mode
    on every batch without gradients, then each layer's momentum and the model's train/eval
    modes are restored. Parameters are untouched. ``batches`` yields model inputs (already
    normalized as in training; no augmentation needed). Returns the number of batches used.
    The result equals ``torch.optim.swa_utils.update_bn(batches, model)`` (tests/test_inference.py checks it), which
    works only on torch's BN classes; this one also takes bnlib's ``BatchNorm`` and restores the momenta and modes.

    Example:
        >>> bn = torch.nn.BatchNorm1d(2)
        >>> xs = [torch.randn(64, 2) * 3 + 5 for _ in range(20)]
        >>> recompute_running_stats(bn, xs)
        20
        >>> bool((bn.running_mean - torch.cat(xs).mean(0)).abs().max() < 1e-5), bn.momentum, bn.training
        (True, 0.1, True)
    """
    layers = [m for m in model.modules() if is_batch_norm(m, plain=True)]
    if not layers:
        raise ValueError("the model has no batch norm layer with running statistics; nothing to recompute")
    saved_momentum = [m.momentum for m in layers]
    modes = {m: m.training for m in model.modules()}
    for m in layers:
        m.running_mean.zero_()
        m.running_var.fill_(1)
        m.num_batches_tracked.zero_()
        m.momentum = None
    model.train()
    count = 0
    try:
        for x in batches:
            model(x)
            count += 1
    finally:
        for m, momentum in zip(layers, saved_momentum):
            m.momentum = momentum
        for m, mode in modes.items():
            m.training = mode
    if count == 0:
        raise ValueError("batches was empty: recomputing the running statistics needs at least one batch")
    return count


def fold_conv_bn(conv: nn.Conv2d, bn: nn.Module) -> nn.Conv2d:
    """One convolution equal to ``bn(conv(x))`` with ``bn`` in eval mode (running statistics).

    The same weights as ``torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)`` (tests/test_inference.py checks it), for
    bnlib's ``BatchNorm`` too, computed in float32 for low-precision layers.

    Example:
        >>> conv, bn = torch.nn.Conv2d(2, 3, 1), torch.nn.BatchNorm2d(3).eval()
        >>> bn.running_mean.fill_(1.0); bn.running_var.fill_(4.0)  # doctest: +ELLIPSIS
        tensor(...
        >>> x = torch.randn(1, 2, 4, 4)
        >>> bool((fold_conv_bn(conv, bn)(x) - bn(conv(x))).abs().max() < 1e-6)
        True
    """
    if conv.out_channels != bn.running_mean.numel():
        raise ValueError(f"the convolution has {conv.out_channels} output channels but the BN layer normalizes "
                         f"{bn.running_mean.numel()}")
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var.float() + bn.eps)
        if getattr(bn, "weight", None) is not None:
            scale = scale * bn.weight.float()
        shift = bn.bias.float() if getattr(bn, "bias", None) is not None else torch.zeros_like(scale)
        bias = conv.bias.float() if conv.bias is not None else torch.zeros_like(scale)
        fused = copy.deepcopy(conv)
        fused.weight = nn.Parameter((conv.weight.float() * scale.reshape(-1, 1, 1, 1)).to(conv.weight.dtype))
        fused.bias = nn.Parameter((scale * (bias - bn.running_mean.float()) + shift).to(conv.weight.dtype))
    return fused


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every ``Conv2d`` followed by a BN layer folded into one convolution.

    A pair is folded when the BN layer is the next child, in registration order, of the
    same parent as the convolution (``nn.Sequential`` blocks such as bnlib's
    ``conv -> norm -> act``); the BN layer becomes ``nn.Identity``. The original model is
    not changed. Only valid for inference: the folded copy has no batch statistics left.

    Example:
        >>> from bnlib.models import vgg
        >>> net = vgg(width=0.125, norm="torch_bn").eval()
        >>> folded = fold_batch_norm(net)
        >>> sum(is_batch_norm(m) for m in net.modules()), sum(is_batch_norm(m) for m in folded.modules())
        (8, 0)
    """
    folded = copy.deepcopy(model).eval()
    for parent in folded.modules():
        children = list(parent.named_children())
        for (name, child), (next_name, following) in zip(children, children[1:]):
            if isinstance(child, nn.Conv2d) and is_batch_norm(following, plain=True):
                setattr(parent, name, fold_conv_bn(child, following))
                setattr(parent, next_name, nn.Identity())
    return folded
