"""Tests for bnlib.distributed: BN statistics across two gloo processes on CPU equal full-batch BN."""

import pytest
import torch
from torch import nn

from bnlib.distributed import CrossProcessBatchNorm, all_reduce_batch_stats, compare_shards


def full_batch_reference(x: torch.Tensor, upstream: torch.Tensor) -> dict:
    """Single-process torch BN on the whole batch: output, gradients and running statistics after one step."""
    bn = nn.BatchNorm2d(x.shape[1]) if x.dim() == 4 else nn.BatchNorm1d(x.shape[1])
    inp = x.clone().requires_grad_(True)
    out = bn(inp)
    out.backward(upstream)
    return {"out": out.detach(), "grad_x": inp.grad, "grad_weight": bn.weight.grad, "grad_bias": bn.bias.grad,
            "running_mean": bn.running_mean, "running_var": bn.running_var}


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(16, 3, 4, 4), (12, 5)])
def test_two_processes_match_the_full_batch(shape):
    torch.manual_seed(0)
    x = torch.randn(shape) * 3 + torch.arange(shape[1]).reshape((1, -1) + (1,) * (len(shape) - 2))
    x[: shape[0] // 2] += 2.0  # the shards differ: per-process BN must be wrong
    upstream = torch.randn(shape)
    r = compare_shards(x, upstream, world_size=2)
    ref = full_batch_reference(x, upstream)
    for key in ("out", "grad_x", "grad_weight", "grad_bias"):
        assert (r[f"synced_{key}"] - ref[key]).abs().max() < 1e-5, key
        if key != "grad_bias":  # sum of the upstream gradient: the same for every normalization
            assert (r[f"local_{key}"] - ref[key]).abs().max() > 1e-2, key
    dims = [d for d in range(x.dim()) if d != 1]
    ref["batch_mean"], ref["batch_var"] = x.mean(dims), x.var(dims, unbiased=False)
    for key in ("batch_mean", "batch_var", "running_mean", "running_var"):
        assert r[f"synced_{key}"].shape == (2, shape[1])
        assert (r[f"synced_{key}"] - ref[key]).abs().max() < 1e-5, key  # every process holds the full-batch statistics
        assert (r[f"local_{key}"] - ref[key]).abs().max() > 1e-2, key
    assert all("SyncBatchNorm expected input tensor to be on GPU" in m for m in r["sync_batchnorm_cpu"])


def test_bad_inputs_are_refused_before_spawning():
    with pytest.raises(ValueError, match="splits into equal shards"):
        compare_shards(torch.randn(5, 3, 2, 2), world_size=2)
    with pytest.raises(ValueError, match="splits into equal shards"):
        compare_shards(torch.randn(2, 3), world_size=2)  # one example per process
    with pytest.raises(ValueError, match=r"x must be \(N, C\) or \(N, C, H, W\)"):
        compare_shards(torch.randn(4, 3, 2), world_size=2)
    with pytest.raises(ValueError, match="upstream must have x's shape"):
        compare_shards(torch.randn(4, 3), torch.randn(4, 2))


def test_without_a_process_group_it_is_plain_batch_norm():
    torch.manual_seed(1)
    x = torch.randn(6, 4, 3, 3) * 2 + 1
    mine, ref = CrossProcessBatchNorm(4, momentum=None), nn.BatchNorm2d(4, momentum=None)
    assert sorted(mine.state_dict()) == sorted(ref.state_dict())
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    for _ in range(2):
        g = torch.randn(x.shape)
        mine(a).backward(g)
        ref(b).backward(g)
    assert torch.allclose(a.grad, b.grad, atol=1e-5)
    assert torch.allclose(mine.running_var, ref.running_var, atol=1e-6) and int(mine.num_batches_tracked) == 2
    mine.eval(), ref.eval()
    assert torch.allclose(mine(x), ref(x), atol=1e-6)
    mean, var, n = all_reduce_batch_stats(x)
    assert torch.allclose(var, x.var((0, 2, 3), unbiased=False), atol=1e-5) and int(n) == 54
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        CrossProcessBatchNorm(4)(torch.randn(1, 4))
    with pytest.raises(ValueError, match=r"shape \(N, C\)"):
        CrossProcessBatchNorm(4)(torch.randn(4))
