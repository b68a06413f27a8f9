"""Tests for bnlib.norms: hand-written Batch Normalization vs PyTorch."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnlib import norms
from bnlib.norms import (
    NORM_KINDS,
    BatchNorm,
    BatchNormFunction,
    BatchRenorm,
    GhostBatchNorm,
    TorchBatchNorm,
    batch_norm_backward,
    batch_norm_forward,
    norm_layer,
)

NORMS_PY = Path(norms.__file__)
SHAPES = [(2, 3), (7, 5), (64, 4), (2, 3, 1, 1), (2, 3, 5, 3), (5, 2, 4, 4)]
EPSES = [1e-5, 1e-3, 0.1]


def random_params(c: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """A random (gamma, beta) pair."""
    return torch.rand(c, dtype=dtype) + 0.5, torch.randn(c, dtype=dtype)


def reduction_dims(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (0,) if len(shape) == 2 else (0, 2, 3)


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


# --------------------------------------------------------------------------- forward


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("eps", EPSES)
def test_forward_matches_functional(shape, eps):
    x = torch.randn(shape, dtype=torch.float64) * 3 + 1
    gamma, beta = random_params(shape[1])
    y, cache = batch_norm_forward(x, gamma, beta, eps)
    expected = F.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)
    assert cache.m == x.numel() // shape[1]
    assert cache.dims == reduction_dims(shape)


@pytest.mark.parametrize("shape", [(32, 3), (8, 3, 5, 5)])
def test_forward_normalizes_each_channel(shape):
    x = torch.randn(shape, dtype=torch.float64) * torch.tensor([0.1, 5.0, 50.0]).reshape(
        (1, 3) + (1,) * (len(shape) - 2)
    ) + 7
    c = shape[1]
    ones = torch.ones(c, dtype=x.dtype)
    y, _ = batch_norm_forward(x, ones, torch.zeros_like(ones), 1e-10)
    dims = reduction_dims(shape)
    torch.testing.assert_close(y.mean(dims), torch.zeros(c, dtype=x.dtype), rtol=0, atol=1e-12)
    torch.testing.assert_close(
        y.var(dims, unbiased=False), torch.ones(c, dtype=x.dtype), rtol=0, atol=1e-6
    )


# --------------------------------------------------------------------------- backward


def plain_bn(x, gamma, beta, eps):
    """Batch norm from plain tensor ops, differentiated by autograd."""
    dims = reduction_dims(tuple(x.shape))
    shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
    mean = x.mean(dims, keepdim=True)
    var = x.var(dims, unbiased=False, keepdim=True)
    return gamma.reshape(shape) * (x - mean) / torch.sqrt(var + eps) + beta.reshape(shape)


def autograd_grads(fn, x, gamma, beta, eps, dy):
    inputs = [t.detach().requires_grad_() for t in (x, gamma, beta)]
    y = fn(*inputs, eps)
    return torch.autograd.grad(y, inputs, dy)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("eps", EPSES)
def test_manual_backward_matches_autograd(shape, eps):
    x = torch.randn(shape, dtype=torch.float64) * 2 - 1
    gamma, beta = random_params(shape[1])
    dy = torch.randn(shape, dtype=torch.float64)
    _, cache = batch_norm_forward(x, gamma, beta, eps)
    manual = batch_norm_backward(dy, cache)
    reference_fns = {
        "plain ops": plain_bn,
        "F.batch_norm": lambda x, g, b, eps: F.batch_norm(x, None, None, g, b, True, 0.0, eps),
    }
    for name, fn in reference_fns.items():
        expected = autograd_grads(fn, x, gamma, beta, eps, dy)
        for got, want, what in zip(manual, expected, ("dx", "dgamma", "dbeta")):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-10, msg=f"{what} vs {name}")


def backward_without_dvar(dy, cache):
    """A *wrong* backward that forgets the dL/dsigma^2 path (only dx is affected)."""
    gamma = cache.gamma.reshape((1, -1) + (1,) * (dy.dim() - 2))
    dx_hat = dy * gamma
    dmean = (dx_hat * -cache.inv_std).sum(cache.dims, keepdim=True)
    return dx_hat * cache.inv_std + dmean / cache.m


@pytest.mark.parametrize("shape", [(16, 4), (4, 4, 3, 3)])
def test_all_ones_upstream_gradient_hides_bugs(shape):
    x = torch.randn(shape, dtype=torch.float64) * 3 + 2
    gamma, beta = random_params(shape[1])
    _, cache = batch_norm_forward(x, gamma, beta, 1e-5)

    # dy = ones (the gradient of y.sum()): the true dx and dgamma are ~0 ...
    ones = torch.ones(shape, dtype=torch.float64)
    dx, dgamma, _ = batch_norm_backward(ones, cache)
    assert dx.abs().max() < 1e-10
    assert dgamma.abs().max() < 1e-10
    # ... and so is the buggy one: the check passes although the backward is wrong.
    torch.testing.assert_close(backward_without_dvar(ones, cache), dx, rtol=0, atol=1e-10)

    # A random dy exposes the bug.
    dy = torch.randn(shape, dtype=torch.float64)
    dx, _, _ = batch_norm_backward(dy, cache)
    assert (backward_without_dvar(dy, cache) - dx).abs().max() > 1e-2


@pytest.mark.parametrize("shape", [(4, 3), (2, 3), (3, 2, 2, 3)])
@pytest.mark.parametrize("eps", [1e-5, 0.1])
def test_gradcheck_autograd_function(shape, eps):
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    gamma, beta = (t.requires_grad_() for t in random_params(shape[1]))

    def y_only(x, gamma, beta):
        return BatchNormFunction.apply(x, gamma, beta, eps)[0]

    assert torch.autograd.gradcheck(y_only, (x, gamma, beta))


def test_function_returns_batch_stats_without_grad():
    x = torch.randn(6, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    gamma, beta = random_params(3)
    _, mean, var = BatchNormFunction.apply(x, gamma, beta, 1e-5)
    torch.testing.assert_close(mean, x.mean((0, 2, 3)))
    torch.testing.assert_close(var, x.var((0, 2, 3), unbiased=False))
    assert not mean.requires_grad and not var.requires_grad


def test_function_skips_grads_not_needed():
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    gamma = torch.ones(3, dtype=torch.float64)
    beta = torch.zeros(3, dtype=torch.float64)
    y, _, _ = BatchNormFunction.apply(x, gamma, beta, 1e-5)
    y.backward(torch.randn_like(y))
    assert x.grad is not None and gamma.grad is None and beta.grad is None


def test_module_uses_manual_backward(monkeypatch):
    calls = []

    def spy(dy, cache):
        calls.append(dy.shape)
        return batch_norm_backward(dy, cache)

    monkeypatch.setattr(norms, "batch_norm_backward", spy)
    x = torch.randn(4, 3, requires_grad=True)
    BatchNorm(3)(x).sum().backward()
    assert calls == [torch.Size([4, 3])]


# --------------------------------------------------------------------------- module vs torch


def make_pair(shape, dtype, **kwargs):
    """Our BatchNorm and torch's, with the same random affine parameters."""
    c = shape[1]
    ours = BatchNorm(c, **kwargs).to(dtype)
    theirs = (nn.BatchNorm1d if len(shape) == 2 else nn.BatchNorm2d)(c, **kwargs).to(dtype)
    if ours.affine:
        gamma, beta = random_params(c, dtype)
        for module in (ours, theirs):
            with torch.no_grad():
                module.weight.copy_(gamma)
                module.bias.copy_(beta)
    return ours, theirs


def step(module, x, dy, lr=0.1):
    """Forward + backward of sum(y * dy) + one SGD step; returns (y, dx, dweight, dbias)."""
    x = x.clone().requires_grad_()
    y = module(x)
    (y * dy).sum().backward()
    grads = [None, None]
    if module.affine:
        grads = [module.weight.grad.clone(), module.bias.grad.clone()]
        with torch.no_grad():
            for p in module.parameters():
                p -= lr * p.grad
                p.grad = None
    return y.detach(), x.grad, *grads


def assert_same_state(ours, theirs, atol):
    for name in ("running_mean", "running_var", "weight", "bias"):
        a, b = getattr(ours, name), getattr(theirs, name)
        if b is None:
            assert a is None
        else:
            torch.testing.assert_close(a, b, rtol=0, atol=atol, msg=name)
    assert ours.num_batches_tracked.item() == theirs.num_batches_tracked.item()


MODULE_CASES = [
    ((8, 4), torch.float64, {}, 1e-10),
    ((2, 3, 3, 5), torch.float64, {}, 1e-10),
    ((8, 4), torch.float64, {"momentum": None}, 1e-10),
    ((4, 3, 5, 5), torch.float64, {"momentum": None, "eps": 1e-3}, 1e-10),
    ((6, 4), torch.float64, {"affine": False}, 1e-10),
    ((3, 2, 4, 4), torch.float64, {"affine": False, "momentum": 0.3}, 1e-10),
    ((16, 4), torch.float32, {}, 1e-5),
    ((4, 3, 6, 6), torch.float32, {"eps": 0.1}, 1e-5),
]


@pytest.mark.parametrize("shape,dtype,kwargs,atol", MODULE_CASES)
def test_module_matches_torch_train_then_eval(shape, dtype, kwargs, atol):
    ours, theirs = make_pair(shape, dtype, **kwargs)
    for training, n_steps in ((True, 5), (False, 2)):
        ours.train(training)
        theirs.train(training)
        for _ in range(n_steps):
            x = torch.randn(shape, dtype=dtype) * 2 + 0.5
            dy = torch.randn(shape, dtype=dtype)
            for got, want in zip(step(ours, x, dy), step(theirs, x, dy)):
                if want is None:
                    assert got is None
                else:
                    torch.testing.assert_close(got, want, rtol=0, atol=atol)
            assert_same_state(ours, theirs, atol)
    assert ours.num_batches_tracked.item() == 5


def test_state_dict_loads_both_ways():
    for shape, torch_cls in (((8, 4), nn.BatchNorm1d), ((4, 4, 3, 3), nn.BatchNorm2d)):
        trained = torch_cls(4)
        with torch.no_grad():
            trained.weight.uniform_(0.5, 1.5)
            trained.bias.normal_()
        for _ in range(3):
            trained(torch.randn(shape) * 3 + 1)
        trained.eval()
        x = torch.randn(shape)

        ours = BatchNorm(4).eval()
        assert list(ours.state_dict()) == list(trained.state_dict())
        ours.load_state_dict(trained.state_dict())
        torch.testing.assert_close(ours(x), trained(x))

        fresh_torch = torch_cls(4).eval()
        fresh_torch.load_state_dict(ours.state_dict())
        torch.testing.assert_close(fresh_torch(x), trained(x))
        assert fresh_torch.num_batches_tracked.item() == 3

    no_affine = BatchNorm(4, affine=False).state_dict()
    assert list(no_affine) == list(nn.BatchNorm1d(4, affine=False).state_dict())


def test_module_defaults_and_repr():
    bn = BatchNorm(4)
    assert torch.equal(bn.weight, torch.ones(4)) and torch.equal(bn.bias, torch.zeros(4))
    assert torch.equal(bn.running_mean, torch.zeros(4))
    assert torch.equal(bn.running_var, torch.ones(4))
    assert bn.num_batches_tracked.dtype == torch.long and bn.num_batches_tracked.item() == 0
    assert repr(bn) == "BatchNorm(4, eps=1e-05, momentum=0.1, affine=True)"
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    no_affine = BatchNorm(4, affine=False)
    assert no_affine.weight is None and no_affine.bias is None
    assert list(no_affine.parameters()) == []


# --------------------------------------------------------------------------- errors


def test_rejects_3d_input():
    with pytest.raises(ValueError, match=r"\(N, C\).*\(N, C, H, W\).*\(4, 3, 5\)"):
        BatchNorm(3)(torch.randn(4, 3, 5))
    with pytest.raises(ValueError, match="3-D"):
        batch_norm_forward(torch.randn(4, 3, 5), torch.ones(3), torch.zeros(3))


def test_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match=r"expected 3 channels.*\(4, 5\)"):
        BatchNorm(3)(torch.randn(4, 5))
    with pytest.raises(ValueError, match="expected 3 channels"):
        BatchNorm(3).eval()(torch.randn(4, 5, 2, 2))


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1, 1)])
def test_one_value_per_channel_in_training(shape):
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm(3)(torch.randn(shape))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        TorchBatchNorm(3)(torch.randn(shape))
    assert BatchNorm(3).eval()(torch.randn(shape)).shape == shape  # fine in eval


def test_unknown_kind_lists_valid_kinds():
    with pytest.raises(ValueError) as info:
        norm_layer("xyz", 4)
    assert str(info.value) == (
        "unknown norm kind 'xyz'; valid kinds: none, bn, torch_bn, rigid, rigid_clip, kl_bn, kl_only, "
        "noisy_bn, l1, l2, linf, ghost_bn, batch_renorm, ln, in, gn"
    )


# --------------------------------------------------------------------------- registry


def test_norm_layer_kinds():
    assert isinstance(norm_layer("none", 4, eps=1e-3), nn.Identity)
    bn = norm_layer("bn", 4, eps=1e-3, momentum=None)
    assert isinstance(bn, BatchNorm) and bn.eps == 1e-3 and bn.momentum is None
    tbn = norm_layer("torch_bn", 4, affine=False)
    assert isinstance(tbn, TorchBatchNorm) and isinstance(tbn, nn.modules.batchnorm._BatchNorm)
    assert tbn.weight is None
    assert set(NORM_KINDS) >= {"none", "bn", "torch_bn"}


def test_torch_bn_accepts_2d_and_4d_only():
    tbn = norm_layer("torch_bn", 3)
    for shape, torch_cls in (((8, 3), nn.BatchNorm1d), ((4, 3, 2, 2), nn.BatchNorm2d)):
        x = torch.randn(shape)
        torch.testing.assert_close(tbn(x), torch_cls(3)(x))
    assert tbn.num_batches_tracked.item() == 2
    with pytest.raises(ValueError, match=r"\(8, 3, 5\)"):
        tbn(torch.randn(8, 3, 5))


# --------------------------------------------------------------------------- standalone file


def test_imports_only_torch_and_stdlib():
    tree = ast.parse(NORMS_PY.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            imported.add(node.module.split(".")[0])
    assert imported <= {"torch"} | set(sys.stdlib_module_names), imported
    assert "torch" in imported


STANDALONE_SCRIPT = """
import torch, norms
bn = norms.BatchNorm(4)
x = torch.randn(8, 4, 3, 3, requires_grad=True)
(bn(x) * torch.randn(8, 4, 3, 3)).sum().backward()
print("file", norms.__file__)
print("ok", tuple(x.grad.shape), int(bn.num_batches_tracked), bn.weight.grad is not None)
"""


def test_standalone_copy_runs(tmp_path):
    shutil.copy(NORMS_PY, tmp_path / "norms.py")
    result = subprocess.run(
        [sys.executable, "-c", STANDALONE_SCRIPT],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"file {tmp_path / 'norms.py'}" in result.stdout
    assert "ok (8, 4, 3, 3) 1 True" in result.stdout


# --------------------------------------------------------------------------- RigidBatchNorm, KLBatchNorm

import copy  # noqa: E402

from torch.distributions import Normal, kl_divergence  # noqa: E402

from bnlib.norms import KLBatchNorm, RigidBatchNorm, model_penalty  # noqa: E402


def copy_affine(src: nn.Module, *dsts: nn.Module) -> None:
    """Give ``dsts`` the weight and bias of ``src``."""
    for dst in dsts:
        dst.load_state_dict(src.state_dict())


def random_affine(layer: nn.Module) -> nn.Module:
    """Give ``layer`` a random gamma in [0.5, 1.5] and a standard-normal beta; returns it."""
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.normal_()
    return layer


@pytest.mark.parametrize("recompute", ["mean", "mean_var"])
@pytest.mark.parametrize("shape", [(16, 3), (4, 3, 5, 5)])
def test_rigid_without_outliers_equals_batch_norm(recompute, shape):
    ref = random_affine(BatchNorm(3).double())
    rigid = RigidBatchNorm(3, bound=50.0, recompute=recompute).double()
    copy_affine(ref, rigid)
    for _ in range(4):
        x = torch.randn(shape, dtype=torch.float64) * 2 + 1
        torch.testing.assert_close(rigid(x), ref(x), rtol=0, atol=1e-5)
        assert rigid.last_outlier_fraction.item() == 0
        assert rigid.last_mean_shift.item() < 1e-12
        assert rigid.penalty.item() == 0
    torch.testing.assert_close(rigid.running_mean, ref.running_mean, rtol=0, atol=1e-10)
    torch.testing.assert_close(rigid.running_var, ref.running_var, rtol=0, atol=1e-10)
    assert rigid.num_batches_tracked.item() == ref.num_batches_tracked.item() == 4
    rigid.eval()
    ref.eval()
    x = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(rigid(x), ref(x), rtol=0, atol=1e-5)


def planted_outlier_batch() -> torch.Tensor:
    """(32, 2): channel 0 has one value 1000 among randn values, channel 1 has none."""
    x = torch.randn(32, 2, dtype=torch.float64)
    x[5, 0] = 1000.0
    return x


@pytest.mark.parametrize("recompute", ["mean", "mean_var"])
def test_rigid_excludes_planted_outlier_from_mean(recompute):
    x = planted_outlier_batch()
    rigid = RigidBatchNorm(2, bound=3.0, recompute=recompute, momentum=1.0).double()
    y = rigid(x)
    others = torch.cat([x[:5, 0], x[6:, 0]])
    assert abs(rigid.running_mean[0].item() - others.mean().item()) < 1e-12
    assert abs(rigid.running_mean[1].item() - x[:, 1].mean().item()) < 1e-12
    assert abs(x[:, 0].mean().item() - others.mean().item()) > 10  # plain BN's mean would be far off
    # the inliers of channel 0 are centred on their own mean
    assert abs(torch.cat([y[:5, 0], y[6:, 0]]).mean().item()) < 1e-12
    assert rigid.last_outlier_fraction.item() == pytest.approx(1 / 64, abs=1e-12)
    std = torch.sqrt(x.var(0, unbiased=False) + 1e-5)
    shift = ((x[:, 0].mean() - others.mean()).abs() / std[0]).item() / 2  # channel 1: 0
    assert rigid.last_mean_shift.item() == pytest.approx(shift, rel=1e-9)


def test_rigid_mean_keeps_batch_variance_mean_var_uses_inliers():
    x = planted_outlier_batch()
    others = torch.cat([x[:5, 0], x[6:, 0]])
    keep = RigidBatchNorm(2, recompute="mean", momentum=1.0).double()
    keep(x)
    # "mean": the whole-batch biased variance times m / (m - 1) = 32 / 31
    expected_keep = x.var(0, unbiased=False) * 32 / 31
    torch.testing.assert_close(keep.running_var, expected_keep, rtol=1e-12, atol=0)
    assert keep.running_var[0].item() > 1e4  # the outlier inflates it

    both = RigidBatchNorm(2, recompute="mean_var", momentum=1.0).double()
    y = both(x)
    # "mean_var": the 31 inliers' biased variance about their mean, times 31 / 30
    var_in = ((others - others.mean()) ** 2).sum() / 31
    assert both.running_var[0].item() == pytest.approx((var_in * 31 / 30).item(), rel=1e-12)
    assert both.running_var[1].item() == pytest.approx(x[:, 1].var().item(), rel=1e-12)
    # and the inliers are normalized to unit (biased) variance
    inliers_y = torch.cat([y[:5, 0], y[6:, 0]])
    assert inliers_y.var(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)


def test_rigid_momentum_none_is_cumulative_average():
    rigid = RigidBatchNorm(2, recompute="mean_var", momentum=None).double()
    batches = [planted_outlier_batch() for _ in range(3)]
    means = []
    for x in batches:
        rigid(x)
        with torch.no_grad():
            probe = RigidBatchNorm(2, recompute="mean_var", momentum=1.0).double()
            probe(x)
            means.append(probe.running_mean.clone())
    torch.testing.assert_close(rigid.running_mean, torch.stack(means).mean(0), rtol=0, atol=1e-12)


def test_rigid_clip_and_penalty():
    x = planted_outlier_batch().requires_grad_()
    clipped = RigidBatchNorm(2, bound=2.0, clip=True).double()
    y = clipped(x)
    assert y.abs().max().item() <= 2.0 + 1e-12
    assert y[5, 0].item() == pytest.approx(2.0, abs=1e-12)  # the outlier sits on the bound
    unclipped = RigidBatchNorm(2, bound=2.0).double()
    y_free = unclipped(x)
    assert y_free[5, 0].item() > 5.0  # it would be far beyond without the clip
    # the penalty is computed before the clip: the same for both
    assert clipped.penalty.item() > 0
    assert clipped.penalty.item() == pytest.approx(unclipped.penalty.item(), rel=1e-12)
    x_hat = y_free.detach()  # gamma = 1, beta = 0
    expected = torch.relu(x_hat.abs() - 2.0).square().mean()
    assert clipped.penalty.item() == pytest.approx(expected.item(), rel=1e-12)
    clipped.penalty.backward()
    assert x.grad is not None and x.grad.abs().max().item() > 0
    assert clipped.weight.grad is None  # the penalty does not depend on gamma, beta

    calm = RigidBatchNorm(2, bound=50.0, clip=True).double()
    z = torch.randn(32, 2, dtype=torch.float64)
    torch.testing.assert_close(calm(z), F.batch_norm(z, None, None, training=True), rtol=0, atol=1e-10)
    assert calm.penalty.item() == 0.0


def test_rigid_eval_uses_running_stats_and_clips():
    rigid = RigidBatchNorm(2, bound=1.0, clip=True, momentum=1.0).double()
    with torch.no_grad():
        rigid.weight.copy_(torch.tensor([2.0, 0.5]))
        rigid.bias.copy_(torch.tensor([1.0, -1.0]))
    rigid(torch.randn(64, 2, dtype=torch.float64))
    rigid.eval()
    x = torch.randn(10, 2, dtype=torch.float64) * 3
    x_hat = (x - rigid.running_mean) / torch.sqrt(rigid.running_var + rigid.eps)
    expected = x_hat.clamp(-1, 1) * rigid.weight + rigid.bias
    torch.testing.assert_close(rigid(x), expected, rtol=0, atol=1e-12)
    assert rigid.penalty.item() == 0.0 and not rigid.penalty.requires_grad


def test_rigid_half_precision_and_no_inliers_fallback():
    y = RigidBatchNorm(3)(torch.randn(8, 3, 2, 2, dtype=torch.bfloat16))
    assert y.dtype == torch.float32
    # m = 2: every |z| is ~1, so bound=0.5 leaves no inliers -> all values are used (plain BN)
    x = torch.tensor([[0.0, 5.0], [2.0, -1.0]], dtype=torch.float64)
    rigid = RigidBatchNorm(2, bound=0.5, recompute="mean_var").double()
    torch.testing.assert_close(rigid(x), F.batch_norm(x, None, None, training=True), rtol=0, atol=1e-12)
    assert rigid.last_outlier_fraction.item() == 1.0


@pytest.mark.parametrize("shape", [(16, 3), (4, 3, 5, 5)])
def test_kl_correct_penalty_matches_torch_distributions(shape):
    scale = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64).reshape((1, 3) + (1,) * (len(shape) - 2))
    x = torch.randn(shape, dtype=torch.float64) * scale + 2
    bn = KLBatchNorm(3).double()
    bn(x)
    dims = reduction_dims(shape)
    mean, var = x.mean(dims), x.var(dims, unbiased=False)
    expected = kl_divergence(Normal(mean, torch.sqrt(var + 1e-5)), Normal(0.0, 1.0)).mean()
    assert abs(bn.penalty.item() - expected.item()) < 1e-6
    assert bn.penalty.item() > 1  # far from N(0, 1)


@pytest.mark.parametrize("shape", [(16, 3), (4, 3, 5, 5)])
def test_kl_original_penalty_is_the_literal_expression(shape):
    x = torch.randn(shape, dtype=torch.float64) * 2 - 0.5
    bn = KLBatchNorm(3, kl="original").double()
    bn(x)
    dims = reduction_dims(shape)
    mean, var, eps = x.mean(dims), x.var(dims, unbiased=False), 1e-5
    expected = (0.5 * torch.log(var + eps) + 0.5 * (1 + (1 - mean) ** 2) / (var + eps)).mean()
    assert abs(bn.penalty.item() - expected.item()) < 1e-12
    correct = KLBatchNorm(3).double()
    correct(x)
    assert abs(correct.penalty.item() - bn.penalty.item()) > 1e-3  # a different quantity


@pytest.mark.parametrize("shape", [(16, 3), (4, 3, 5, 5)])
def test_kl_normalize_output_equals_batch_norm(shape):
    ref = random_affine(BatchNorm(3).double())
    kl = KLBatchNorm(3, normalize=True).double()
    copy_affine(ref, kl)
    for _ in range(3):
        x = torch.randn(shape, dtype=torch.float64) * 3 + 1
        torch.testing.assert_close(kl(x), ref(x), rtol=0, atol=1e-10)
    torch.testing.assert_close(kl.running_mean, ref.running_mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(kl.running_var, ref.running_var, rtol=0, atol=1e-12)
    kl.eval()
    ref.eval()
    x = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(kl(x), ref(x), rtol=0, atol=1e-10)
    assert kl.penalty.item() == 0.0


@pytest.mark.parametrize("shape", [(16, 3), (4, 3, 5, 5)])
def test_kl_without_normalize_is_affine(shape):
    kl = KLBatchNorm(3, normalize=False).double()
    with torch.no_grad():
        kl.weight.copy_(torch.tensor([2.0, 0.5, -1.0]))
        kl.bias.copy_(torch.tensor([1.0, 0.0, 3.0]))
    cshape = (1, 3) + (1,) * (len(shape) - 2)
    x = torch.randn(shape, dtype=torch.float64) * 3 + 1
    expected = kl.weight.reshape(cshape) * x + kl.bias.reshape(cshape)
    torch.testing.assert_close(kl(x), expected, rtol=0, atol=1e-12)
    assert kl.penalty.item() > 0
    dims = reduction_dims(shape)
    torch.testing.assert_close(kl.running_mean, 0.1 * x.mean(dims), rtol=0, atol=1e-12)  # still tracked
    kl.eval()
    torch.testing.assert_close(kl(x), expected, rtol=0, atol=1e-12)
    assert kl.penalty.item() == 0.0


def test_kl_penalty_gradient_pulls_towards_standard_normal():
    x = (torch.randn(256, 2, dtype=torch.float64) * 3 + 2).requires_grad_()
    bn = KLBatchNorm(2, normalize=False).double()
    bn(x)
    before = bn.penalty.item()
    bn.penalty.backward()
    with torch.no_grad():
        bn(x - 0.5 * x.grad * x.shape[0])
    assert bn.penalty.item() < before


def test_model_penalty_sums_layers_and_is_zero_without_them():
    model = nn.Sequential(
        nn.Linear(4, 3), RigidBatchNorm(3, bound=0.5), nn.ReLU(), nn.Linear(3, 2), KLBatchNorm(2)
    ).double()
    x = torch.randn(16, 4, dtype=torch.float64) * 5
    model(x).sum()
    rigid, kl = model[1], model[4]
    assert rigid.penalty.item() > 0 and kl.penalty.item() > 0
    total = model_penalty(model)
    assert total.item() == pytest.approx(rigid.penalty.item() + kl.penalty.item(), rel=1e-12)
    total.backward()
    assert model[0].weight.grad.abs().max().item() > 0

    model.eval()
    model(x)
    assert model_penalty(model).item() == 0.0

    plain = nn.Sequential(nn.Linear(4, 3), BatchNorm(3))
    plain(torch.randn(8, 4))
    zero = model_penalty(plain)
    assert zero.shape == () and zero.item() == 0.0
    assert model_penalty(nn.ReLU()).item() == 0.0


def test_penalty_layers_deepcopy_after_training_forward():
    model = nn.Sequential(nn.Linear(4, 3), RigidBatchNorm(3), KLBatchNorm(3))
    model(torch.randn(8, 4))
    clone = copy.deepcopy(model)
    assert clone[1].penalty.item() == model[1].penalty.item()
    assert not clone[2].penalty.requires_grad and model[2].penalty.requires_grad


def test_penalty_layer_bad_arguments():
    with pytest.raises(ValueError, match=r"bound must be > 0, got 0.*outlier"):
        RigidBatchNorm(4, bound=0)
    with pytest.raises(ValueError, match=r"bound must be > 0, got -1"):
        RigidBatchNorm(4, bound=-1.0)
    with pytest.raises(ValueError, match=r"recompute must be one of 'mean', 'mean_var', got 'median'"):
        RigidBatchNorm(4, recompute="median")
    with pytest.raises(ValueError, match=r"kl must be one of 'correct', 'original', got 'forward'"):
        KLBatchNorm(4, kl="forward")
    assert list(RigidBatchNorm(4, affine=False).state_dict()) == list(
        nn.BatchNorm2d(4, affine=False).state_dict()
    )


def test_norm_layer_penalty_kinds():
    rigid = norm_layer("rigid", 8, bound=5)
    assert isinstance(rigid, RigidBatchNorm)
    assert (rigid.bound, rigid.recompute, rigid.clip) == (5.0, "mean", False)
    rigid_clip = norm_layer("rigid_clip", 8, recompute="mean_var")
    assert isinstance(rigid_clip, RigidBatchNorm) and rigid_clip.clip and rigid_clip.recompute == "mean_var"
    kl_bn = norm_layer("kl_bn", 8, momentum=None)
    assert isinstance(kl_bn, KLBatchNorm) and kl_bn.normalize and kl_bn.momentum is None
    kl_only = norm_layer("kl_only", 8, kl="original")
    assert isinstance(kl_only, KLBatchNorm) and not kl_only.normalize and kl_only.kl == "original"
    assert repr(rigid) == (
        "RigidBatchNorm(8, bound=5.0, recompute='mean', clip=False, eps=1e-05, momentum=0.1, affine=True)"
    )
    assert repr(kl_only) == (
        "KLBatchNorm(8, normalize=False, kl='original', eps=1e-05, momentum=0.1, affine=True)"
    )


# --------------------------------------------------------------------------- NoisyBatchNorm, LpBatchNorm

from bnlib.norms import LpBatchNorm, NoisyBatchNorm  # noqa: E402

NO_NOISE = dict(mean_range=0.0, std_range=(1.0, 1.0), mean_spread=0.0, std_spread=0.0)
INF = float("inf")


def test_noisy_bn_is_not_a_batch_norm_subclass():
    assert not isinstance(NoisyBatchNorm(3), BatchNorm)
    assert not isinstance(LpBatchNorm(3), BatchNorm)


@pytest.mark.parametrize("shape", [(16, 3), (4, 3, 5, 5)])
def test_noisy_without_noise_equals_batch_norm(shape):
    ref = random_affine(BatchNorm(3).double())
    noisy = NoisyBatchNorm(3, **NO_NOISE).double()
    copy_affine(ref, noisy)
    for _ in range(3):
        x = (torch.randn(shape, dtype=torch.float64) * 2 + 1).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        dy = torch.randn(shape, dtype=torch.float64)
        y_ref, y = ref(x), noisy(x2)
        torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
        (y_ref * dy).sum().backward()
        (y * dy).sum().backward()
        torch.testing.assert_close(x2.grad, x.grad, rtol=0, atol=0)
        torch.testing.assert_close(noisy.weight.grad, ref.weight.grad, rtol=0, atol=0)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(noisy, name), getattr(ref, name), rtol=0, atol=0)
    assert int(noisy.num_batches_tracked) == 3
    x = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(noisy.eval()(x), ref.eval()(x), rtol=0, atol=0)


def test_noisy_noise_statistics_follow_the_sampling_scheme():
    n, c = 4096, 64
    x = torch.randn(n, c) * 3 + 2
    noisy = NoisyBatchNorm(c)  # gamma = 1, beta = 0, default ranges
    a = noisy(x)
    m, s = noisy.last_noise
    assert m.shape == s.shape == (n, c)
    assert not m.requires_grad and not s.requires_grad
    # the output is s * y + m with y the plain batch norm output
    torch.testing.assert_close(a, s * BatchNorm(c)(x) + m, rtol=1e-6, atol=1e-6)
    mu_hat, sigma_hat = m.mean(0), s.mean(0)  # estimates of mu_i, sigma_i
    assert mu_hat.min() >= -0.6 and mu_hat.max() <= 0.6
    assert sigma_hat.min() >= 1.0 - 0.3 and sigma_hat.max() <= 1.25 + 0.3
    # mu_i, sigma_i are per channel and span their ranges over 64 channels
    assert mu_hat.min() < -0.3 and mu_hat.max() > 0.3
    assert sigma_hat.min() < 1.05 and sigma_hat.max() > 1.2
    # per example: m_ij uniform of half-width 0.1 around mu_i, s_ij normal of std 0.1 around sigma_i
    width = m.max(0).values - m.min(0).values
    assert width.max() <= 0.2 + 1e-6 and width.min() > 0.19
    torch.testing.assert_close(m.std(0), torch.full((c,), 0.1 / 3**0.5), rtol=0.06, atol=0)
    torch.testing.assert_close(s.std(0), torch.full((c,), 0.1), rtol=0.06, atol=0)
    # the per-example noise is independent of x: m's deviations are not correlated with y
    assert (m - mu_hat).mul(BatchNorm(c)(x)).mean().abs() < 0.01


def test_noisy_output_is_resampled_each_call_and_seed_reproducible():
    x = torch.randn(32, 4)
    noisy = NoisyBatchNorm(4)
    y1 = noisy(x)
    m1, s1 = noisy.last_noise
    y2 = noisy(x)
    m2, s2 = noisy.last_noise
    assert (y1 - y2).abs().max() > 0.05  # same input, same batch statistics, new noise
    assert (m1 - m2).abs().max() > 0.05 and (s1 - s2).abs().max() > 0.05
    torch.testing.assert_close((y1 - m1) / s1, (y2 - m2) / s2, rtol=1e-5, atol=1e-5)  # same BN output
    torch.manual_seed(123)
    a = NoisyBatchNorm(4)(x)
    torch.manual_seed(123)
    b = NoisyBatchNorm(4)(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_noisy_per_channel_4d_noise_is_constant_over_spatial_positions():
    x = torch.randn(8, 3, 5, 4, dtype=torch.float64) * 2 - 1
    noisy = random_affine(NoisyBatchNorm(3, per="channel").double())
    ref = BatchNorm(3).double()
    copy_affine(noisy, ref)
    a = noisy(x)
    m, s = noisy.last_noise
    assert m.shape == s.shape == (8, 3, 1, 1)
    y = ref(x)
    torch.testing.assert_close(a, s * y + m, rtol=0, atol=1e-12)
    # by construction: within (j, i), a is an affine map of y with the same slope at every position
    slope = (a - a.mean((2, 3), keepdim=True)) / (y - y.mean((2, 3), keepdim=True))
    torch.testing.assert_close(slope, s.expand_as(slope), rtol=1e-9, atol=1e-9)


def test_noisy_eval_has_no_noise_and_uses_running_stats():
    noisy = random_affine(NoisyBatchNorm(3, mean_range=2.0, std_range=(1.5, 3.0)))
    for _ in range(4):
        noisy(torch.randn(16, 3, 2, 2) * 4 + 3)
    ref = BatchNorm(3)
    ref.load_state_dict(noisy.state_dict())
    noisy.eval()
    x = torch.randn(16, 3, 2, 2)
    torch.testing.assert_close(noisy(x), ref.eval()(x), rtol=0, atol=0)
    torch.testing.assert_close(noisy(x), noisy(x), rtol=0, atol=0)
    assert int(noisy.num_batches_tracked) == 4


def test_noisy_gradients_flow_and_noise_is_a_constant():
    x = (torch.randn(6, 3, 2, 2, dtype=torch.float64) + 1).requires_grad_()
    dy = torch.randn(6, 3, 2, 2, dtype=torch.float64)
    noisy = random_affine(NoisyBatchNorm(3).double())
    (noisy(x) * dy).sum().backward()
    m, s = noisy.last_noise
    assert m.grad_fn is None and s.grad_fn is None and not m.requires_grad
    # same gradients as s * BN(x) + m with (m, s) held fixed
    ref = BatchNorm(3).double()
    copy_affine(noisy, ref)
    x_ref = x.detach().clone().requires_grad_()
    ((s * ref(x_ref) + m) * dy).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(noisy.weight.grad, ref.weight.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(noisy.bias.grad, ref.bias.grad, rtol=1e-10, atol=1e-12)
    # and they are not the plain BN gradients (the noise scales them)
    torch.testing.assert_close(noisy.bias.grad, (dy * s).sum((0, 2, 3)), rtol=1e-10, atol=1e-12)
    assert (noisy.bias.grad - dy.sum((0, 2, 3))).abs().max() > 1e-3


def test_noisy_half_precision_input():
    y = NoisyBatchNorm(3)(torch.randn(8, 3, dtype=torch.bfloat16))
    assert y.dtype == torch.float32 and NoisyBatchNorm(3).last_noise is None


def lp_reference(x: torch.Tensor, p: float, gamma, beta, eps: float):
    """Per-channel mean and l_p distance by a plain loop, and the normalized output."""
    c = x.shape[1]
    xc = x.transpose(0, 1).reshape(c, -1)
    mu = torch.stack([row.mean() for row in xc])
    dev = [(row - row.mean()).abs() for row in xc]
    if p == 1:
        d = torch.stack([v.sum() / v.numel() for v in dev])
    elif p == 2:
        d = torch.stack([torch.sqrt((v * v).sum() / v.numel()) for v in dev])
    else:
        d = torch.stack([v.max() for v in dev])
    shape = (1, c) + (1,) * (x.dim() - 2)
    y = gamma.reshape(shape) * (x - mu.reshape(shape)) / (d.reshape(shape) + eps) + beta.reshape(shape)
    return mu, d, y


@pytest.mark.parametrize("p", [1, 2, INF])
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 3, 2)])
@pytest.mark.parametrize("eps", [1e-5, 0.1])
def test_lp_matches_hand_computation(p, shape, eps):
    x = torch.randn(shape, dtype=torch.float64) * 3 + 1
    lp = random_affine(LpBatchNorm(3, p=p, eps=eps).double())
    y = lp(x)
    mu, d, y_ref = lp_reference(x, p, lp.weight.detach(), lp.bias.detach(), eps)
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12)
    # running stats: momentum 0.1 from (0, 1); d**2 without Bessel correction
    torch.testing.assert_close(lp.running_mean, 0.1 * mu, rtol=0, atol=1e-12)
    torch.testing.assert_close(lp.running_var, 0.9 + 0.1 * d**2, rtol=0, atol=1e-12)
    # eval: (x - running_mean) / (sqrt(running_var) + eps)
    x2 = torch.randn(shape, dtype=torch.float64)
    rm, rd = 0.1 * mu, torch.sqrt(0.9 + 0.1 * d**2)
    cs = (1, 3) + (1,) * (len(shape) - 2)
    want = lp.weight.detach().reshape(cs) * (x2 - rm.reshape(cs)) / (rd.reshape(cs) + eps) + lp.bias.detach().reshape(cs)
    torch.testing.assert_close(lp.eval()(x2), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(64, 4), (8, 4, 3, 3)])
def test_lp_normalized_values_have_unit_lp_size(shape):
    eps = 1e-5
    x = torch.randn(shape, dtype=torch.float64) * 5 - 2
    dims = reduction_dims(shape)
    for p, size in (
        (1, lambda v: v.abs().mean(dims)),
        (2, lambda v: v.square().mean(dims).sqrt()),
        (INF, lambda v: v.abs().amax(dims)),
    ):
        lp = LpBatchNorm(4, p=p, eps=eps, affine=False, momentum=1.0).double()
        x_hat = lp(x).detach()
        d = torch.sqrt(lp.running_var)  # momentum 1: the batch's d
        torch.testing.assert_close(size(x_hat), d / (d + eps), rtol=0, atol=1e-6)
        torch.testing.assert_close(size(x_hat), torch.ones(4, dtype=torch.float64), rtol=0, atol=1e-4)
        torch.testing.assert_close(x_hat.mean(dims), torch.zeros(4, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("p", [1, 2, INF])
def test_lp_eval_with_momentum_one_equals_train_output(p):
    x = torch.randn(10, 3, 2, 2, dtype=torch.float64) * 2 + 5
    lp = random_affine(LpBatchNorm(3, p=p, momentum=1.0).double())
    y_train = lp(x)
    torch.testing.assert_close(lp.eval()(x), y_train, rtol=0, atol=1e-12)
    assert int(lp.num_batches_tracked) == 1


def test_lp_p2_is_batch_norm_up_to_eps_and_bessel():
    x = torch.randn(12, 3, 2, 2, dtype=torch.float64) * 3 + 2
    lp = random_affine(LpBatchNorm(3, p=2, eps=1e-10, momentum=1.0).double())
    bn = BatchNorm(3, eps=1e-10, momentum=1.0).double()
    copy_affine(lp, bn)
    torch.testing.assert_close(lp(x), bn(x), rtol=0, atol=1e-9)
    m = 12 * 4
    torch.testing.assert_close(lp.running_var * m / (m - 1), bn.running_var, rtol=1e-12, atol=0)
    torch.testing.assert_close(lp.running_mean, bn.running_mean, rtol=0, atol=1e-12)
    # with a large eps the two differ: d + eps vs sqrt(var + eps)
    lp_big, bn_big = LpBatchNorm(3, p=2, eps=0.5).double(), BatchNorm(3, eps=0.5).double()
    assert (lp_big(x) - bn_big(x)).abs().max() > 1e-3


def test_lp_momentum_none_is_cumulative_average():
    lp = LpBatchNorm(2, p=1, momentum=None).double()
    xs = [torch.randn(8, 2, dtype=torch.float64) * (k + 1) for k in range(3)]
    ds = []
    for x in xs:
        lp(x)
        ds.append((x - x.mean(0)).abs().mean(0))
    torch.testing.assert_close(lp.running_var, torch.stack(ds).square().mean(0), rtol=0, atol=1e-12)
    torch.testing.assert_close(lp.running_mean, torch.stack([x.mean(0) for x in xs]).mean(0), rtol=0, atol=1e-12)


@pytest.mark.parametrize("p", [1, 2, INF])
def test_lp_gradients(p):
    lp = random_affine(LpBatchNorm(2, p=p, eps=1e-3).double())
    x = torch.randn(5, 2, 2, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: lp(t), (x,))
    # a constant channel: d = 0 gets a zero (not nan) gradient, so dx = (dy - mean dy) / eps
    xc = torch.randn(6, 2, dtype=torch.float64)
    xc[:, 1] = 3.0
    xc.requires_grad_()
    lp2 = LpBatchNorm(2, p=p, eps=1e-3).double()
    dy = torch.randn(6, 2, dtype=torch.float64)
    (lp2(xc) * dy).sum().backward()
    assert torch.isfinite(xc.grad).all()
    torch.testing.assert_close(xc.grad[:, 1], (dy[:, 1] - dy[:, 1].mean()) / 1e-3, rtol=1e-12, atol=1e-9)


def test_lp_accepts_p_spellings_and_half_precision():
    assert LpBatchNorm(3, p="inf").p == INF and LpBatchNorm(3, p=1.0).p == 1.0 and LpBatchNorm(3).p == 2.0
    assert repr(LpBatchNorm(3, p=1)) == "LpBatchNorm(3, p=1, eps=1e-05, momentum=0.1, affine=True)"
    assert LpBatchNorm(3, p=INF)(torch.randn(8, 3, dtype=torch.bfloat16)).dtype == torch.float32


def test_noisy_and_lp_bad_arguments():
    for bad in (3, 0, "two", "l1", None, True):
        with pytest.raises(ValueError, match=r"p must be one of 1, 2, float\('inf'\) \(or 'inf'\), got "):
            LpBatchNorm(4, p=bad)
    with pytest.raises(ValueError, match=r"got 3: the norm"):
        LpBatchNorm(4, p=3)
    with pytest.raises(ValueError, match=r"mean_range must be >= 0, got -1.*mean_range=0.5"):
        NoisyBatchNorm(4, mean_range=-1)
    with pytest.raises(
        ValueError, match=r"std_range must satisfy 0 < std_range\[0\] <= std_range\[1\], got \(1.25, 1.0\)"
    ):
        NoisyBatchNorm(4, std_range=(1.25, 1.0))
    with pytest.raises(ValueError, match=r"std_range must satisfy .*got \(0.0, 1.0\)"):
        NoisyBatchNorm(4, std_range=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"std_range must be a pair \(low, high\) of numbers, got 1.0"):
        NoisyBatchNorm(4, std_range=1.0)
    with pytest.raises(ValueError, match=r"std_range must be a pair .*got \(1.0, 1.1, 1.2\)"):
        NoisyBatchNorm(4, std_range=(1.0, 1.1, 1.2))
    with pytest.raises(ValueError, match=r"mean_spread must be >= 0, got -0.1"):
        NoisyBatchNorm(4, mean_spread=-0.1)
    with pytest.raises(ValueError, match=r"std_spread must be >= 0, got -1"):
        NoisyBatchNorm(4, std_spread=-1)
    for cls in (NoisyBatchNorm, LpBatchNorm):
        assert list(cls(4, affine=False).state_dict()) == list(nn.BatchNorm2d(4, affine=False).state_dict())


def test_norm_layer_noisy_and_lp_kinds():
    noisy = norm_layer("noisy_bn", 4, mean_range=1.0)
    assert isinstance(noisy, NoisyBatchNorm) and not isinstance(noisy, BatchNorm)
    assert (noisy.mean_range, noisy.std_range, noisy.mean_spread, noisy.std_spread) == (1.0, (1.0, 1.25), 0.1, 0.1)
    for kind, p in (("l1", 1.0), ("l2", 2.0), ("linf", INF)):
        lp = norm_layer(kind, 4, eps=1e-3, momentum=None)
        assert isinstance(lp, LpBatchNorm) and lp.p == p and lp.eps == 1e-3 and lp.momentum is None
    assert repr(norm_layer("linf", 8)) == "LpBatchNorm(8, p=inf, eps=1e-05, momentum=0.1, affine=True)"
    assert repr(noisy) == (
        "NoisyBatchNorm(4, mean_range=1.0, std_range=(1.0, 1.25), mean_spread=0.1, std_spread=0.1, "
        "eps=1e-05, momentum=0.1, affine=True)"
    )


@pytest.mark.parametrize("kind, group_of", [("ln", lambda c: c), ("in", lambda c: 1), ("gn", lambda c: c // 8)])
def test_batch_independent_norms_normalize_their_groups_per_example(kind, group_of):
    torch.manual_seed(0)
    c = 64
    layer = norm_layer(kind, c)
    x = torch.randn(6, c, 5, 5) * 4 + 3
    y = layer(x)
    size = group_of(c)  # channels per group: ln all 64, in 1, gn gcd(64, 32) = 32 groups of 2
    groups = y.reshape(6, c // size, -1)
    assert groups.mean(-1).abs().max() < 1e-4
    assert (groups.var(-1, unbiased=False) - 1).abs().max() < 1e-2
    assert torch.allclose(layer(x[:1]), y[:1], atol=1e-6)  # an example's output does not depend on the rest of the batch
    layer.eval()
    assert torch.allclose(layer(x), y, atol=1e-6)  # and train and eval mode agree


VARIANT_LAYERS = [
    lambda n: RigidBatchNorm(n, clip=True), lambda n: KLBatchNorm(n, normalize=False), NoisyBatchNorm,
    lambda n: LpBatchNorm(n, p=1), lambda n: LpBatchNorm(n, p=INF),
    lambda n: GhostBatchNorm(n, virtual_batch=2), BatchRenorm,
]


@pytest.mark.parametrize("make", VARIANT_LAYERS)
def test_variant_layers_check_their_input_and_match_torchs_state_dict(make):
    layer = make(3)
    with pytest.raises(ValueError, match=r"\(4, 3, 5\)"):
        layer(torch.randn(4, 3, 5))
    with pytest.raises(ValueError, match="expected 3 channels"):
        layer(torch.randn(4, 5))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        layer(torch.randn(1, 3))
    assert list(make(4).state_dict()) == list(nn.BatchNorm2d(4).state_dict())


# --------------------------------------------------------------------------- constructor arguments

import re  # noqa: E402

from bnlib.lab.batched import BatchedBatchNorm  # noqa: E402

NAN = float("nan")
# name in the message -> factory (num_features, **kwargs): every layer with num_features, eps and momentum
MOMENTUM_LAYERS = {
    "BatchNorm": BatchNorm,
    "TorchBatchNorm": TorchBatchNorm,
    "RigidBatchNorm": RigidBatchNorm,
    "KLBatchNorm": KLBatchNorm,
    "NoisyBatchNorm": NoisyBatchNorm,
    "LpBatchNorm": LpBatchNorm,
    "GhostBatchNorm": GhostBatchNorm,
    "BatchRenorm": BatchRenorm,
    "BatchedBatchNorm": lambda n, **kw: BatchedBatchNorm(2, n, **kw),
}
BAD_LAYER_ARGS = [
    (dict(num_features=0), "num_features must be an integer >= 1, got 0"),
    (dict(num_features=2.5), "num_features must be an integer >= 1, got 2.5"),
    (dict(num_features=True), "num_features must be an integer >= 1, got True"),
    (dict(eps=-1), "eps must be a finite number > 0, got -1: "),
    (dict(eps=0.0), "eps must be a finite number > 0, got 0.0: "),
    (dict(eps=INF), "eps must be a finite number > 0, got inf: "),
    (dict(eps=NAN), "eps must be a finite number > 0, got nan: "),
    (dict(momentum=2), "momentum must be a number in [0, 1] or None (cumulative average), got 2: "),
    (dict(momentum=-0.1), "momentum must be a number in [0, 1] or None (cumulative average), got -0.1: "),
    (dict(momentum=NAN), "momentum must be a number in [0, 1] or None (cumulative average), got nan: "),
    (dict(momentum="0.1"), "momentum must be a number in [0, 1] or None (cumulative average), got '0.1': "),
]


@pytest.mark.parametrize("name", MOMENTUM_LAYERS)
@pytest.mark.parametrize("bad, message", BAD_LAYER_ARGS)
def test_layers_refuse_bad_constructor_arguments_by_name(name, bad, message):
    kwargs = {"num_features": 4, **bad}
    with pytest.raises(ValueError, match="^" + re.escape(f"{name}: {message}")):
        MOMENTUM_LAYERS[name](kwargs.pop("num_features"), **kwargs)


@pytest.mark.parametrize("name", MOMENTUM_LAYERS)
@pytest.mark.parametrize("momentum", [0.0, 1.0, None, 0.99, 0.01])
def test_layers_accept_every_momentum_in_the_unit_interval_and_none(name, momentum):
    layer = MOMENTUM_LAYERS[name](4, eps=1e-10, momentum=momentum)
    assert layer.momentum == momentum and layer.eps == 1e-10


@pytest.mark.parametrize(
    "kind, kwargs, message",
    [("gn", dict(num_features=0), "group_norm: num_features must be an integer >= 1, got 0"),
     ("ln", dict(num_features=0), "group_norm: num_features must be an integer >= 1, got 0"),
     ("gn", dict(num_features=12, num_groups=0), "group_norm: num_groups must be an integer >= 1, got 0"),
     ("gn", dict(num_features=12, num_groups=2.5), "group_norm: num_groups must be an integer >= 1, got 2.5"),
     ("gn", dict(num_features=12, num_groups=5), "group_norm: num_groups must divide num_features=12, got 5"),
     ("ln", dict(num_features=4, eps=0), "group_norm: eps must be a finite number > 0, got 0: "),
     ("in", dict(num_features=4, eps=-1e-5), "group_norm: eps must be a finite number > 0, got -1e-05: "),
     ("bn", dict(num_features=0), "BatchNorm: num_features must be an integer >= 1, got 0")],
)
def test_norm_layer_kinds_refuse_bad_arguments_by_name(kind, kwargs, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        norm_layer(kind, kwargs.pop("num_features"), **kwargs)


def test_torch_batch_norm_keeps_torch_keywords_for_run_norm_args():
    import inspect

    from bnlib.norms import TorchBatchNorm

    assert {"affine", "track_running_stats"} <= set(inspect.signature(TorchBatchNorm).parameters)  # Run.norm_args reads it
    assert TorchBatchNorm(3, affine=False).weight is None


@pytest.mark.parametrize("kind", ["bn", "torch_bn", "rigid", "kl_bn", "noisy_bn", "l1", "linf"])
def test_every_batch_norm_kind_is_one_and_refuses_batches_of_one(kind):
    from bnlib.models import build_model
    from bnlib.norms import is_batch_norm, norm_layer
    from bnlib.train import check_batch_size

    assert is_batch_norm(norm_layer(kind, 4))
    with pytest.raises(ValueError, match="batch_size=1 with batch normalization"):
        check_batch_size(build_model("small_cnn", norm=kind), 1)


def test_is_batch_norm_plain_means_folding_and_recomputing_apply():
    from bnlib.distributed import CrossProcessBatchNorm
    from bnlib.lab.batched import BatchedBatchNorm
    from bnlib.norms import is_batch_norm, norm_layer

    assert [is_batch_norm(m) for m in (BatchedBatchNorm(2, 3), CrossProcessBatchNorm(3), norm_layer("gn", 4),
                                       torch.nn.Identity())] == [True, True, False, False]
    plain = {kind: is_batch_norm(norm_layer(kind, 4), plain=True) for kind in ("bn", "torch_bn", "rigid", "l2", "ln")}
    assert plain == {"bn": True, "torch_bn": True, "rigid": False, "l2": False, "ln": False}
    assert not is_batch_norm(torch.nn.BatchNorm1d(3, track_running_stats=False), plain=True)


# --------------------------------------------------------------------------- ghost batch norm and batch renormalization


def bn_outputs_and_grads(layer, x, upstream):
    """The layer's training output and the gradients of <output, upstream> w.r.t. x, gamma and beta."""
    x = x.clone().requires_grad_(True)
    y = layer(x)
    dx, dg, db = torch.autograd.grad((y * upstream).sum(), (x, layer.weight, layer.bias))
    return y.detach(), dx, dg, db


@pytest.mark.parametrize("shape, virtual_batch", [((16, 3), 4), ((10, 3), 4), ((12, 2, 3, 3), 5), ((9, 4), 2)])
def test_ghost_bn_equals_functional_batch_norm_per_chunk(shape, virtual_batch):
    x, up = torch.randn(shape, dtype=torch.float64) * 3 + 1, torch.randn(shape, dtype=torch.float64)
    layer = GhostBatchNorm(shape[1], virtual_batch=virtual_batch, momentum=0.1).double()
    with torch.no_grad():
        layer.weight.copy_(torch.rand(shape[1]) + 0.5)
        layer.bias.copy_(torch.randn(shape[1]))
    y, dx, dg, db = bn_outputs_and_grads(layer, x, up)
    # the direct implementation: split into N // virtual_batch nearly equal chunks, torch's batch norm on each
    xr = x.clone().requires_grad_(True)
    g, b = layer.weight.detach().clone().requires_grad_(True), layer.bias.detach().clone().requires_grad_(True)
    k = shape[0] // virtual_batch
    chunks = torch.tensor_split(xr, k)
    assert min(len(c) for c in chunks) >= virtual_batch
    ref = torch.cat([F.batch_norm(c, None, None, g, b, training=True, eps=layer.eps) for c in chunks])
    rdx, rdg, rdb = torch.autograd.grad((ref * up).sum(), (xr, g, b))
    for got, want in ((y, ref.detach()), (dx, rdx), (dg, rdg), (db, rdb)):
        assert torch.allclose(got, want, atol=1e-10)
    dims = reduction_dims(shape)
    means = torch.stack([c.detach().mean(dims) for c in chunks]).mean(0)
    unbiased = torch.stack([c.detach().var(dims, unbiased=True) for c in chunks]).mean(0)
    assert torch.allclose(layer.running_mean, 0.1 * means, atol=1e-12)  # one update per batch, from (0, 1)
    assert torch.allclose(layer.running_var, 0.9 + 0.1 * unbiased, atol=1e-12)
    assert int(layer.num_batches_tracked) == 1


def test_ghost_bn_with_one_chunk_is_batch_norm_and_evaluates_as_batch_norm():
    x, up = torch.randn(8, 3, 2, 2, dtype=torch.float64), torch.randn(8, 3, 2, 2, dtype=torch.float64)
    ghost, bn = GhostBatchNorm(3, virtual_batch=8).double(), BatchNorm(3).double()
    for got, want in zip(bn_outputs_and_grads(ghost, x, up), bn_outputs_and_grads(bn, x, up)):
        assert torch.allclose(got, want, atol=1e-12)
    assert torch.allclose(ghost.running_var, bn.running_var) and torch.allclose(ghost.running_mean, bn.running_mean)
    ghost.eval(), bn.eval()
    assert torch.allclose(ghost(x), bn(x), atol=1e-12)


def test_ghost_bn_running_average_decays_once_per_batch_not_per_chunk():
    layer = GhostBatchNorm(2, virtual_batch=4, momentum=0.5)
    x = torch.randn(32, 2) + 10.0  # 8 chunks, each of mean about 10
    layer(x)
    # per-chunk updates would leave 0.5^8 of the initial 0 (mean about 10); one update per batch leaves half of it
    assert torch.allclose(layer.running_mean, 0.5 * x.mean(0), atol=1e-5)


@pytest.mark.parametrize("shape", [(8, 3), (6, 4, 3, 3)])
def test_batch_renorm_with_r_1_and_d_0_is_batch_norm(shape):
    x, up = torch.randn(shape, dtype=torch.float64) * 2 + 3, torch.randn(shape, dtype=torch.float64)
    brn, bn = BatchRenorm(shape[1], r_max=1.0, d_max=0.0, momentum=0.1).double(), BatchNorm(shape[1]).double()
    for _ in range(3):  # the running statistics move away from (0, 1); r and d stay clipped to (1, 0)
        for got, want in zip(bn_outputs_and_grads(brn, x, up), bn_outputs_and_grads(bn, x, up)):
            assert torch.allclose(got, want, atol=1e-10)
    assert torch.allclose(brn.running_mean, bn.running_mean) and torch.allclose(brn.running_var, bn.running_var)


@pytest.mark.parametrize("r_max, d_max", [(3.0, 5.0), (1.5, 0.2)])
def test_batch_renorm_equals_the_papers_algorithm(r_max, d_max):
    c = 4
    x, up = torch.randn(16, c, dtype=torch.float64) * 2 + 1, torch.randn(16, c, dtype=torch.float64)
    layer = BatchRenorm(c, r_max=r_max, d_max=d_max, momentum=0.1).double()
    with torch.no_grad():  # running statistics far from the batch's, so that both clips act in some channels
        layer.running_mean.copy_(torch.tensor([0.0, -1.0, -3.0, 10.0]))
        layer.running_var.copy_(torch.tensor([4.0, 0.01, 1.0, 100.0]))
        layer.weight.copy_(torch.rand(c) + 0.5)
        layer.bias.copy_(torch.randn(c))
    mu, sigma = layer.running_mean.clone(), torch.sqrt(layer.running_var + layer.eps)
    y, dx, dg, db = bn_outputs_and_grads(layer, x, up)
    xr = x.clone().requires_grad_(True)
    g, b = layer.weight.detach().clone().requires_grad_(True), layer.bias.detach().clone().requires_grad_(True)
    mu_b, sigma_b = xr.mean(0), torch.sqrt(xr.var(0, unbiased=False) + layer.eps)
    r = (sigma_b / sigma).clamp(1 / r_max, r_max).detach()  # Ioffe 2017, Algorithm 1: r and d are constants
    d = ((mu_b - mu) / sigma).clamp(-d_max, d_max).detach()
    ref = g * ((xr - mu_b) / sigma_b * r + d) + b
    rdx, rdg, rdb = torch.autograd.grad((ref * up).sum(), (xr, g, b))
    assert ((r == r_max) | (r == 1 / r_max)).any() and ((d == d_max) | (d == -d_max)).any()  # the clips acted
    for got, want in ((y, ref.detach()), (dx, rdx), (dg, rdg), (db, rdb)):
        assert torch.allclose(got, want, atol=1e-10)
    assert torch.allclose(layer.running_mean, 0.9 * mu + 0.1 * x.mean(0))
    layer.eval()
    assert torch.allclose(layer(x), F.batch_norm(x, layer.running_mean, layer.running_var, layer.weight, layer.bias,
                                                 training=False, eps=layer.eps))


def test_batch_renorm_warm_up_relaxes_the_limits_linearly():
    layer = BatchRenorm(2, r_max=3.0, d_max=5.0, warmup_steps=4)
    seen = []
    for _ in range(6):
        seen.append(layer.limits())
        layer(torch.randn(8, 2))
    assert seen == [(1.0, 0.0), (1.5, 1.25), (2.0, 2.5), (2.5, 3.75), (3.0, 5.0), (3.0, 5.0)]
    layer.eval()
    layer(torch.randn(8, 2))  # evaluation does not advance the warm-up
    assert int(layer.num_batches_tracked) == 6


@pytest.mark.parametrize("make, message", [
    (lambda: GhostBatchNorm(3, virtual_batch=1), "GhostBatchNorm: virtual_batch must be an integer >= 2, got 1"),
    (lambda: GhostBatchNorm(3, virtual_batch=2.5), "GhostBatchNorm: virtual_batch must be an integer >= 2, got 2.5"),
    (lambda: BatchRenorm(3, r_max=0.5), "BatchRenorm: r_max must be a finite number >= 1, got 0.5"),
    (lambda: BatchRenorm(3, d_max=-1), "BatchRenorm: d_max must be a finite number >= 0, got -1"),
    (lambda: BatchRenorm(3, warmup_steps=-2), "BatchRenorm: warmup_steps must be an integer >= 0, got -2"),
])
def test_small_batch_layers_refuse_bad_arguments(make, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        make()


def test_norm_layer_builds_the_small_batch_kinds():
    assert norm_layer("ghost_bn", 4, virtual_batch=8).virtual_batch == 8
    assert norm_layer("batch_renorm", 4, warmup_steps=10).limits() == (1.0, 0.0)
    assert norms.is_batch_norm(norm_layer("ghost_bn", 4)) and norms.is_batch_norm(norm_layer("batch_renorm", 4))


# ---------------------------------------------------------------------------
# GroupNorm as Wu & He define it: several channels per group (issue 40)


@pytest.mark.parametrize("width, per_group", [(0.0625, {4}), (0.125, {4}), (0.25, {4}), (1.0, {4, 8, 16})])
def test_wu_he_groups_give_vgg11_at_least_4_channels_per_group_at_every_width(width, per_group):
    from bnlib.models import vgg

    net = vgg("vgg11", width=width, norm=lambda c: norms.group_norm(c, channels_per_group=4))
    groups = [m for m in net.modules() if isinstance(m, nn.GroupNorm)]
    assert len(groups) == 8
    assert {m.num_channels // m.num_groups for m in groups} == per_group
    assert all(m.num_groups <= 32 and m.num_channels % m.num_groups == 0 for m in groups)
    # the default gcd(C, 32) groups are InstanceNorm wherever a layer has 32 channels or fewer
    default = [m for m in vgg("vgg11", width=width, norm="gn").modules() if isinstance(m, nn.GroupNorm)]
    assert (min(m.num_channels // m.num_groups for m in default) == 1) == (width <= 0.25)


def test_wu_he_groups_are_the_largest_divisor_up_to_the_cap():
    assert [norms.wu_he_groups(c) for c in (1, 3, 4, 8, 12, 24, 64, 128, 512)] == [1, 1, 1, 2, 3, 6, 16, 32, 32]
    assert norms.wu_he_groups(64, 2) == 32 and norms.wu_he_groups(64, 16) == 4 and norms.wu_he_groups(64, 4, max_groups=8) == 8
    assert norm_layer("gn", 16, channels_per_group=4).num_groups == 4  # through the registry, as a Run's norm_args


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_groups=4, channels_per_group=4), "give num_groups or channels_per_group, not both"),
    (dict(channels_per_group=0), "channels_per_group must be an integer >= 1, got 0"),
    (dict(channels_per_group=2.5), "channels_per_group must be an integer >= 1, got 2.5"),
])
def test_group_norm_refuses_bad_channels_per_group(kwargs, message):
    with pytest.raises(ValueError, match=message):
        norms.group_norm(16, **kwargs)
    with pytest.raises(ValueError, match="channels_per_group must be an integer >= 1, got -1"):
        norms.wu_he_groups(16, -1)


# --------------------------------------------------------------------------- NoisyBatchNorm per activation (issue 39)

def test_noisy_per_activation_draws_every_example_channel_and_position():
    """The default noise (Santurkar et al. Sec. 2.1: i.i.d. per activation of each sample): one draw per (j, i, h, w),
    around a per-channel mean and scale that are new at every call."""
    torch.manual_seed(0)
    n, c, h, w = 256, 16, 6, 6
    noisy = NoisyBatchNorm(c)
    x = torch.randn(n, c, h, w, dtype=torch.float64) * 2 + 1
    a = noisy.double()(x)
    m, s = noisy.last_noise
    assert noisy.per == "activation" and m.shape == s.shape == x.shape
    torch.testing.assert_close(a, s * BatchNorm(c).double()(x) + m, rtol=0, atol=1e-12)
    # within one channel the noise varies over positions of one example, with the per-example spreads of the scheme
    assert (m.std((2, 3)) > 0.03).all() and (s.std((2, 3)) > 0.05).all()
    torch.testing.assert_close(m.std((0, 2, 3)), torch.full((c,), 0.1 / 3**0.5, dtype=torch.float64), rtol=0.03, atol=0)
    torch.testing.assert_close(s.std((0, 2, 3)), torch.full((c,), 0.1, dtype=torch.float64), rtol=0.03, atol=0)
    mu, sigma = m.mean((0, 2, 3)), s.mean((0, 2, 3))
    assert mu.abs().max() <= 0.5 + 0.01 and sigma.min() >= 1.0 - 0.01 and sigma.max() <= 1.25 + 0.01
    noisy(x)
    mu2 = noisy.last_noise[0].mean((0, 2, 3))
    assert (mu2 - mu).abs().max() > 0.1  # the distribution's parameters change from step to step


def test_noisy_per_channel_and_per_activation_agree_on_dense_inputs():
    x = torch.randn(32, 5)
    torch.manual_seed(3)
    a = NoisyBatchNorm(5)(x)
    torch.manual_seed(3)
    b = NoisyBatchNorm(5, per="channel")(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_noisy_per_channel_is_the_first_version():
    """per="channel" draws what the first NoisyBatchNorm drew (mu, sigma per channel, then m, s per example and channel)."""
    x = torch.randn(4, 3, 2, 2)
    torch.manual_seed(5)
    noisy = NoisyBatchNorm(3, per="channel")
    a = noisy(x)
    torch.manual_seed(5)
    mu, sigma = torch.empty(3).uniform_(-0.5, 0.5), torch.empty(3).uniform_(1.0, 1.25)
    m = (mu + torch.empty(4, 3).uniform_(-0.1, 0.1)).view(4, 3, 1, 1)
    s = (sigma + 0.1 * torch.empty(4, 3).normal_()).view(4, 3, 1, 1)
    torch.testing.assert_close(a, s * BatchNorm(3)(x) + m, rtol=1e-6, atol=1e-6)


def test_noisy_noise_off_is_batch_norm_and_draws_nothing():
    x = torch.randn(8, 3, 2, 2)
    noisy, ref = random_affine(NoisyBatchNorm(3)), BatchNorm(3)
    copy_affine(noisy, ref)
    noisy.noise = False
    state = torch.get_rng_state()
    torch.testing.assert_close(noisy(x), ref(x), rtol=0, atol=0)
    assert torch.equal(torch.get_rng_state(), state) and noisy.last_noise is None
    torch.testing.assert_close(noisy.running_var, ref.running_var, rtol=0, atol=0)


def test_noisy_per_is_checked_and_shown():
    with pytest.raises(ValueError, match="per must be one of"):
        NoisyBatchNorm(4, per="example")
    assert repr(NoisyBatchNorm(4, per="channel")).endswith("affine=True, per='channel')")
    assert "per=" not in repr(NoisyBatchNorm(4))
    assert norm_layer("noisy_bn", 4, per="channel").per == "channel"

