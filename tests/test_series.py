"""bnlib.lab.series: notebooks by name, ``-p`` values parsed and checked against the parameters cell."""

import pytest

from bnlib.lab.series import check_parameters, parse_value, resolve_notebooks


def test_resolve_by_number_and_unknown_name():
    assert resolve_notebooks(["01"])[0].name == "01_internal_covariate_shift.ipynb"
    assert [p.stem[:2] for p in resolve_notebooks()] == sorted(p.stem[:2] for p in resolve_notebooks())
    with pytest.raises(ValueError, match="no notebook matches 'xx'; the series: 01_internal_covariate_shift"):
        resolve_notebooks(["xx"])


def test_parse_value():
    assert [parse_value(v) for v in ["3", "0.5", "[1, 2]", "true", "None", "relu"]] == [3, 0.5, [1, 2], True, None, "relu"]


def test_check_parameters_converts_to_the_defaults_kind_and_refuses_the_rest():
    path = resolve_notebooks(["02"])[0]
    assert check_parameters(path, {"seeds": 3.0, "steps": 1e4, "lr": None}) == {"seeds": 3, "steps": 10000, "lr": None}
    with pytest.raises(ValueError, match="^unknown parameter 'step' for 02_mnist_reproduction; valid parameters: .*steps"):
        check_parameters(path, {"step": 10})
    with pytest.raises(ValueError, match=r"^02_mnist_reproduction: parameter 'seeds' takes an integer \(its default is 3\)"):
        check_parameters(path, {"seeds": "three"})
    with pytest.raises(ValueError, match="^02_mnist_reproduction: parameter 'sweep_lrs' takes a list"):
        check_parameters(path, {"sweep_lrs": 0.1})  # a list's default wants a list
    assert check_parameters(path, {}) == {}
