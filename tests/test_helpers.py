"""bnlib.models, bnlib.probes, bnlib.params and bnlib.plots (bnlib.verdicts: test_verdicts.py)."""


import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from bnlib import params as P  # noqa: E402
from bnlib.models import mlp  # noqa: E402
from bnlib.norms import BatchNorm  # noqa: E402
from bnlib.plots import save_figure, seed_band  # noqa: E402
from bnlib.probes import QuantileProbe, layer_outputs  # noqa: E402


def test_mlp_structure_follows_the_paper():
    plain, bn = mlp(), mlp(norm="bn")
    assert [m.out_features for m in plain if isinstance(m, nn.Linear)] == [100, 100, 100, 10]
    assert all(m.bias is not None for m in plain if isinstance(m, nn.Linear))
    assert [m.bias is None for m in bn if isinstance(m, nn.Linear)] == [True, True, True, False]
    assert sum(isinstance(m, BatchNorm) for m in bn) == 3
    assert isinstance(bn.act1, nn.Sigmoid) and isinstance(mlp(activation="relu").act2, nn.ReLU)


def test_mlp_init_std_and_errors():
    torch.manual_seed(0)
    net = mlp(hidden=(500,), init_std=0.01)
    assert net.fc1.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert net.fc1.bias.abs().max().item() == 0
    with pytest.raises(ValueError, match="unknown activation 'swish'; valid activations: sigmoid, relu"):
        mlp(activation="swish")
    with pytest.raises(ValueError, match="unknown norm kind 'batch_renorm'"):
        mlp(norm="batch_renorm")
    with pytest.raises(ValueError, match="init_std must be > 0"):
        mlp(init_std=0)


def test_quantile_probe_matches_torch_quantile_and_restores_mode():
    torch.manual_seed(0)
    net = mlp(hidden=(16, 8), norm="bn")
    x = torch.randn(200, 1, 28, 28)
    probe = QuantileProbe({"n2": net.norm2}, x, qs=(0.15, 0.5, 0.85))
    probe(5, net)
    assert net.training
    net.eval()
    expected = torch.quantile(net.norm2(net.fc2(net.act1(net.norm1(net.fc1(x.flatten(1)))))), torch.tensor([0.15, 0.5, 0.85]), dim=0)
    frame = probe.frame()
    got = frame.pivot(index="unit", columns="q", values="value").to_numpy().T
    assert torch.allclose(torch.tensor(got), expected.detach(), atol=1e-5)
    assert set(frame["q"]) == {0.15, 0.5, 0.85} and frame["step"].eq(5).all()


def test_quantile_probe_on_a_batched_model_gives_one_set_per_model():
    from bnlib.models import BatchedMLP

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


@pytest.mark.parametrize(
    "check, kwargs, message",
    [(P.positive, dict(lr=-1), "lr must be > 0, got -1"),
     (P.positive, dict(none_ok=True, base_lr=0), "base_lr must be > 0 or None, got 0"),
     (P.positive_int, dict(seeds=3, steps=0), "steps must be an integer >= 1, got 0"),
     (P.positive_int, dict(steps=2.5), "steps must be an integer >= 1, got 2.5"),
     (P.positive_int, dict(steps=True), "steps must be an integer >= 1, got True"),
     (P.nonnegative_int, dict(first_seed=-1), "first_seed must be an integer >= 0, got -1"),
     (P.all_positive, dict(lrs=[0.1, -1]), r"lrs must be a list of numbers > 0, got \[0.1, -1\] \(bad entry -1\)"),
     (P.all_positive, dict(lrs=[]), "lrs must be a non-empty list"),
     (P.in_range, dict(low=0, high=1, dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
     (P.one_of, dict(options=["relu"], activation="swish"), "activation must be one of 'relu', got 'swish'")],
)
def test_param_checks_name_the_parameter(check, kwargs, message):
    with pytest.raises(ValueError, match=message):
        check(**kwargs)


def test_param_checks_pass_good_values_and_seeds_from():
    P.positive(lr=0.1, eps=1e-5)
    P.positive_int(minimum=2, none_ok=True, test_size=None, batch_size=2)
    P.one_of(["cpu", "cuda"], device="cpu")
    assert P.seeds_from(100, 3) == [100, 101, 102] and P.seeds_from(0, 1) == [0]


def test_seed_band_marks_diverged_runs(tmp_path):
    df = pd.DataFrame({"lr": [0.1, 0.1, 1.0, 1.0], "acc": [0.9, 0.8, float("nan"), 0.5], "diverged": [False, False, True, False]})
    ax = seed_band(df, "lr", "acc", logx=True, xlabel="learning rate", ylabel="accuracy")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "diverged" in labels and ax.get_xscale() == "log" and ax.get_ylabel() == "accuracy"
    assert save_figure(ax.figure, tmp_path, "f").stat().st_size > 1000
