"""bnlib.lab.notebook: every notebook's preamble in one call, and its sweep bound to the run cache."""

import json

import pytest
import torch

from bnlib.lab.experiment import Run
from bnlib.lab.notebook import setup


def test_setup_makes_the_folder_seeds_device_and_records_what_it_was_given(tmp_path):
    nb = setup("00_demo", out_dir=tmp_path / "out", preset="smoke", device="cpu", seeds=2, first_seed=7, width=3)
    assert nb.out.is_dir() and nb.runs_dir == nb.out / "runs" and nb.seeds == [7, 8] and nb.device == torch.device("cpu")
    nb.results.save()
    info = json.loads((nb.out / "metrics.json").read_text())["info"]
    assert {k: info[k] for k in ("notebook", "preset", "seeds", "first_seed", "device", "executor", "width")} == {
        "notebook": "00_demo", "preset": "smoke", "seeds": 2, "first_seed": 7, "device": "cpu", "executor": "local", "width": 3}


def test_setup_refuses_no_seeds_and_a_gpu_that_is_not_there(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="seeds must be an integer >= 1, got 0"):
        setup("00_demo", out_dir=tmp_path, preset="smoke", device="cpu", seeds=0, first_seed=0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="^device='cuda' but torch .* sees no CUDA device"):
        setup("00_demo", out_dir=tmp_path, preset="smoke", device="cuda", seeds=1, first_seed=0)


@pytest.mark.slow
def test_runs_trains_in_the_kernel_caches_and_applies_columns(tmp_path, data_root):
    nb = setup("00_demo", out_dir=tmp_path, preset="smoke", device="cpu", seeds=1, first_seed=0, data_root=data_root,
               executor="kernel")
    run = Run(dataset="mnist", model="mlp", steps=4, batch_size=16, lr=0.1, eval_every=2, train_size=64, test_size=32)
    first = nb.runs([run], nb.seeds, "demo", columns=lambda df: df.assign(arm="plain"))
    assert set(first["arm"]) == {"plain"} and first["step"].max() == 4 and list(nb.runs_dir.iterdir())
    again = nb.runs([run], nb.seeds, "demo")  # from the cache: the same rows
    assert again["test_acc"].tolist() == first["test_acc"].tolist()


def test_out_dir_resolves_from_the_repository_root_whatever_the_working_directory(tmp_path, monkeypatch):
    """Plain papermill starts the kernel where it is called: None and relative out_dirs must not depend on that."""
    from bnlib.lab.notebook import output_folder
    from bnlib.lab.series import REPO

    for cwd in (tmp_path, REPO / "notebooks", REPO):
        monkeypatch.chdir(cwd)
        assert output_folder("01_x") == REPO / "outputs" / "01_x"
        assert output_folder("01_x", "outputs/o") == REPO / "outputs" / "o"
        assert output_folder("01_x", tmp_path / "abs") == tmp_path / "abs"
