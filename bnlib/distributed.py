"""Batch norm across processes on CPU: the statistics of the whole batch from an all-reduce.

With data parallelism every process holds a shard of the batch. A plain BN layer
normalizes each shard with that shard's own mean and variance, so the processes
compute something different from BN on the full batch. ``torch.nn.SyncBatchNorm``
fixes this on GPUs only (it refuses CPU tensors in training). Here the same
synchronization is written for any backend, including gloo on CPU: every process
all-reduces its counts and sums per channel (the global mean), then its sums of squared
deviations from that mean (the global variance), and the reductions are
differentiable (the backward all-reduces the gradients), so the gradients
also equal those of full-batch BN.

:func:`compare_shards` starts the processes (``python -m bnlib.distributed``) and returns everything each one
computed, for a comparison against single-process BN on the full batch.

Example (two processes on CPU, a few seconds; tests/test_distributed.py runs it, so the doctest does not):
    >>> x = torch.randn(16, 3, 4, 4)
    >>> r = compare_shards(x, world_size=2)  # doctest: +SKIP
    >>> full = torch.nn.functional.batch_norm(x, None, None, training=True)
    >>> bool((r["synced_out"] - full).abs().max() < 1e-5), bool((r["local_out"] - full).abs().max() > 1e-3)  # doctest: +SKIP
    (True, True)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn


def all_reduce_batch_stats(x: Tensor, group: dist.ProcessGroup | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Mean, biased variance (per channel) and count of ``x`` over every process's batch.

    ``x`` is (N, C) or (N, C, *spatial); the statistics run over every dim but 1, across
    all processes of ``group``, in two differentiable all-reduces: the counts and sums give
    the global mean, then the sums of squared deviations from it give the variance. Without an
    initialized process group these are the local batch's statistics.

    Example:
        >>> mean, var, n = all_reduce_batch_stats(torch.tensor([[1.0], [3.0]]))
        >>> mean.tolist(), var.tolist(), int(n)
        ([2.0], [1.0], 2)
    """
    dims = [d for d in range(x.dim()) if d != 1]
    count = torch.full((1, x.shape[1]), float(x.numel() // x.shape[1]), dtype=x.dtype, device=x.device)
    sums = _all_reduce(torch.cat([count, x.sum(dims).unsqueeze(0)]), group)
    n = sums[0]
    mean = sums[1] / n
    shape = (1, -1) + (1,) * (x.dim() - 2)
    # second pass: squared deviations from the global mean (no cancellation, unlike E[x^2] - E[x]^2)
    var = _all_reduce(((x - mean.reshape(shape)) ** 2).sum(dims), group) / n
    return mean, var, n[0].detach()


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the gradient of every process's input is the sum of all processes' output gradients."""

    @staticmethod
    def forward(ctx, t: Tensor, group: dist.ProcessGroup | None) -> Tensor:
        ctx.group = group
        t = t.clone()
        dist.all_reduce(t, group=group)
        return t

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return _AllReduceSum.apply(grad, ctx.group), None  # itself differentiable: double backward works too


def _all_reduce(t: Tensor, group: dist.ProcessGroup | None) -> Tensor:
    """Differentiable sum of ``t`` over the processes of ``group``; ``t`` itself without a process group."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1:
        return _AllReduceSum.apply(t, group)
    return t


class CrossProcessBatchNorm(nn.modules.batchnorm._BatchNorm):
    """``torch.nn.BatchNorm`` whose training statistics come from every process (any backend, CPU included).

    Same parameters, buffers and state_dict as ``nn.BatchNorm2d``; eval mode is plain BN with the
    running statistics. In training the batch mean and (biased) variance are
    :func:`all_reduce_batch_stats` over the process group, and the running variance gets the
    unbiased correction with the global count, as full-batch BN on one process would.
    Without a process group it is ordinary BN.

    Example:
        >>> bn = CrossProcessBatchNorm(3)
        >>> x = torch.randn(8, 3, 2, 2)
        >>> torch.allclose(bn(x), nn.BatchNorm2d(3)(x), atol=1e-6)
        True
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 group: dist.ProcessGroup | None = None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats=True)
        self.group = group

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an input of shape (N, C) or (N, C, *spatial), got {tuple(input.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        """Normalize with the all-processes batch statistics (train) or the running ones (eval)."""
        self._check_input_dim(x)
        if not self.training:
            return super().forward(x)
        mean, var, n = all_reduce_batch_stats(x, self.group)
        if n < 2:
            raise ValueError(f"Expected more than 1 value per channel when training, got {int(n)} over all processes")
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
            self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
            self.running_var.mul_(1 - factor).add_(var.detach() * (n / (n - 1)), alpha=factor)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        y = (x - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + self.eps)
        if self.affine:
            y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
        return y


def _worker(rank: int, world_size: int, folder: str) -> None:
    """One process: local BN and cross-process BN on its shard, forward and backward; results saved to ``folder``."""
    inputs = torch.load(Path(folder) / "inputs.pt", weights_only=True)
    x, upstream, eps = inputs["x"], inputs["upstream"], float(inputs["eps"])
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world_size)
    try:
        shard = x.chunk(world_size)[rank]
        grad = upstream.chunk(world_size)[rank]
        result: dict[str, Tensor | str] = {}
        for name, layer in [("local", nn.BatchNorm2d(x.shape[1], eps=eps) if x.dim() == 4
                                      else nn.BatchNorm1d(x.shape[1], eps=eps)),
                            ("synced", CrossProcessBatchNorm(x.shape[1], eps=eps))]:
            inp = shard.clone().requires_grad_(True)
            if name == "local":
                dims = [d for d in range(shard.dim()) if d != 1]
                batch_mean, batch_var = shard.mean(dims), shard.var(dims, unbiased=False)
            else:
                batch_mean, batch_var, _ = all_reduce_batch_stats(shard)
            result.update({f"{name}_batch_mean": batch_mean.detach(), f"{name}_batch_var": batch_var.detach()})
            out = layer(inp)
            out.backward(grad)
            result.update({f"{name}_out": out.detach(), f"{name}_grad_x": inp.grad, f"{name}_grad_weight": layer.weight.grad,
                           f"{name}_grad_bias": layer.bias.grad, f"{name}_running_mean": layer.running_mean,
                           f"{name}_running_var": layer.running_var})
        try:  # what torch's own synchronized BN does with CPU tensors
            nn.SyncBatchNorm(x.shape[1], eps=eps)(shard)
            result["sync_batchnorm_cpu"] = "ran"
        except Exception as exc:  # noqa: BLE001 - the message is the result
            result["sync_batchnorm_cpu"] = f"{type(exc).__name__}: {exc}"
        torch.save(result, Path(folder) / f"rank{rank}.pt")
        dist.barrier()  # no process tears down while another still communicates
    finally:
        dist.destroy_process_group()


def compare_shards(x: Tensor, upstream: Tensor | None = None, world_size: int = 2, eps: float = 1e-5,
                   timeout: float = 120.0) -> dict:
    """Split ``x`` into ``world_size`` contiguous shards, one per process (gloo on CPU), and run BN two ways.

    Every process (a fresh ``python -m bnlib.distributed`` with one thread) runs one step's forward and backward of (a) a
    plain ``nn.BatchNorm`` on its shard and (b) :class:`CrossProcessBatchNorm`; the loss is ``sum(out * upstream)``, so
    ``upstream`` is the gradient arriving at BN's output (default: a fixed random tensor). It also tries ``nn.SyncBatchNorm``
    on its CPU shard and records what happened.

    Returns a dict: ``local_*`` and ``synced_*`` for ``out``, ``grad_x`` (shards concatenated back
    in batch order), ``grad_weight``, ``grad_bias`` (summed over processes: the full-batch loss's
    gradient), ``batch_mean`` and ``batch_var`` (the biased variance each process normalized with),
    ``running_mean`` and ``running_var`` (one row per process for these four), and ``sync_batchnorm_cpu``
    (one message per process). ``timeout``: seconds to wait for the processes.

    Example (starts two processes; tests/test_distributed.py runs it, so the doctest does not):
        >>> r = compare_shards(torch.randn(8, 2), world_size=2)  # doctest: +SKIP
        >>> r["synced_running_mean"].shape, len(r["sync_batchnorm_cpu"])  # doctest: +SKIP
        (torch.Size([2, 2]), 2)
    """
    if x.dim() not in (2, 4):
        raise ValueError(f"x must be (N, C) or (N, C, H, W), got shape {tuple(x.shape)}")
    if world_size < 2 or x.shape[0] % world_size or x.shape[0] // world_size < 2:
        raise ValueError(f"need world_size >= 2 and a batch ({x.shape[0]}) that splits into equal shards of >= 2 "
                         f"examples; got world_size={world_size}")
    if upstream is None:
        upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    if upstream.shape != x.shape:
        raise ValueError(f"upstream must have x's shape {tuple(x.shape)}, got {tuple(upstream.shape)}")
    with tempfile.TemporaryDirectory() as folder:
        torch.save({"x": x.detach().float(), "upstream": upstream.detach().float(), "eps": torch.tensor(eps)},
                   Path(folder) / "inputs.pt")
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        procs = [subprocess.Popen([sys.executable, "-m", "bnlib.distributed", str(r), str(world_size), folder], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(world_size)]
        outputs = [p.communicate(timeout=timeout) for p in procs]
        for r, (p, (_, err)) in enumerate(zip(procs, outputs)):
            if p.returncode != 0:
                raise RuntimeError(f"process {r} of {world_size} failed (exit code {p.returncode}):\n{err[-3000:]}")
        parts = [torch.load(Path(folder) / f"rank{r}.pt", weights_only=True) for r in range(world_size)]
    merged: dict = {}
    for key in parts[0]:
        values = [p[key] for p in parts]
        if key == "sync_batchnorm_cpu":
            merged[key] = values
        elif key.endswith(("_out", "_grad_x")):
            merged[key] = torch.cat(values)
        elif key.endswith(("_grad_weight", "_grad_bias")):
            merged[key] = torch.stack(values).sum(0)
        else:
            merged[key] = torch.stack(values)
    return merged


if __name__ == "__main__":  # one worker of compare_shards: python -m bnlib.distributed RANK WORLD_SIZE FOLDER
    _worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
