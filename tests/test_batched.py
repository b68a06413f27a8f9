"""Seeds trained together (BatchedMLP + fit_batched) are the same computation as separate runs."""

import math

import pytest
import torch

from bnlib.data import dataset_stats, seed_batches, train_batches
from bnlib.lab.batched import BatchedBatchNorm, BatchedMLP, fit_batched
from bnlib.models import mlp
from bnlib.norms import BatchNorm
from bnlib.train import fit

MEAN, STD = dataset_stats("mnist")
SEEDS = [0, 1, 2]


@pytest.mark.parametrize("norm", ["none", "bn"])
def test_batched_seeds_equal_separate_runs(mnist, norm):
    train, test = mnist
    test = (test[0][:1000], test[1][:1000])
    kw = dict(steps=200, batch_size=60, lr=0.5, eval_every=50, mean=MEAN, std=STD, progress=False, device="cpu")
    separate = {}
    for s in SEEDS:
        torch.manual_seed(s)
        model = mlp(norm=norm, activation="sigmoid")
        separate[s] = (model, fit(model, train, test, seed=s, **kw))
    net = BatchedMLP.from_seeds(SEEDS, norm=norm, activation="sigmoid")
    together = fit_batched(net, train, test, seeds=SEEDS, **kw)
    for i, s in enumerate(SEEDS):
        model, df = separate[s]
        mine = together[together["seed"] == s].reset_index(drop=True)
        assert mine["step"].tolist() == df["step"].tolist() == [0, 50, 100, 150, 200]
        for col in ["train_loss", "test_loss", "train_acc", "test_acc"]:
            assert mine[col].iloc[1:].to_numpy() == pytest.approx(df[col].iloc[1:].to_numpy(), abs=1e-5), col
        assert df["train_loss"].iloc[-1] < df["train_loss"].iloc[1]  # it did learn
        back = net.model_at(i).state_dict()
        for key, value in model.state_dict().items():
            assert torch.allclose(back[key].float(), value.float(), atol=1e-5), key


def test_batched_batch_norm_slices_match_batch_norm():
    torch.manual_seed(0)
    bb = BatchedBatchNorm(3, 5, momentum=0.2)
    singles = [BatchNorm(5, momentum=0.2) for _ in range(3)]
    with torch.no_grad():
        bb.weight.uniform_(0.5, 1.5)
        bb.bias.normal_()
        for i, m in enumerate(singles):
            m.weight.copy_(bb.weight[i])
            m.bias.copy_(bb.bias[i])
    for _ in range(3):
        x = torch.randn(3, 16, 5) * 3 + 1
        out = bb(x)
        for i, m in enumerate(singles):
            assert torch.allclose(out[i], m(x[i]), atol=1e-5)
    for i, m in enumerate(singles):
        assert torch.allclose(bb.running_mean[i], m.running_mean, atol=1e-6)
        assert torch.allclose(bb.running_var[i], m.running_var, atol=1e-6)
    bb.eval()
    x = torch.randn(3, 4, 5)
    for i, m in enumerate(singles):
        assert torch.allclose(bb(x)[i], m.eval()(x[i]), atol=1e-5)
    with pytest.raises(ValueError, match=r"expected input of shape \(S=3, N, C=5\)"):
        bb(torch.randn(2, 4, 5))


def test_seed_batches_match_train_batches():
    x = torch.arange(50, dtype=torch.uint8).reshape(50, 1, 1, 1)
    y = torch.arange(50)
    together = seed_batches(x, y, 7, seeds=[3, 4])
    alone = [train_batches(x, y, 7, seed=s) for s in (3, 4)]
    for _ in range(20):  # crosses epoch boundaries
        xb, yb = next(together)
        for i in range(2):
            xs, ys = next(alone[i])
            assert torch.equal(yb[i], ys) and torch.equal(xb[i], xs)


def test_a_diverging_seed_stops_alone(mnist):
    train, test = mnist
    test = (test[0][:500], test[1][:500])
    kw = dict(steps=40, batch_size=60, lr=0.1, eval_every=10, mean=MEAN, std=STD, progress=False, device="cpu")
    net = BatchedMLP.from_seeds([0, 1], hidden=(32,))
    with torch.no_grad():
        net.fc1.weight[1, 0, 0] = float("nan")  # model 1 is broken from the start
    df = fit_batched(net, train, test, seeds=[0, 1], **kw)
    broken = df[df["seed"] == 1]
    assert broken["diverged"].tolist() == [False, True] and broken["step"].tolist() == [0, 1]
    healthy = df[df["seed"] == 0]
    reference = fit_batched(BatchedMLP.from_seeds([0], hidden=(32,)), train, test, seeds=[0], **kw)
    assert healthy["test_acc"].tolist() == pytest.approx(reference["test_acc"].tolist(), abs=1e-6)
    assert not healthy["diverged"].any() and math.isnan(broken["test_acc"].iloc[-1])
    with pytest.raises(ValueError, match="holds 2 models but 3 seeds"):
        fit_batched(net, train, seeds=[0, 1, 2], **kw)


def test_per_model_learning_rates_equal_separate_runs(mnist):
    train, _ = mnist
    kw = dict(steps=50, batch_size=60, eval_every=50, mean=MEAN, std=STD, progress=False, device="cpu")
    net = BatchedMLP.from_seeds([0, 0], hidden=(32,), norm="bn")
    together = fit_batched(net, train, seeds=[0, 0], lr=[0.05, 0.8], **kw)
    for i, lr in enumerate([0.05, 0.8]):
        alone = BatchedMLP.from_seeds([0], hidden=(32,), norm="bn")
        df = fit_batched(alone, train, seeds=[0], lr=lr, **kw)
        assert together["train_loss"].iloc[2 + i] == pytest.approx(df["train_loss"].iloc[1], abs=1e-5)
        assert together["lr"].iloc[2 + i] == lr
        for key, value in alone.model_at(0).state_dict().items():
            assert torch.allclose(net.model_at(i).state_dict()[key].float(), value.float(), atol=1e-5), key
    with pytest.raises(ValueError, match="lr must be > 0, one value or one per seed"):
        fit_batched(net, train, seeds=[0, 0], lr=[0.1], **kw)


def test_batched_batch_norm_gradient_is_exact():
    torch.manual_seed(0)
    bb = BatchedBatchNorm(2, 3).double()
    x = (torch.randn(2, 7, 3, dtype=torch.float64) * 2 + 1).requires_grad_()
    with torch.no_grad():
        bb.weight.uniform_(0.5, 1.5)
    assert torch.autograd.gradcheck(lambda x, w, b: bb.train()(x), (x, bb.weight, bb.bias))
    dy = torch.randn_like(x)
    (bb(x) * dy).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    mean = x2.mean(1, keepdim=True)
    var = (x2 - mean).square().mean(1, keepdim=True)
    ((((x2 - mean) / torch.sqrt(var + bb.eps)) * bb.weight.unsqueeze(1) + bb.bias.unsqueeze(1)) * dy).sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-10)
