"""bnlib.sweep: finished runs are kept on disk, an interrupted sweep resumes without redoing them."""

import json

import pandas as pd
import pytest

from bnlib.sweep import run_key, run_sweep


class Boom(Exception):
    pass


def make_fn(calls, fail_on=None):
    def train(lr, depth, seed):
        calls.append((lr, depth, seed))
        if (lr, seed) == fail_on:
            raise Boom("interrupted")
        return pd.DataFrame({"step": [0, 1], "loss": [lr * depth + seed, lr]})

    return train


CONFIGS = [{"lr": 0.1, "depth": 2}, {"lr": 1.0, "depth": 3}]


def test_resume_after_interruption_loses_nothing_finished(tmp_path):
    calls = []
    with pytest.raises(Boom):
        run_sweep(make_fn(calls, fail_on=(1.0, 0)), CONFIGS, seeds=[0, 1], out_dir=tmp_path, progress=False)
    assert calls == [(0.1, 2, 0), (0.1, 2, 1), (1.0, 3, 0)]
    assert len(list(tmp_path.glob("*.csv"))) == 2 and not list(tmp_path.glob("*.tmp"))

    calls.clear()
    resumed = run_sweep(make_fn(calls), CONFIGS, seeds=[0, 1], out_dir=tmp_path, progress=False)
    assert calls == [(1.0, 3, 0), (1.0, 3, 1)]  # only the unfinished runs
    fresh = run_sweep(make_fn([]), CONFIGS, seeds=[0, 1], out_dir=tmp_path / "fresh", progress=False)
    pd.testing.assert_frame_equal(resumed, fresh)
    assert resumed["seed"].tolist() == [0, 0, 1, 1, 0, 0, 1, 1]
    assert resumed.loc[resumed["lr"] == 1.0, "depth"].eq(3).all()


def test_config_saved_beside_each_run_and_keys_differ(tmp_path):
    run_sweep(make_fn([]), CONFIGS, seeds=[0], out_dir=tmp_path, progress=False)
    metas = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*.json"))]
    assert sorted(m["config"]["lr"] for m in metas) == [0.1, 1.0]
    assert run_key("f", {"lr": 0.1}, 0) != run_key("f", {"lr": 0.1}, 1) != run_key("g", {"lr": 0.1}, 1)


def test_non_scalar_config_values_become_strings(tmp_path):
    def f(widths, seed):
        return pd.DataFrame({"n": [len(widths)]})

    df = run_sweep(f, [{"widths": [100, 100]}], seeds=[0], out_dir=tmp_path, progress=False)
    assert df["widths"].tolist() == ["[100, 100]"] and df["n"].tolist() == [2]
