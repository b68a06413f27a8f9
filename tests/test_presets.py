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
