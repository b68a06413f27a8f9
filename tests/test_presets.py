"""bnlib.lab.presets: every notebook has presets, and at ``full`` enough seeds for a verdict."""

from bnlib.lab.presets import PRESETS
from bnlib.lab.series import notebook_parameters, resolve_notebooks


def test_presets_cover_every_notebook():
    assert sorted(PRESETS) == sorted(p.stem for p in resolve_notebooks())


def test_full_presets_have_at_least_five_seeds():
    """At `full` every comparison that carries a verdict has >= 5 seeds (DESIGN.md, Verdicts)."""
    for stem in PRESETS:
        params = {**{k: v for k, v in notebook_parameters(resolve_notebooks([stem])[0]).items()}, **PRESETS[stem]["full"]}
        for name in ("seeds", "sweep_seeds"):
            if name in params:
                assert int(params[name]) >= 5, f"{stem}: {name} = {params[name]} at full"


def test_preset_files_exist_for_every_notebook_and_preset_and_equal_presets():
    """``notebooks/presets/NN/X.yaml`` reads back (as papermill -f reads it) as ``preset: X`` plus PRESETS[stem][X], with the
    same types (1e-05 a float, None null); ``python -m bnlib.lab.presets`` regenerates them."""
    import yaml

    from bnlib.lab.presets import PRESET_FILES, PRESET_NAMES, preset_file, preset_yaml

    def typed(value):
        return [typed(v) for v in value] if isinstance(value, list) else (type(value).__name__, value)

    expected = set()
    for stem in PRESETS:
        for preset in PRESET_NAMES:
            path = preset_file(stem, preset)
            expected.add(path)
            assert path.exists(), f"{path} missing: run python -m bnlib.lab.presets"
            read = yaml.safe_load(path.read_text())
            want = {"preset": preset, **PRESETS[stem][preset]}
            assert list(read) == list(want) and {k: typed(v) for k, v in read.items()} == {k: typed(v) for k, v in want.items()}
            assert path.read_text() == preset_yaml(stem, preset), f"{path} is stale: run python -m bnlib.lab.presets"
    assert set(PRESET_FILES.glob("*/*")) == expected  # no file left from a renamed notebook or preset
