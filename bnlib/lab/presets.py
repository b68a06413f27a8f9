"""Parameter presets per notebook for ``python -m bnlib.run --preset NAME``.

``quick`` is each notebook's own defaults (its ``parameters`` cell), so it is
empty here. ``smoke`` is for tests and CI (every cell runs, every figure is
drawn, each notebook <= 60 s on 2 CPU cores); ``full`` is the papers' scale, with >= 5 seeds for every
comparison that carries a verdict.

Example:
    >>> preset_parameters("01_internal_covariate_shift", "quick")
    {}
"""

from __future__ import annotations

from pathlib import Path

# ---------------------------------------------------------------- the presets, per notebook

PRESET_NAMES = ("smoke", "quick", "full")

# Wall seconds of each notebook at ``quick`` and ``smoke`` on a 2-core CPU, two at a time with one thread each (quick:
# ``make reproduce`` on a fresh clone, 2026-12-04, on 2026-12-06 the same machine type ran 03 and 06 2.4x slower;
# smoke: the tests' ``bnlib.run --preset smoke --jobs 2`` on a 2-core Intel Xeon, 2026-12-07). ``bnlib.run --jobs N``
# starts the costliest notebooks first when the output folder holds no earlier run to go by, and its progress lines
# estimate the time left from them.
TYPICAL_SECONDS: dict[str, dict[str, float]] = {
    "quick": {
        "01_internal_covariate_shift": 213,
        "02_mnist_reproduction": 509,
        "03_cifar10_experiments": 291,
        "04_failed_variants": 204,
        "05_loss_landscape": 205,
        "06_batchnorm_in_practice": 339,
    },
    "smoke": {
        "01_internal_covariate_shift": 45,
        "02_mnist_reproduction": 41,
        "03_cifar10_experiments": 66,
        "04_failed_variants": 120,
        "05_loss_landscape": 51,
        "06_batchnorm_in_practice": 74,
    },
}

PRESETS: dict[str, dict[str, dict]] = {
    "01_internal_covariate_shift": {
        "smoke": {
            "seeds": 2,
            "kappas": [1, 10, 100],
            "lin_steps": 60,
            "lin_lrs": [1e-5, 1e-3, 1e-1],
            "ics_steps": 150,
            "ics_eval_every": 50,
            "whiten_dims": [32, 128],
            "whiten_repeats": 2,
            "cov_batch_sizes": [16, 64, 256],
            "bias_steps": 20,
            "inf_steps": 150,
            "eps_steps": 100,
            "eps_values": [1e-8, 1e-5, 1e-3],
            "scale_steps": 100,
        },
        "quick": {},
        "full": {
            "seeds": 5,
            "lin_steps": 2000,
            "ics_steps": 10000,
            "ics_eval_every": 250,
            "inf_steps": 5000,
            "eps_steps": 5000,
            "scale_steps": 5000,
        },
    },
    "02_mnist_reproduction": {
        "smoke": {
            "seeds": 2,
            "steps": 200,
            "eval_every": 50,
            "probe_size": 200,
            "sweep_steps": 100,
            "sweep_lrs": [0.1, 1.0],
            "sweep_init_stds": [0.03, 0.3],
            "variant_steps": 100,
            "variant_lrs": [0.5],
        },
        "quick": {},
        "full": {
            "seeds": 5,
            "steps": 50000,
            "eval_every": 500,
            "sweep_steps": 10000,
            "variant_steps": 10000,
        },
    },
    "03_cifar10_experiments": {
        "smoke": {
            "train_size": 512,
            "test_size": 500,
            "batch_size": 64,
            "epochs": 2,
            "lrs": [0.03, 0.1],
            "lr_multipliers": [5],
            "warmup_multipliers": [5],
            "sigmoid_lrs": [0.3],
            "adam_lrs": [0.001],
            "final_epochs": 4,
            "memorize_size": 256,
            "memorize_epochs": 3,
            "init_scales": [0.1, 1.0, 10.0],
        },
        "quick": {},
        "full": {
            "train_size": None,
            "test_size": None,
            "seeds": 5,
            "tune_seeds": 2,
            "grid_seeds": 3,
            "epochs": 16,
            "final_epochs": 32,
            "sigmoid_lrs": [0.01, 0.03, 0.1, 0.3, 1.0],
            "memorize_size": 10000,
            "memorize_epochs": 40,
            "init_scales": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0],
            "init_epochs": 2,
        },
    },
    "04_failed_variants": {
        "smoke": {
            "datasets": ["mnist", "cifar10"],
            "width": 0.25,
            "seeds": 2,
            "steps": 20,
            "cifar_steps": 8,
            "cifar_seeds": 2,
            "eval_every": 20,
            "probe_every": 20,
            "test_size": 300,
            "probe_size": 32,
            "sweep_lrs": [0.1, 3.0],
            "sweep_seeds": 2,
            "sweep_steps": 10,
            "author_steps": 20,
            "bounds": [2.0, 5.0],
        },
        "quick": {},
        "full": {
            # the author's setting on CIFAR-10 (ResNet at width 0.25, Adam, bound 3, reg_cf 1e-3: 6 variants x 3 seeds x 10
            # epochs) and Fashion-MNIST for everything that needs many runs; MNIST stays out (there no normalization comes
            # within 0.3 points of BN, so nothing can fail against BN)
            "datasets": ["fashion_mnist", "cifar10"],
            "sweep_dataset": "fashion_mnist",
            "width": 0.25,  # width 1 costs 4-5x more per step on a CPU
            "seeds": 5,
            "cifar_seeds": 3,
            "steps": 2000,  # 3.3 epochs of 60,000 images at batch 100
            "cifar_steps": 4500,  # 10 epochs of 45,000 images at batch 100: long enough for the ResNet to learn
            "eval_every": 250,
            "probe_every": 250,
            "probe_size": 256,
            "test_size": None,
            "sweep_seeds": 5,
            "sweep_lrs": [0.01, 0.1, 1.0, 3.0],
            "sweep_steps": 500,
            "author_steps": 2000,
            "bounds": [1.5, 2.0, 3.0, 5.0],
            "fixed_stds": [0.01, 0.1],
        },
    },
    "05_loss_landscape": {
        "smoke": {
            "seeds": 2,
            "steps": 20,
            "probe_every": 10,
            "probe_size": 64,
            "etas": [1.0, 2.0],
            "hessian_iters": 3,
            "test_size": 300,
            "dln_layers": 6,
            "dln_dim": 5,
            "dln_samples": 64,
            "dln_steps": 20,
            "slice_points": 5,
        },
        "quick": {},
        "full": {
            "width": 0.0625,
            "seeds": 5,
            # the paper's length, about 15,000 steps (43 epochs of 45,000 images at batch 128). Estimate from the reference's
            # step times at width 1/8 (outputs/reference/05_loss_landscape/runs/*.json, elapsed_s minus probe_s over 7,000
            # steps: BN 0.078 s, l1 0.098, l2 0.096, l-inf 0.079, noisy BN 0.085, plain 0.070; plain at lr 0.5 diverged
            # after 2,800 steps on average), scaled by a pilot's ratio of width 1/16 to 1/8 in the same process (0.63-0.83
            # for the normalized networks, 0.92 for the plain one) and, for noisy BN, by its per-activation noise (1.8 x BN
            # at 1/16): 40 runs, 31,700-39,900 s of one-thread worker time, plus 11 probes of about 4.5 s per run (2,000 s),
            # on two workers: 4.7-5.8 h (the pilot ran beside another job: time it on an idle machine before a full run; the
            # run cache lets it be built in several sittings)
            "steps": 15000,
            "probe_every": 1500,
            "probe_size": 256,
            "test_size": None,
            "hessian_iters": 20,
            "dln_steps": 3000,
            "slice_points": 21,
        },
    },
    "06_batchnorm_in_practice": {
        "smoke": {
            "seeds": 2,
            "sweep_seeds": 2,
            "test_size": 200,
            "steps": 40,
            "eval_batch_sizes": [1, 2, 64],
            "lag_steps": 10,
            "lag_every": 5,
            "recompute_batches": 2,
            "port_batches": 3,
            "small_batch_kinds": ["none", "torch_bn", "batch_renorm", "ln", "in", "gn"],
            "small_batch_sizes": [2, 16],
            "small_batch_epochs": 2,
            "small_batch_train_size": 64,
            "small_batch_lr_factors": [1.0, 4.0],
            "small_batch_widen": 1,
            "ghost_batch": 16,
            "ghost_groups": [2],
            "gn_lr_factors": [1.0, 2.0],
            "dist_batch": 8,
            "fold_widths": [0.125],
            "fold_repeats": 3,
            "overfit_size": 8,
            "overfit_steps": 20,
            "sweep_lrs": [0.001, 1.0],
            "sweep_steps": 10,
            "search_train_size": 200,
            "folds": 2,
            "search_grid": [2, 2],
            "search_repeats": 2,
            "final_steps": 10,
            "finetune_size": 32,
            "finetune_steps": 5,
        },
        "quick": {},
        "full": {
            # VGG-11 x1/8 for 2 CPU cores; about 4.5 h on 2 cores from an empty cache (base networks and pitfall runs cached),
            # estimated from the per-step times in the 2026-12 reference's run cache (outputs/reference/06_*/runs/*.json:
            # train_s / steps): batch 2 about 5.5 ms a step, 8: 10 ms, 32: 25 ms, 64: 27 ms (so 128 about 45 ms); GroupNorm and
            # InstanceNorm 1.1-1.6x, batch renorm and ghost BN (bnlib's Python BN) about 1.5x. Section 4: 80,000 images per run,
            # about 360-620 s per kind over the 4 batch sizes (2,830 s for the 6 kinds), x (3 tuning rates + about 1 widened +
            # 4 more seeds), plus 8 evaluations on 10,000 test images per run: about 25,000 s of one worker. Ghost BN 1,800 s,
            # GroupNorm networks 1,000 s, weight-decay networks 420 s, search (2 nets x 54 trials x 2 folds x 600 steps, final
            # runs) 4,100 s, lag runs (retrained: recompute on augmented batches) 1,300 s: about 34,000 s, 4.7 h on 2 workers.
            # On a GPU add -p width 1
            "width": 0.125,
            "seeds": 5,
            "sweep_seeds": 5,
            "test_size": None,
            "steps": 3000,
            "lag_steps": 1000,
            "lag_every": 200,
            "recompute_batches": 20,
            "small_batch_kinds": ["none", "torch_bn", "batch_renorm", "ln", "in", "gn"],
            "small_batch_sizes": [2, 8, 32, 128],
            "small_batch_epochs": 8,
            "small_batch_train_size": 10000,
            "small_batch_lr_factors": [0.25, 1.0, 4.0],
            "small_batch_widen": 2,
            "small_batch_tune_seeds": 1,
            "ghost_batch": 128,
            "ghost_groups": [2, 8, 32],
            "gn_lr_factors": [0.5, 1.0, 2.0],
            "sweep_steps": 500,
            "search_train_size": 10000,
            "folds": 2,
            "search_grid": [3, 3],
            "search_repeats": 5,
            "final_steps": 600,
            "finetune_steps": 200,
        },
    },
}


SERIES: tuple[str, ...] = tuple(PRESETS)  # the series' notebooks, in order: each one's identity (metadata.bnlib.notebook)


def preset_parameters(notebook: str, preset: str) -> dict:
    """The parameters ``preset`` sets for ``notebook`` (a stem like ``01_internal_covariate_shift``).

    Example:
        >>> preset_parameters("01_internal_covariate_shift", "smoke")["seeds"]
        2
    """
    if preset not in PRESET_NAMES:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESET_NAMES)}")
    return dict(PRESETS.get(notebook, {}).get(preset, {}))


# ---------------------------------------------------------------- the presets as papermill parameter files

PRESET_FILES = Path(__file__).resolve().parents[2] / "notebooks" / "presets"
"""``notebooks/presets/NN/{smoke,quick,full}.yaml``: each preset of each notebook as a file for ``papermill -f``,
generated from :data:`PRESETS` (``python -m bnlib.lab.presets`` rewrites them; ``tests/test_presets.py`` checks that
they match)."""


def preset_file(notebook: str, preset: str) -> Path:
    """The parameter file of ``preset`` for ``notebook``: ``notebooks/presets/NN/preset.yaml``.

    Example:
        >>> preset_file("01_internal_covariate_shift", "smoke").relative_to(PRESET_FILES.parents[1]).as_posix()
        'notebooks/presets/01/smoke.yaml'
    """
    return PRESET_FILES / notebook[:2] / f"{preset}.yaml"


def preset_yaml(notebook: str, preset: str) -> str:
    """The text of :func:`preset_file`: a header, ``preset: NAME``, then the preset's parameters (YAML that reads back
    as the same Python values: ``1e-05`` is written ``1.0e-05``, which PyYAML reads as a float).

    Example:
        >>> print(preset_yaml("02_mnist_reproduction", "full").splitlines()[2:5])
        ['preset: full', 'seeds: 5', 'steps: 50000']
    """
    import yaml

    number = notebook[:2]
    header = (f"# {notebook}, preset {preset}: papermill -f notebooks/presets/{number}/{preset}.yaml (or python -m bnlib.run "
              f"{number} --preset {preset})\n# generated from bnlib/lab/presets.py by python -m bnlib.lab.presets: edit there\n")
    values = {"preset": preset, **preset_parameters(notebook, preset)}
    text = yaml.safe_dump(values, sort_keys=False, default_flow_style=None, width=1000)  # lists on one line
    return header + (yaml.safe_dump(values, sort_keys=False) if text.startswith("{") else text)  # not {preset: quick}


def write_preset_files() -> list[Path]:
    """Write every notebook's preset files (:func:`preset_file`) from :data:`PRESETS`; returns their paths."""
    written = []
    for notebook in SERIES:
        for preset in PRESET_NAMES:
            path = preset_file(notebook, preset)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(preset_yaml(notebook, preset))
            written.append(path)
    return written


if __name__ == "__main__":
    print(f"wrote {len(write_preset_files())} preset files under {PRESET_FILES}")
