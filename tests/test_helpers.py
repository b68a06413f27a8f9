"""bnlib.models, bnlib.probes, bnlib.lab.params and bnlib.plots (bnlib.verdicts: test_verdicts.py)."""

import re

import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from bnlib.lab import params as P  # noqa: E402
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
    with pytest.raises(ValueError, match="unknown norm kind 'switch_bn'"):
        mlp(norm="switch_bn")
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


INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    "rule, value, message",
    [(P.positive, -1, "x must be a finite number > 0, got -1"),
     (P.optional(P.positive), 0, "x must be a finite number > 0 or None, got 0"),
     (P.count, 0, "x must be an integer >= 1, got 0"),
     (P.count, 2.5, "x must be an integer >= 1, got 2.5"),
     (P.count, True, "x must be an integer >= 1, got True"),
     (P.nonnegative, -1, "x must be an integer >= 0, got -1"),
     (P.integer(min=2, max=8), 9, "x must be an integer in [2, 8], got 9"),
     (P.list_of(P.positive), [0.1, -1], "x must be a non-empty list, each a finite number > 0, got [0.1, -1] (bad entry -1)"),
     (P.list_of(P.positive), [], "x must be a non-empty list, each a finite number > 0, got []"),
     (P.list_of(P.positive), "0.1", "x must be a non-empty list, each a finite number > 0, got '0.1'"),
     (P.list_of(P.count, length=2), [3], "x must be a list of 2, each an integer >= 1, got [3]"),
     (P.fraction, 1.0, "x must be a finite number in [0, 1), got 1.0"),
     (P.number(gt=0, le=1), 0, "x must be a finite number in (0, 1], got 0"),
     (P.number(lt=0), 0, "x must be a finite number < 0, got 0"),
     (P.one_of("relu"), "swish", "x must be one of 'relu', got 'swish'"),
     (P.one_of(None, True, False), 1, "x must be one of None, True, False, got 1"),
     (P.flag, "yes", "x must be one of True, False, got 'yes'"),
     (P.interval(P.positive), [1.0, 0.1], "x must be [low, high] with low < high, each a finite number > 0, got [1.0, 0.1]"),
     (P.interval(P.positive), [0.1], "x must be [low, high] with low < high, each a finite number > 0, got [0.1]"),
     (P.count.where(lambda v: v % 2 == 0, "and even"), 3, "x must be an integer >= 1 and even, got 3"),
     (P.count.where(lambda v: v % 2 == 0, "and even"), "4", "x must be an integer >= 1 and even, got '4'"),
     (P.executor, "cluster", 'x must be "local", "dask" (a LocalCluster on this machine) or "dask://HOST:PORT", got \'cluster\''),
     (P.positive, INF, "x must be a finite number > 0, got inf"),
     (P.positive, NAN, "x must be a finite number > 0, got nan"),
     (P.optional(P.positive), INF, "x must be a finite number > 0 or None, got inf"),
     (P.list_of(P.positive), [0.1, INF], "x must be a non-empty list, each a finite number > 0, got [0.1, inf] (bad entry inf)"),
     (P.list_of(P.positive), [NAN], "x must be a non-empty list, each a finite number > 0, got [nan] (bad entry nan)"),
     (P.fraction, NAN, "x must be a finite number in [0, 1), got nan"),
     (P.number(ge=0), INF, "x must be a finite number >= 0, got inf"),
     (P.count, INF, "x must be an integer >= 1, got inf")],
)
def test_rules_name_the_parameter_the_rule_and_the_value(rule, value, message):
    with pytest.raises(ValueError) as error:
        rule(x=value)
    assert str(error.value) == message
    with pytest.raises(ValueError) as error:
        P.check({"x": value}, x=rule)
    assert str(error.value) == message


@pytest.mark.parametrize(
    "rule, value",
    [(P.positive, 1e-9), (P.optional(P.integer(min=2)), None), (P.integer(min=2), 2), (P.one_of(None, True), None),
     (P.list_of(P.one_of("a", "b")), ("a", "b", "a")), (P.interval(P.positive), [1e-6, 1e-2]), (P.executor, "dask://h:8786"),
     (P.executor, "local"), (P.number(gt=0, le=1), 1), (P.list_of(P.count, length=2), [3, 3])],
)
def test_rules_pass_good_values(rule, value):
    rule(x=value)
    P.check({"x": value}, x=rule)


def test_check_goes_in_order_and_names_a_misspelt_parameter():
    with pytest.raises(ValueError, match="^a must be an integer >= 1, got 0$"):
        P.check({"a": 0, "b": 0}, a=P.count, b=P.count)
    with pytest.raises(NameError, match=r"^check\(step=\.\.\.\): no parameter named 'step'"):
        P.check({"steps": 1}, step=P.count)
    assert P.seeds_from(100, 3) == [100, 101, 102] and P.seeds_from(0, 1) == [0]
    with pytest.raises(ValueError, match="^seeds must be an integer >= 1, got 0$"):
        P.seeds_from(0, 0)


@pytest.mark.parametrize("value", ["cpu", "auto", "cuda", "cuda:1"])
def test_device_check_accepts_cpu_auto_and_cuda_where_available(value, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    P.device(device=value)


@pytest.mark.parametrize("value", ["cuda", "cuda:0"])
def test_device_check_refuses_cuda_without_a_gpu_and_names_the_fix(value, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    P.device(device="cpu", fallback="auto")  # no CUDA needed
    with pytest.raises(ValueError) as error:
        P.device(probe_device=value)
    assert str(error.value) == (
        f"probe_device={value!r} but torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False); "
        "use -p probe_device cpu or -p probe_device auto"
    )


@pytest.mark.parametrize("value", ["gpu", "CPU", "cuda:", "cuda:x", "", None, 0])
def test_device_check_refuses_unknown_devices(value):
    message = f"device must be 'cpu', 'cuda' (or 'cuda:N') or 'auto', got {value!r}"
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        P.device(device=value)


def test_seed_band_marks_diverged_runs(tmp_path):
    df = pd.DataFrame({"lr": [0.1, 0.1, 1.0, 1.0], "acc": [0.9, 0.8, float("nan"), 0.5], "diverged": [False, False, True, False]})
    ax = seed_band(df, "lr", "acc", logx=True, xlabel="learning rate", ylabel="accuracy")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "diverged" in labels and ax.get_xscale() == "log" and ax.get_ylabel() == "accuracy"
    assert save_figure(ax.figure, tmp_path, "f").stat().st_size > 1000


def test_seed_band_gives_each_series_its_marker():
    df = pd.DataFrame({"step": [0, 1] * 4, "acc": [0.1, 0.5, 0.2, 0.6, 0.1, 0.4, 0.3, 0.7], "seed": [0, 0, 1, 1] * 2,
                       "net": ["BN"] * 4 + ["ghost BN"] * 4})
    ax = seed_band(df, "step", "acc", hue="net", marker={"BN": "o", "ghost BN": "D"})
    assert {line.get_label(): line.get_marker() for line in ax.get_lines() if line.get_label() in ("BN", "ghost BN")} == \
        {"BN": "o", "ghost BN": "D"}
    assert [h.get_marker() for h in ax.get_legend().legend_handles] == ["o", "D"]
