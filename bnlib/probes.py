"""Measurements taken during training.

:class:`QuantileProbe` records percentiles of chosen layers' outputs on a
fixed batch (Ioffe & Szegedy 2015, Fig. 1(b, c) track the 15th, 50th and 85th
percentiles of a sigmoid's input over training).

Example:
    >>> import torch
    >>> from bnlib.models import mlp
    >>> net = mlp(hidden=(8, 8))
    >>> probe = QuantileProbe({"norm2": net.norm2}, torch.randn(32, 1, 28, 28))
    >>> probe(0, net)
    {}
    >>> probe.frame().shape  # 1 step x 1 layer x 1 model x 8 units x 3 quantiles
    (24, 6)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn


def as_models_values_units(out: torch.Tensor) -> torch.Tensor:
    """A layer output as (models, values, units): (N, C) -> (1, N, C); (S, N, C) from a batched model stays;
    conv (N, C, H, W) -> (1, N*H*W, C), one unit per channel.

    Example:
        >>> as_models_values_units(torch.zeros(2, 3, 4, 5)).shape
        torch.Size([1, 40, 3])
    """
    if out.dim() == 2:
        return out.unsqueeze(0)
    if out.dim() == 3:
        return out
    if out.dim() == 4:
        return out.transpose(0, 1).flatten(1).T.unsqueeze(0)
    raise ValueError(f"expected a 2-D, 3-D or 4-D layer output, got shape {tuple(out.shape)}")


@torch.no_grad()
def layer_outputs(model: nn.Module, modules: Mapping[str, nn.Module], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs of ``modules`` on input ``x``, in eval mode, each as (models, values, units).

    The model's mode is restored afterwards. See :func:`as_models_values_units`.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
        >>> layer_outputs(net, {"fc": net[0]}, torch.zeros(5, 3))["fc"].shape
        torch.Size([1, 5, 2])
    """
    captured: dict[str, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(lambda _m, _i, out, name=name: captured.__setitem__(name, out.detach()))
        for name, m in modules.items()
    ]
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {name: as_models_values_units(out) for name, out in captured.items()}


class QuantileProbe:
    """Callback for :func:`bnlib.train.fit` that records per-unit quantiles of layer outputs.

    At each call it runs the model (eval mode, no grad) on the fixed input ``x``
    and stores, for every module and every unit (feature or channel), the
    quantiles ``qs`` of that unit's values over the batch (and positions, for
    conv layers). :meth:`frame` returns them as a tidy DataFrame with columns
    ``step, layer, model, unit, q, value``; ``model`` is 0 for a plain model and
    the index of the model in a batched one (e.g. :class:`bnlib.models.BatchedMLP`).

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 2))
        >>> p = QuantileProbe({"fc": net[0]}, torch.randn(100, 3), qs=(0.5,))
        >>> _ = p(7, net)
        >>> p.frame()["step"].unique().tolist()
        [7]
    """

    def __init__(self, modules: Mapping[str, nn.Module], x: torch.Tensor, qs: Sequence[float] = (0.15, 0.5, 0.85)) -> None:
        self.modules = dict(modules)
        self.x = x
        self.qs = tuple(qs)
        self._records: list[tuple[int, str, torch.Tensor]] = []

    def __call__(self, step: int, model: nn.Module) -> dict:
        device = next(model.parameters()).device
        outs = layer_outputs(model, self.modules, self.x.to(device))
        q = torch.tensor(self.qs, device=device)
        for name, out in outs.items():
            self._records.append((step, name, torch.quantile(out.float(), q, dim=1).cpu()))  # (q, models, units)
        return {}

    def frame(self) -> pd.DataFrame:
        """All recorded quantiles: one row per (step, layer, model, unit, q)."""
        parts = []
        for step, name, qv in self._records:
            n_q, n_models, n_units = qv.shape
            parts.append(
                pd.DataFrame(
                    {
                        "step": step,
                        "layer": name,
                        "model": np.tile(np.repeat(np.arange(n_models), n_units), n_q),
                        "unit": np.tile(np.arange(n_units), n_q * n_models),
                        "q": np.repeat(np.asarray(self.qs, dtype=float), n_models * n_units),
                        "value": qv.flatten().numpy(),
                    }
                )
            )
        columns = ["step", "layer", "model", "unit", "q", "value"]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
