"""bnlib.train.fit on real MNIST: learning, divergence, determinism, callbacks, errors."""

import math
import re

import pandas as pd
import pytest
import torch
from torch import nn

from bnlib.data import dataset_stats
from bnlib.lab.batched import evaluate_batched, fit_batched
from bnlib.models import mlp
from bnlib.train import evaluate, fit, resolve_device

MEAN, STD = dataset_stats("mnist")


def small_fit(train, test, seed=0, norm="bn", steps=100, **kw):
    torch.manual_seed(seed)
    model = mlp(hidden=(64, 64), norm=norm, activation="relu")
    kw = {"batch_size": 60, "lr": 0.1, "eval_every": 50, "mean": MEAN, "std": STD, "progress": False, "device": "cpu", **kw}
    return fit(model, train, test, steps=steps, seed=seed, **kw), model


def test_loss_decreases_on_real_mnist(mnist):
    train, test = mnist
    df, model = small_fit(train, test, steps=300, eval_every=100)
    assert list(df["step"]) == [0, 100, 200, 300]
    assert df["train_loss"].iloc[-1] < 0.6 * df["train_loss"].iloc[1]
    assert df["test_acc"].iloc[0] < 0.3 and df["test_acc"].iloc[-1] > 0.9
    assert not df["diverged"].any()
    loss, acc = evaluate(model, test, mean=MEAN, std=STD, device="cpu")
    assert acc == pytest.approx(df["test_acc"].iloc[-1]) and loss == pytest.approx(df["test_loss"].iloc[-1])


@pytest.mark.exact
def test_same_seed_same_numbers_and_other_seed_differs(mnist):
    train, test = mnist
    a, model_a = small_fit(train, test, seed=3)
    b, model_b = small_fit(train, test, seed=3)
    c, _ = small_fit(train, test, seed=4)
    cols = ["train_loss", "train_acc", "test_loss", "test_acc"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    for pa, pb in zip(model_a.state_dict().values(), model_b.state_dict().values()):
        assert torch.equal(pa, pb)
    assert not a[cols].iloc[1:].equals(c[cols].iloc[1:])


class NanAfter(nn.Module):
    """Returns NaN logits from the k-th training forward on: a divergence at a known step."""

    def __init__(self, k):
        super().__init__()
        self.k, self.calls = k, 0
        self.fc = nn.Linear(784, 10)

    def forward(self, x):
        out = self.fc(x.flatten(1))
        if self.training:
            self.calls += 1
            if self.calls >= self.k:
                out = out * float("nan")
        return out


def test_divergence_recorded_at_its_step_and_stops(mnist):
    train, test = mnist
    torch.manual_seed(0)
    df = fit(NanAfter(7), train, test, steps=100, batch_size=60, lr=0.01, eval_every=5, progress=False, device="cpu")
    assert df["diverged"].tolist() == [False, False, True]
    last = df.iloc[-1]
    assert last["step"] == 7 and math.isnan(last["test_acc"])
    # the diverged row's train_loss is the mean over the window's good steps: step 6 alone (step 5 closed the last
    # window), i.e. the train_loss of the same run stopped at step 6 with an evaluation there
    torch.manual_seed(0)
    same = fit(NanAfter(7), train, test, steps=6, batch_size=60, lr=0.01, eval_every=5, progress=False, device="cpu")
    assert same["step"].tolist() == [0, 5, 6] and not same["diverged"].any()
    assert math.isfinite(last["train_loss"]) and last["train_loss"] == pytest.approx(same["train_loss"].iloc[-1])
    assert last["train_loss"] != pytest.approx(df["train_loss"].iloc[1])  # not the step-5 window's mean


def test_divergence_above_bound_on_raw_pixels(mnist):
    train, test = mnist
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    df = fit(model, train, test, steps=200, batch_size=100, lr=1.0, scale=1.0, eval_every=20, progress=False, device="cpu")
    assert df["diverged"].iloc[-1] and df["step"].iloc[-1] <= 20 and len(df) == 2


def test_callbacks_add_columns_and_adam_runs(mnist):
    train, test = mnist
    seen = []

    def cb(step, model):
        seen.append((step, model.training))
        return {"weight_norm": float(sum(p.detach().norm() ** 2 for p in model.parameters()) ** 0.5)}

    df, _ = small_fit(train, test, steps=60, eval_every=30, optimizer="adam", lr=1e-3, callbacks=[cb])
    assert seen == [(0, True), (30, True), (60, True)]
    assert df["weight_norm"].notna().all() and df["test_acc"].iloc[-1] > 0.5


BAD_COUNTS = [
    ({"steps": 2.5}, "steps must be an integer >= 1, got 2.5"),
    ({"steps": 0}, "steps must be an integer >= 1, got 0"),
    ({"steps": -1}, "steps must be an integer >= 1, got -1"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"batch_size": 2.5}, "batch_size must be an integer >= 1, got 2.5"),
    ({"eval_every": 0}, "eval_every must be an integer >= 1 or None, got 0"),
    ({"eval_every": 2.5}, "eval_every must be an integer >= 1 or None, got 2.5"),
]


@pytest.mark.parametrize(
    "kwargs, message",
    [({"lr": 0.0}, "lr must be a finite number > 0, got 0.0"), ({"lr": math.inf}, "lr must be a finite number > 0, got inf"),
     ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'")] + BAD_COUNTS,
)
def test_bad_arguments_name_the_problem(kwargs, message):
    x, y = torch.zeros(10, 1, 2, 2), torch.zeros(10, dtype=torch.long)
    args = {"steps": 1, "batch_size": 5, "lr": 0.1, "progress": False, "device": "cpu", **kwargs}
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        fit(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), (x, y), **args)


@pytest.mark.parametrize(
    "kwargs, message",
    BAD_COUNTS
    + [({"lr": [0.1, math.inf]}, "lr must be > 0, one value or one per seed (2), each a finite number, got [0.1, inf]")],
)
def test_fit_batched_bad_arguments_name_the_problem(kwargs, message):
    from bnlib.lab.batched import BatchedMLP

    x, y = torch.zeros(10, 1, 28, 28), torch.zeros(10, dtype=torch.long)
    args = {"seeds": [0, 1], "steps": 1, "batch_size": 5, "lr": 0.1, "progress": False, "device": "cpu", **kwargs}
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        fit_batched(BatchedMLP.from_seeds([0, 1], hidden=(4,)), (x, y), **args)


@pytest.mark.parametrize("evaluator", [evaluate, evaluate_batched])
@pytest.mark.parametrize("batch_size", [0, 2.5])
def test_evaluate_refuses_a_bad_batch_size(evaluator, batch_size):
    x, y = torch.zeros(4, 1, 2, 2), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="^" + re.escape(f"batch_size must be an integer >= 1, got {batch_size}") + "$"):
        evaluator(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), (x, y), batch_size=batch_size, device="cpu")


@pytest.mark.parametrize("device, shown", [("cuda", "'cuda'"), (torch.device("cuda", 0), "'cuda:0'")])
def test_cuda_without_a_gpu_is_refused_with_the_fix(device, shown, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    message = (f"device={shown} but torch {torch.__version__} sees no CUDA device (torch.cuda.is_available() is False); "
               "use -p device cpu or -p device auto")
    with pytest.raises(ValueError) as error:
        resolve_device(device)
    assert str(error.value) == message
    x, y = torch.zeros(10, 1, 2, 2), torch.zeros(10, dtype=torch.long)
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        fit(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), (x, y), steps=1, batch_size=5, lr=0.1, device=device, progress=False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")


def test_channels_last_conv_training_gives_the_same_numbers(data_root):
    from bnlib.data import load_dataset
    from bnlib.models import vgg

    x, y = load_dataset("cifar10", "test", data_root)  # real CIFAR-10 images (the test split is the smaller file)
    train, test = (x[:1000], y[:1000]), (x[1000:1500], y[1000:1500])
    mean, std = dataset_stats("cifar10")
    runs = {}
    for channels_last in (False, True):
        torch.manual_seed(0)
        model = vgg("vgg11", width=0.125, norm="torch_bn")
        runs[channels_last] = fit(model, train, test, steps=2, batch_size=32, lr=0.01, eval_every=1, mean=mean, std=std,
                                  augment=True, channels_last=channels_last, progress=False, device="cpu")
        assert model.conv1.conv.weight.is_contiguous(memory_format=torch.channels_last) == channels_last
    # step 1: the same forward pass; step 2: the same update. Later steps amplify rounding (about 10x per step here)
    for col in ["train_loss", "test_loss", "test_acc"]:
        assert runs[True][col].iloc[1:].to_numpy() == pytest.approx(runs[False][col].iloc[1:].to_numpy(), abs=1e-4), col


@pytest.mark.parametrize("norm", ["bn", "torch_bn"])
def test_batch_size_one_with_bn_is_refused_with_a_clear_message(norm):
    from bnlib.models import vgg

    x, y = torch.zeros(10, 3, 32, 32), torch.zeros(10, dtype=torch.long)
    with pytest.raises(ValueError, match=r"batch_size=1 with batch normalization \(8 BN layers.*batch_size >= 2"):
        fit(vgg("vgg11", width=0.125, norm=norm), (x, y), steps=1, batch_size=1, lr=0.1, progress=False)
    df = fit(vgg("vgg11", width=0.125, norm="none"), (x, y), steps=2, batch_size=1, lr=0.1, progress=False)
    assert list(df["step"]) == [0, 1, 2]


@pytest.mark.parametrize("norm", ["bn", "torch_bn"])
def test_bf16_autocast_runs_convs_in_bf16_and_bn_in_float32(norm):
    from bnlib.models import vgg

    torch.manual_seed(0)
    model = vgg("vgg11", width=0.125, norm=norm)
    dtypes = {}

    def record_dtype(module, args, output):  # returns None, so the output is unchanged
        dtypes.setdefault(type(module).__name__, output.dtype)

    model.conv2.conv.register_forward_hook(record_dtype)
    model.conv2.norm.register_forward_hook(record_dtype)
    x, y = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8), torch.randint(0, 10, (64,))
    df = fit(model, (x, y), (x, y), steps=2, batch_size=32, lr=0.05, autocast=True, progress=False, device="cpu")
    assert dtypes == {"Conv2d": torch.bfloat16, type(model.conv2.norm).__name__: torch.float32}
    assert df["train_loss"].iloc[1:].notna().all() and 0 <= df["test_acc"].iloc[-1] <= 1
    assert model.conv1.conv.weight.dtype == torch.float32  # master weights stay float32


def test_reg_cf_adds_the_weighted_penalty_and_reports_it(mnist):
    from bnlib.models import small_cnn
    from bnlib.norms import model_penalty

    train, test = mnist
    small = (train[0][:600], train[1][:600])
    frames = {}
    for reg_cf in (0.0, 10.0):
        torch.manual_seed(0)
        net = small_cnn(in_channels=1, image_size=28, width=0.25, norm="kl_only")
        frames[reg_cf] = fit(net, small, None, steps=40, batch_size=60, lr=0.01, reg_cf=reg_cf, eval_every=20, progress=False,
                             device="cpu")
        assert model_penalty(net).detach().item() > 0  # the last training forward left its penalties
    plain, reg = frames[0.0], frames[10.0]
    assert plain["penalty"].iloc[1:].notna().all() and reg["penalty"].iloc[1:].notna().all()
    assert reg["penalty"].iloc[-1] < 0.5 * plain["penalty"].iloc[-1]  # the penalty is minimized only when weighted in
    with pytest.raises(ValueError, match="reg_cf=1.0 but no layer of the model stores a penalty"):
        fit(small_cnn(in_channels=1, image_size=28, width=0.25, norm="bn"), small, steps=1, batch_size=60, lr=0.1, reg_cf=1.0,
            progress=False, device="cpu")
    with pytest.raises(ValueError, match="reg_cf must be >= 0"):
        fit(small_cnn(in_channels=1, image_size=28, width=0.25), small, steps=1, batch_size=60, lr=0.1, reg_cf=-1.0,
            progress=False)
