"""bnlib.probes: distribution statistics with known answers, and a probe that leaves the model as it found it."""

import math

import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn

from bnlib.probes import LayerStatsProbe, tidy_layer_stats, unit_stats


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
