"""Second derivatives through bnlib's custom autograd functions (Hessian-vector products, gradient penalties)."""

import pytest
import torch
from torch.autograd import gradgradcheck

from bnlib.lab.batched import _BatchedBatchNormFunction, _BatchedLinearFunction
from bnlib.norms import BatchNorm, BatchNormFunction


def _inputs(*shape):
    torch.manual_seed(0)
    c = shape[1]
    x = (torch.randn(*shape, dtype=torch.float64) * 2 + 1).requires_grad_()
    gamma = (torch.rand(c, dtype=torch.float64) + 0.5).requires_grad_()
    beta = torch.randn(c, dtype=torch.float64).requires_grad_()
    return x, gamma, beta


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 2, 2)], ids=["2d", "4d"])
def test_batch_norm_function_is_twice_differentiable(shape):
    x, gamma, beta = _inputs(*shape)
    assert gradgradcheck(lambda x, g, b: BatchNormFunction.apply(x, g, b, 1e-5)[0], (x, gamma, beta))


def test_batched_functions_are_twice_differentiable():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    gamma = (torch.rand(2, 3, dtype=torch.float64) + 0.5).requires_grad_()
    beta = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert gradgradcheck(lambda x, g, b: _BatchedBatchNormFunction.apply(x, g, b, 1e-5)[0], (x, gamma, beta))
    w = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    assert gradgradcheck(_BatchedLinearFunction.apply, (x, w, bias))


def _hvp(norm: torch.nn.Module, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss, gradient and Hessian-vector product of a small MLP with ``norm`` after its hidden layer."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(5, 4), norm, torch.nn.Tanh(), torch.nn.Linear(4, 3)).double()
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 3, (16,))
    params = list(net.parameters())
    loss = torch.nn.functional.cross_entropy(net(x), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    v = [torch.randn_like(p, generator=torch.Generator().manual_seed(i)) for i, p in enumerate(params)]
    hv = torch.autograd.grad(sum((g * u).sum() for g, u in zip(grads, v)), params)
    return loss.detach(), torch.cat([g.reshape(-1) for g in grads]).detach(), torch.cat([h.reshape(-1) for h in hv])


def test_hessian_vector_product_through_batch_norm_equals_torchs():
    ours, theirs = _hvp(BatchNorm(4)), _hvp(torch.nn.BatchNorm1d(4))
    assert torch.allclose(ours[0], theirs[0]) and torch.allclose(ours[1], theirs[1])
    assert ours[2].abs().max() > 1e-3  # a real second derivative, not zeros
    assert torch.allclose(ours[2], theirs[2], rtol=1e-8, atol=1e-10), (ours[2] - theirs[2]).abs().max()
