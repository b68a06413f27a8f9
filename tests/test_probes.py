"""bnlib.probes: distribution statistics with known answers, and a probe that leaves the model as it found it."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn

from bnlib.models import mlp
from bnlib.probes import LayerStatsProbe, QuantileProbe, layer_outputs, tidy_layer_stats, unit_stats


def test_unit_stats_of_known_distributions():
    g = torch.Generator().manual_seed(0)
    normal = unit_stats(torch.randn(100_000, 3, generator=g) * 2 + 1, bound=2.0)
    assert normal["beyond"] == pytest.approx(2 * stats.norm.sf(2.0), rel=0.05)
    assert abs(normal["skew"]) < 0.03 and abs(normal["excess_kurtosis"]) < 0.06 and normal["ks"] < 0.02
    assert normal["kl"] == pytest.approx(0.5 * (4 + 1 - 1 - math.log(4)), rel=0.02)  # KL(N(1, 4) || N(0, 1))
    expo = unit_stats(torch.empty(100_000, 2).exponential_(generator=g))
    assert expo["skew"] == pytest.approx(2.0, rel=0.1) and expo["excess_kurtosis"] == pytest.approx(6.0, rel=0.2)
    assert expo["ks"] > 0.05


def test_unit_stats_mean_shift_and_dead_units():
    x = torch.zeros(1000, 2)
    x[:, 0] = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    x[0, 0] = 100.0  # one outlier
    s = unit_stats(x, bound=3.0)
    inliers = x[1:, 0]
    expected = (x[:, 0].mean() - inliers.mean()).abs() / x[:, 0].std(unbiased=False)
    assert s["mean_shift"] == pytest.approx(expected.item(), rel=0.05)
    assert s["dead_units"] == 1 and s["max"] == 100.0


def test_layer_stats_probe_restores_buffers_and_reports_gradients():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(32, 4)
    net(x).sum().backward()  # a training step's gradients
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.eval()
    row = LayerStatsProbe({"bn": net[1], "relu": net[2]}, torch.randn(64, 4))(5, net)
    assert not net.training  # mode restored
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert row["0|grad|norm"] == pytest.approx(net[0].weight.grad.norm().item())
    assert row["bn|out|kl"] < 0.01  # train-mode BN output: mean 0, variance 1 per unit
    assert row["relu|out|ks"] > row["bn|out|ks"]  # rectified values are further from a normal
    long = tidy_layer_stats(pd.DataFrame([{"step": 5, **row}]))
    assert set(long["where"]) == {"in", "out", "grad"} and set(long["layer"]) == {"bn", "relu", "0", "3"}


def _sq(out, y):
    return 0.5 * (out - y).pow(2).sum()


def test_landscape_and_hessian_on_a_quadratic_match_the_formulas():
    """L(w) = 0.5 ||X w - y||^2: gradient g = X^T (X w - y), Hessian H = X^T X, so the gradient change along the step is
    eta ||H g||, the effective beta-smoothness ||H g|| / ||g||, and the top eigenvalue that of X^T X."""
    from bnlib.probes import hessian_top_eigenvalue, landscape_probe

    torch.manual_seed(0)
    X, y = torch.randn(20, 5, dtype=torch.float64), torch.randn(20, 1, dtype=torch.float64)
    net = nn.Linear(5, 1, bias=False).double()
    w = net.weight.detach().clone().T
    g = X.T @ (X @ w - y)
    H = X.T @ X
    etas = [0.01, 0.05, 0.1]
    r = landscape_probe(net, _sq, (X, y), etas)

    def loss(w_):
        return (0.5 * (X @ w_ - y).pow(2).sum()).item()

    assert r["losses"] == pytest.approx([loss(w - e * g) for e in etas], rel=1e-10)
    assert r["grad_changes"] == pytest.approx([e * (H @ g).norm().item() for e in etas], rel=1e-10)
    assert r["beta_smoothness"] == pytest.approx(((H @ g).norm() / g.norm()).item(), rel=1e-10)
    assert r["loss_range"] == pytest.approx(max(r["losses"] + [r["loss0"]]) - min(r["losses"] + [r["loss0"]]))
    top = torch.linalg.eigvalsh(H).max().item()
    assert hessian_top_eigenvalue(net, _sq, (X, y), iters=500, tol=1e-12) == pytest.approx(top, rel=1e-6)


def test_ics_of_a_two_layer_linear_net_matches_the_hand_computation():
    """f(x) = W2 W1 x, L = 0.5 ||f(X) - Y||^2. Layer 2's G' is its gradient after W1 took the SGD step -lr * G1."""
    from bnlib.probes import ics

    torch.manual_seed(1)
    X, Y = torch.randn(16, 3, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.Linear(4, 2, bias=False)).double()
    W1, W2 = net[0].weight.detach().clone(), net[1].weight.detach().clone()
    lr = 0.05

    def grads(w1, w2):
        h = X @ w1.T
        r = h @ w2.T - Y
        return (r @ w2).T @ X, r.T @ h  # dL/dW1, dL/dW2

    G1, G2 = grads(W1, W2)
    _, G2_after = grads(W1 - lr * G1, W2)
    df = ics(net, _sq, (X, Y), lr=lr).set_index("layer")
    assert df.loc["0", "l2"] == 0.0 and df.loc["0", "cosine"] == pytest.approx(1.0)
    assert df.loc["1", "l2"] == pytest.approx((G2 - G2_after).norm().item(), rel=1e-10)
    cos = (G2 * G2_after).sum() / (G2.norm() * G2_after.norm())
    assert df.loc["1", "cosine"] == pytest.approx(cos.item(), rel=1e-10)
    assert df.loc["1", "l2"] > 0


def test_probes_leave_weights_buffers_optimizer_and_rng_unchanged():
    from bnlib.probes import hessian_top_eigenvalue, ics, landscape_probe

    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3), nn.Dropout(0.3))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 3, (8,))
    for _ in range(2):  # momentum buffers and running statistics that are not at their initial values
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    grads = [p.grad.clone() for p in net.parameters()]
    opt_state = {k: v["momentum_buffer"].clone() for k, v in opt.state_dict()["state"].items()}
    rng = torch.get_rng_state()
    loss = nn.functional.cross_entropy
    df = ics(net, loss, (x, y), optimizer=opt)
    r = landscape_probe(net, loss, (x, y), [0.05, 0.1])
    lam = hessian_top_eigenvalue(net, loss, (x, y), iters=5)
    assert net.training and torch.equal(torch.get_rng_state(), rng)
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert all(torch.equal(p.grad, g) for p, g in zip(net.parameters(), grads))
    assert all(torch.equal(opt.state_dict()["state"][k]["momentum_buffer"], v) for k, v in opt_state.items())
    assert len(df) == 2 and (df["l2"] >= 0).all() and df["l2"].iloc[1] > 0  # dropout noise is the same in G and G'
    assert math.isfinite(r["beta_smoothness"]) and math.isfinite(lam)


def test_weight_norms_probe_gives_every_conv_and_linear_weight_norm():
    from bnlib.probes import named_probes

    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 3, (8,))
    begin, probe, end = named_probes(["weight_norms"], net, (x, y), {}, lr=0.1)
    row = probe(0, net)
    assert sorted(row) == ["0|weight|norm", "4|weight|norm"]
    assert row["0|weight|norm"] == pytest.approx(math.sqrt((net[0].weight ** 2).sum().item()), rel=1e-6)
    with torch.no_grad():
        net[4].weight.mul_(3)
    assert probe(0, net)["4|weight|norm"] == pytest.approx(3 * row["4|weight|norm"], rel=1e-6)


def test_penalty_gradients_match_autograd_and_leave_the_model_as_it_was():
    from bnlib.norms import RigidBatchNorm, model_penalty
    from bnlib.probes import penalty_gradients

    torch.manual_seed(4)
    net = nn.Sequential(nn.Linear(4, 8), RigidBatchNorm(8, bound=0.5), nn.ReLU(), nn.Linear(8, 3)).double().eval()
    x, y = torch.randn(32, 4, dtype=torch.float64), torch.randint(0, 3, (32,))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    got = penalty_gradients(net, nn.functional.cross_entropy, (x, y), reg_cf=0.3)
    assert not net.training and all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    net.train()
    out = net(x)
    grads = torch.autograd.grad(0.3 * model_penalty(net), list(net.parameters()), allow_unused=True, retain_graph=True)
    want = math.sqrt(sum(float((g ** 2).sum()) for g in grads if g is not None))
    assert got["penalty"] == pytest.approx(want, rel=1e-12) and want > 0
    loss_grads = torch.autograd.grad(nn.functional.cross_entropy(out, y), list(net.parameters()))
    assert got["loss"] == pytest.approx(math.sqrt(sum(float((g ** 2).sum()) for g in loss_grads)), rel=1e-12)
    plain = nn.Sequential(nn.Linear(4, 3)).double()
    assert penalty_gradients(plain, nn.functional.cross_entropy, (x, y))["penalty"] == 0.0  # no layer with a penalty


def test_landscape_probe_row_gives_the_ends_of_the_loss_range():
    from bnlib.probes import named_probes

    torch.manual_seed(5)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3))
    batch = (torch.randn(16, 12), torch.randint(0, 3, (16,)))
    row = named_probes(["landscape"], net, batch, {"etas": [0.5, 2.0]}, lr=0.5)[1](0, net)
    low, high = row["all|landscape|loss_min"], row["all|landscape|loss_max"]
    loss0 = nn.functional.cross_entropy(net(batch[0]), batch[1]).item()
    assert low <= loss0 <= high and high - low == pytest.approx(row["all|landscape|loss_range"], abs=1e-12)


def test_layer_outputs_in_train_mode_use_the_batch_and_keep_the_running_statistics():
    from bnlib.probes import layer_outputs, unit_quantiles

    torch.manual_seed(6)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).eval()
    with torch.no_grad():
        net[1].running_mean.fill_(5.0)
    x = torch.randn(64, 3) + 2
    state = {k: v.clone() for k, v in net.state_dict().items()}
    train_out = layer_outputs(net, {"bn": net[1]}, x, train=True)["bn"][0]
    assert train_out.mean(0).abs().max() < 1e-5 and not net.training  # normalized with the batch's own statistics
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())  # running statistics untouched
    eval_out = layer_outputs(net, {"bn": net[1]}, x)["bn"][0]
    assert (eval_out.mean(0) < -1).all()  # eval mode: the (planted) running mean 5 is subtracted
    assert unit_quantiles(net, {"bn": net[1]}, x, (0.5,), train=True)["bn"].shape == (1, 1, 4)


def test_quantile_probe_matches_torch_quantile_and_restores_mode():
    torch.manual_seed(0)
    net = mlp(hidden=(16, 8), norm="bn")
    x = torch.randn(200, 1, 28, 28)
    probe = QuantileProbe({"n2": net.norm2}, x, qs=(0.15, 0.5, 0.85))
    probe(5, net)
    assert net.training
    net.eval()
    expected = torch.quantile(net.norm2(net.fc2(net.act1(net.norm1(net.fc1(x.flatten(1)))))), torch.tensor([0.15, 0.5, 0.85]),
                              dim=0)
    frame = probe.frame()
    got = frame.pivot(index="unit", columns="q", values="value").to_numpy().T
    assert torch.allclose(torch.tensor(got), expected.detach(), atol=1e-5)
    assert set(frame["q"]) == {0.15, 0.5, 0.85} and frame["step"].eq(5).all()


def test_quantile_probe_on_a_batched_model_gives_one_set_per_model():
    from bnlib.lab.batched import BatchedMLP

    net = BatchedMLP.from_seeds([0, 1], hidden=(6,), norm="bn")
    x = torch.randn(50, 1, 28, 28)
    probe = QuantileProbe({"n1": net.norm1}, x, qs=(0.5,))
    probe(0, net)
    frame = probe.frame()
    assert len(frame) == 2 * 6 and sorted(frame["model"].unique()) == [0, 1]
    model1 = net.model_at(1)
    single = QuantileProbe({"n1": model1.norm1}, x, qs=(0.5,))
    single(0, model1)
    got = frame[frame["model"] == 1].sort_values("unit")["value"].to_numpy()
    assert got == pytest.approx(single.frame().sort_values("unit")["value"].to_numpy(), abs=1e-5)


def test_layer_outputs_conv_gives_values_per_channel():
    conv = nn.Conv2d(3, 4, 3)
    out = layer_outputs(nn.Sequential(conv), {"c": conv}, torch.randn(2, 3, 5, 5))["c"]
    assert out.shape == (1, 2 * 3 * 3, 4)


def test_gradient_spread_is_the_sd_of_log_gradient_norms_over_minibatches_and_refuses_a_tiny_batch():
    from bnlib.probes import gradient_spread, named_probes

    torch.manual_seed(6)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).double().eval()
    x, y = torch.randn(24, 4, dtype=torch.float64), torch.randint(0, 3, (24,))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    got = gradient_spread(net, nn.functional.cross_entropy, (x, y), minibatches=3)
    assert not net.training and all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    net.train()
    logs = []
    for k in range(3):
        loss = nn.functional.cross_entropy(net(x[8 * k: 8 * (k + 1)]), y[8 * k: 8 * (k + 1)])
        logs.append(math.log(float(torch.autograd.grad(loss, [net[3].weight])[0].norm())))
    mean = sum(logs) / 3
    assert got["3"] == pytest.approx(math.sqrt(sum((v - mean) ** 2 for v in logs) / 2), rel=1e-9) and got["3"] > 0
    row = named_probes(["gradient_spread"], net, (x, y), {"minibatches": 3}, lr=0.1)[1](0, net)
    assert sorted(row) == ["0|grad_spread|sd", "3|grad_spread|sd"]
    with pytest.raises(ValueError, match="at least 2 minibatches of at least 2 examples.*probe_size"):
        gradient_spread(net, nn.functional.cross_entropy, (x[:6], y[:6]), minibatches=4)


# ---------------------------------------------------------------- channel_stats, channel_drift, noise_accuracy (issue 39)

def test_channel_stats_match_the_outputs_per_channel_and_leave_the_model_as_found():
    from bnlib.norms import NoisyBatchNorm
    from bnlib.probes import channel_stats

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), NoisyBatchNorm(4), nn.ReLU())
    x = torch.randn(16, 2, 6, 6)
    buffers, rng = [b.clone() for b in net.buffers()], torch.get_rng_state()
    mean, std = channel_stats(net, {"norm": net[1]}, x)["norm"]
    assert all(torch.equal(a, b) for a, b in zip(buffers, net.buffers())) and torch.equal(torch.get_rng_state(), rng)
    torch.set_rng_state(rng)
    out = net[1](net[0](x))  # the same noise: the probe ran on the generator's state as found
    per = out.detach().transpose(0, 1).reshape(4, -1)
    torch.testing.assert_close(mean, per.mean(1)), torch.testing.assert_close(std, per.std(1, unbiased=False))


def test_channel_drift_is_scale_free_and_counts_each_channel():
    from bnlib.probes import channel_drift

    rng = np.random.default_rng(0)
    means, stds = rng.normal(size=(5, 8)), rng.uniform(0.5, 2, size=(5, 8))
    d = channel_drift(means, stds)
    assert channel_drift(3 * means, 3 * stds) == pytest.approx(d)
    # opposite shifts in two channels cancel in the pooled mean but not per channel
    m = np.array([[0.0, 0.0], [1.0, -1.0]])
    assert channel_drift(m, np.ones((2, 2))) == pytest.approx(1.0) and m.mean(1)[1] == 0
    assert channel_drift(np.zeros((3, 2)), np.ones((3, 2))) == 0 and math.isnan(channel_drift(m[:1], np.ones((1, 2))))
    assert channel_drift(np.zeros((2, 1)), np.array([[1.0], [np.e]])) == pytest.approx(1.0)  # log std moved by 1


def test_noisy_bn_drifts_more_per_channel_than_bn():
    """The manipulation the notebook checks: per-activation noise moves each channel's distribution between calls."""
    from bnlib.norms import BatchNorm, NoisyBatchNorm
    from bnlib.probes import channel_drift, channel_stats

    torch.manual_seed(1)
    x = torch.randn(64, 8, 4, 4)
    drift = {}
    for name, layer in (("bn", BatchNorm(8)), ("noisy", NoisyBatchNorm(8))):
        net = nn.Sequential(layer)
        stats_ = [channel_stats(net, {"n": layer}, x)["n"] for _ in range(2)]
        for _ in range(2):
            net(x)  # a training step's draw between the probes
            stats_.append(channel_stats(net, {"n": layer}, x)["n"])
        drift[name] = channel_drift(np.stack([s[0].numpy() for s in stats_]), np.stack([s[1].numpy() for s in stats_]))
    assert drift["bn"] < 1e-4 and drift["noisy"] > 0.1


def test_noise_accuracy_on_and_off():
    from bnlib.norms import NoisyBatchNorm
    from bnlib.probes import noise_accuracy

    torch.manual_seed(2)
    noisy = nn.Sequential(nn.Linear(6, 16), NoisyBatchNorm(16, mean_range=2.0), nn.ReLU(), nn.Linear(16, 3))
    x, y = torch.randn(128, 6), torch.randint(0, 3, (128,))
    rng = torch.get_rng_state()
    r = noise_accuracy(noisy, nn.functional.cross_entropy, (x, y))
    assert torch.equal(torch.get_rng_state(), rng) and noisy[1].noise is True and noisy.training
    noisy[1].noise = False
    with torch.no_grad():
        logits = noisy(x)
    assert r["off_acc"] == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    assert r["off_loss"] == pytest.approx(float(nn.functional.cross_entropy(logits, y)), rel=1e-6)
    assert r["on_loss"] != pytest.approx(r["off_loss"])
    plain = nn.Sequential(nn.Linear(6, 3))
    p = noise_accuracy(plain, nn.functional.cross_entropy, (x, y))
    assert p["on_acc"] == p["off_acc"] and p["on_loss"] == p["off_loss"]


def test_named_channel_stats_and_noise_acc_probes_give_their_columns():
    from bnlib.probes import named_probes

    net = mlp(hidden=(8, 8), norm="noisy_bn")
    batch = (torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,)))
    row = {}
    for cb in named_probes(["channel_stats", "noise_acc"], net, batch, {"quantile_layers": ["norm2"]}, lr=0.1):
        row.update(cb(0, net))
    assert sum(k.startswith("norm2|channel|mean") for k in row) == 8 and "norm2|channel|std007" in row
    assert {"all|noise|on_acc", "all|noise|off_acc", "all|noise|on_loss", "all|noise|off_loss"} <= set(row)
    with pytest.raises(ValueError, match="quantile_layers"):
        named_probes(["channel_stats"], net, batch, {}, lr=0.1)
