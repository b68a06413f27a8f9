"""bnlib.plots: seed bands mark diverged runs and give each series its marker."""

import matplotlib

matplotlib.use("Agg")
import pandas as pd  # noqa: E402

from bnlib.plots import save_figure, seed_band  # noqa: E402


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
