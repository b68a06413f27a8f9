"""Tests for bnlib.inference: recomputing running statistics and folding BN into convolutions."""

import copy

import pytest
import torch
from torch import nn

from bnlib.inference import fold_batch_norm, fold_conv_bn, recompute_running_stats
from bnlib.models import small_resnet, vgg
from bnlib.norms import is_batch_norm


def trained_statistics(net: nn.Module, steps: int = 3) -> nn.Module:
    """A few train-mode forward passes on shifted, scaled inputs, so running statistics are far from (0, 1)."""
    torch.manual_seed(0)
    with torch.no_grad():
        for _ in range(steps):
            net(torch.randn(16, 3, 32, 32) * 2 + 0.5)
    for m in net.modules():  # non-trivial affine parameters too
        if is_batch_norm(m):
            with torch.no_grad():
                m.weight.uniform_(0.5, 2.0)
                m.bias.normal_()
    return net


@pytest.mark.parametrize("norm", ["torch_bn", "bn"])
@pytest.mark.parametrize("eps", [1e-5, 1e-3])
def test_folded_vgg_equals_eval_mode(norm, eps):
    torch.manual_seed(1)
    net = trained_statistics(vgg(width=0.125, norm=norm))
    for m in net.modules():
        if is_batch_norm(m):
            m.eps = eps
    net.train()
    folded = fold_batch_norm(net)
    assert net.training and sum(is_batch_norm(m) for m in net.modules()) == 8  # the original is untouched
    assert not folded.training and sum(is_batch_norm(m) for m in folded.modules()) == 0
    assert all(m.bias is not None for m in folded.modules() if isinstance(m, nn.Conv2d))
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        ref = net.eval()(x)
        diff = (folded(x) - ref).abs().max().item()
    assert diff < 1e-5 * max(1.0, ref.abs().max().item())


def test_fold_keeps_a_conv_bias_and_skips_unpaired_layers():
    torch.manual_seed(2)
    conv, bn = nn.Conv2d(3, 4, 3, padding=1, bias=True), nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.1, 3)
        bn.weight.normal_()
        bn.bias.normal_()
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        assert (fold_conv_bn(conv, bn.eval())(x) - bn(conv(x))).abs().max() < 1e-5
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.BatchNorm2d(4))  # BN not right after the conv: left alone
    assert sum(is_batch_norm(m) for m in fold_batch_norm(net).modules()) == 1
    # a residual net: every conv -> norm pair inside its blocks folds, the outputs stay equal
    resnet = trained_statistics(small_resnet(width=0.25, norm="torch_bn"))
    folded = fold_batch_norm(resnet)
    assert sum(is_batch_norm(m) for m in resnet.modules()) > sum(is_batch_norm(m) for m in folded.modules()) == 0
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref = resnet.eval()(x)
        assert (folded(x) - ref).abs().max() < 1e-5 * max(1.0, ref.abs().max().item())


def test_fold_refuses_mismatched_channels():
    with pytest.raises(ValueError, match="4 output channels but the BN layer normalizes 3"):
        fold_conv_bn(nn.Conv2d(2, 4, 1), nn.BatchNorm2d(3))


@pytest.mark.parametrize("norm", ["torch_bn", "bn"])
def test_recompute_gives_the_average_batch_statistics(norm):
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), vgg(width=0.125, norm=norm).conv2.norm.__class__(4))
    batches = [torch.randn(10, 3, 6, 6) * (i + 1) + i for i in range(5)]
    params = [p.detach().clone() for p in net.parameters()]
    net.eval()
    net[1].momentum = 0.3
    with torch.no_grad():
        feats = [net[0](x) for x in batches]
    assert recompute_running_stats(net, iter(batches)) == 5
    mean = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.var((0, 2, 3), unbiased=True) for f in feats]).mean(0)
    assert torch.allclose(net[1].running_mean, mean, atol=1e-5)
    assert torch.allclose(net[1].running_var, var, rtol=1e-5)
    assert int(net[1].num_batches_tracked) == 5 and net[1].momentum == 0.3
    assert not net.training and not net[1].training  # modes restored
    assert all(torch.equal(a, b) for a, b in zip(params, net.parameters()))


def test_recompute_refuses_empty_input_and_nets_without_bn():
    with pytest.raises(ValueError, match="no batch norm layer"):
        recompute_running_stats(nn.Sequential(nn.Linear(2, 2)), [torch.randn(4, 2)])
    bn = nn.BatchNorm1d(2)
    with pytest.raises(ValueError, match="batches was empty"):
        recompute_running_stats(bn, [])
    assert bn.momentum == 0.1  # restored on failure too


def test_recompute_running_stats_equals_torchs_update_bn():
    from torch.optim.swa_utils import update_bn

    from bnlib.inference import recompute_running_stats
    from bnlib.models import vgg

    torch.manual_seed(0)
    ours = vgg("vgg11", width=0.0625, norm="torch_bn")
    theirs = copy.deepcopy(ours)
    batches = [torch.randn(16, 3, 32, 32) * 2 + 1 for _ in range(5)]
    recompute_running_stats(ours, batches)
    update_bn(batches, theirs)
    for a, b in zip(ours.buffers(), theirs.buffers()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm", ["torch_bn", "bn"])
def test_fold_conv_bn_equals_torchs_fuse_conv_bn_eval(norm):
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    from bnlib.inference import fold_conv_bn
    from bnlib.norms import norm_layer

    torch.manual_seed(0)
    conv, bn = torch.nn.Conv2d(3, 4, 3), norm_layer(norm, 4)
    with torch.no_grad():
        bn.running_mean.normal_(), bn.running_var.uniform_(0.5, 2), bn.weight.normal_(), bn.bias.normal_()
    bn.eval()
    ours = fold_conv_bn(conv, bn)
    reference = bn if norm == "torch_bn" else torch.nn.BatchNorm2d(4).eval()
    if norm == "bn":
        reference.load_state_dict(bn.state_dict())
    theirs = fuse_conv_bn_eval(conv.eval(), reference)
    assert torch.allclose(ours.weight, theirs.weight, atol=1e-6) and torch.allclose(ours.bias, theirs.bias, atol=1e-6)
