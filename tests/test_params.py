"""bnlib.lab.params: every rule names the parameter, the rule and the value; the device check names the fix."""

import re

import pytest
import torch

from bnlib.lab import params as P

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
     (P.count.where(lambda v: v % 2 == 0, "and even"), "four", "x must be an integer >= 1 and even, got 'four'"),
     (P.executor, "cluster", 'x must be "local", "dask" (a LocalCluster on this machine) or "dask://HOST:PORT", got \'cluster\''),
     (P.positive, INF, "x must be a finite number > 0, got inf"),
     (P.positive, NAN, "x must be a finite number > 0, got nan"),
     (P.optional(P.positive), INF, "x must be a finite number > 0 or None, got inf"),
     (P.list_of(P.positive), [0.1, INF], "x must be a non-empty list, each a finite number > 0, got [0.1, inf] (bad entry inf)"),
     (P.list_of(P.positive), [NAN], "x must be a non-empty list, each a finite number > 0, got [nan] (bad entry nan)"),
     (P.fraction, NAN, "x must be a finite number in [0, 1), got nan"),
     (P.number(ge=0), INF, "x must be a finite number >= 0, got inf"),
     (P.count, INF, "x must be an integer >= 1, got inf"),
     (P.step_count, 10**12, "x must be an integer in [1, 10000000], got 1000000000000"),
     (P.step_count, 0, "x must be an integer in [1, 10000000], got 0"),
     (P.width_for("vgg11"), 1e-9, "x must be a finite number >= 0.0625 (vgg11's narrowest layer keeps >= 4 channels), got 1e-09"),
     (P.width_for("small_resnet"), 0.125,
      "x must be a finite number >= 0.25 (small_resnet's narrowest layer keeps >= 4 channels), got 0.125"),
     (P.width_for("small_cnn"), INF,
      "x must be a finite number >= 0.125 (small_cnn's narrowest layer keeps >= 4 channels), got inf")],
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
     (P.executor, "local"), (P.number(gt=0, le=1), 1), (P.list_of(P.count, length=2), [3, 3]),
     (P.step_count, P.MAX_STEPS), (P.width_for("vgg11"), 0.0625), (P.width_for("small_resnet"), 1)],
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


def test_check_refuses_a_name_papermill_injected_that_the_notebook_does_not_declare():
    """papermill -p seed 5 only warns and injects ``seed = 5`` after the parameters cell; the check cell refuses it,
    naming the valid parameters. The kernel's input history (``In``) tells the injected cell from the declared one."""
    params, check_cell = "seeds = 3  # runs\nlr = 0.1\nlrs: list = [0.1]", "P.check(globals(), seeds=P.count)"
    history = ["", params, "# Parameters\nseed = 5\nlr = 0.5\n", check_cell]
    with pytest.raises(ValueError, match=r"^unknown parameter 'seed' injected by papermill: .* valid names: seeds, lr, lrs$"):
        P.check({"In": history, "seeds": 3, "lr": 0.5, "seed": 5}, seeds=P.count)
    history[2] = "# Parameters\nseed = 5\nlearning_rate = 1\n"
    with pytest.raises(ValueError, match=r"^unknown parameters 'seed', 'learning_rate' injected"):
        P.check({"In": history, "seeds": 3}, seeds=P.count)
    history[2] = "# Parameters\nseeds = 5\nlr = 0.5\n"  # declared names: checked as usual
    P.check({"In": history, "seeds": 5}, seeds=P.count)
    P.check({"In": ["", params, check_cell], "seeds": 3, "seed": 5}, seeds=P.count)  # no injected cell: run by hand
    P.check({"seeds": 3, "seed": 5}, seeds=P.count)  # no kernel history at all


@pytest.mark.slow
def test_papermill_run_with_an_undeclared_parameter_fails_in_the_check_cell(tmp_path):
    import papermill as pm
    from toy import write_notebook

    check_cell = "from bnlib.lab import params as P\nP.check(globals(), seeds=P.count, lr=P.positive)"
    nb = write_notebook(tmp_path / "nb.ipynb", ["seeds = 3\nlr = 0.1", check_cell])
    pm.execute_notebook(str(nb), str(tmp_path / "ok.ipynb"), parameters={"seeds": 2}, progress_bar=False)
    message = "unknown parameter 'seed' injected by papermill.*valid names: seeds, lr"
    with pytest.raises(pm.PapermillExecutionError, match=message):
        pm.execute_notebook(str(nb), str(tmp_path / "bad.ipynb"), parameters={"seed": 5}, progress_bar=False)


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


def _kernel(path, injected: dict) -> dict:
    """The globals of a kernel that ran ``path``'s parameters cell, then papermill's injected cell for ``injected``."""
    import nbformat
    from papermill.translators import translate_parameters

    params = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code").source
    cell = translate_parameters("python3", "python", injected, "Parameters")
    values: dict = {}
    exec(params, values)
    exec(cell, values)
    values["In"] = ["", params, cell, "P.check(...)"]
    return values


@pytest.mark.parametrize("preset", ["smoke", "quick", "full"])
def test_every_notebook_passes_its_preset_check_as_the_runner_runs_it(preset):
    """What ``bnlib.run NN --preset X`` injects (the preset's values and the label), with an override or not, holds."""
    from bnlib.lab.presets import preset_parameters
    from bnlib.lab.series import notebook_identity, resolve_notebooks

    for path in resolve_notebooks():
        stem = notebook_identity(path)
        injected = {**preset_parameters(stem, preset), "preset": preset, "out_dir": "/tmp/x"}
        P.check(_kernel(path, injected), preset=P.preset_for(stem))
        P.check(_kernel(path, {**injected, "seeds": 7}), preset=P.preset_for(stem))  # an override by name is allowed


@pytest.mark.parametrize("preset", ["smoke", "full"])
def test_a_preset_label_alone_is_refused_naming_what_differs_and_the_command(preset):
    """``papermill -p preset smoke`` would run the defaults (quick's sizes) under the label smoke."""
    from bnlib.lab.presets import preset_parameters
    from bnlib.lab.series import notebook_identity, resolve_notebooks

    for path in resolve_notebooks():
        stem = notebook_identity(path)
        values = _kernel(path, {"preset": preset})
        name = next(k for k, v in preset_parameters(stem, preset).items() if values[k] != v)
        pattern = rf"^preset='{preset}' but these parameters do not hold {preset}'s values: .*\b{name}=.*" \
                  rf"`python -m bnlib\.run {stem[:2]} --preset {preset}`.* " \
                  rf"`papermill -f notebooks/presets/{stem[:2]}/{preset}\.yaml"
        with pytest.raises(ValueError, match=pattern):
            P.check(values, preset=P.preset_for(stem))


def test_preset_label_rules_quick_overrides_and_relabelled_values():
    stem = "01_internal_covariate_shift"
    from bnlib.lab.presets import preset_parameters
    from bnlib.lab.series import resolve_notebooks

    path = resolve_notebooks(["01"])[0]
    smoke = preset_parameters(stem, "smoke")
    P.check(_kernel(path, {"seeds": 2}), preset=P.preset_for(stem))  # quick with one override
    with pytest.raises(ValueError, match=r"preset='quick' but .*seeds=2 \(quick: 3\)"):  # smoke's sizes under quick's label
        P.check(_kernel(path, {**smoke, "preset": "quick"}), preset=P.preset_for(stem))
    P.check(_kernel(path, {**smoke, "preset": "smoke", "lin_steps": 999}), preset=P.preset_for(stem))  # one override
    with pytest.raises(ValueError, match=r"preset='smoke' but .*lin_steps=500 \(smoke: 60\)"):  # not set: the default
        P.check(_kernel(path, {"seeds": 2, "preset": "smoke"}), preset=P.preset_for(stem))
    with pytest.raises(ValueError, match=r"preset='full' but .*seeds=2 \(full: 5\)"):  # -f smoke.yaml -p preset full
        P.check(_kernel(path, {**smoke, "preset": "full"}), preset=P.preset_for(stem))
    with pytest.raises(ValueError, match=r"preset must be one of 'smoke', 'quick', 'full', got 'tiny'"):
        P.check({"preset": "tiny"}, preset=P.preset_for(stem))
    # by hand, without papermill: the parameters cell is the last one that assigns preset; an edited label is refused too
    values = {"In": ["", 'preset = "smoke"\nseeds = 3', "P.check(...)"], "preset": "smoke", "seeds": 3}
    with pytest.raises(ValueError, match=r"seeds=3 \(smoke: 2\)"):
        P.check(values, preset=P.preset_for(stem))


def test_check_parses_strings_that_papermill_and_yaml_pass_into_the_rules_type():
    """``papermill -p lrs [0.1,1]`` passes a string, PyYAML reads ``1e-5`` as one: a string (or a list's string entries) is
    parsed where the parsed value passes the rule, and written back into the notebook's globals."""
    import yaml

    values = {"lrs": "[0.1,1]", "lr": yaml.safe_load("lr: 1e-5")["lr"], "eps": yaml.safe_load("e: [1e-5, 0.1]")["e"],
              "test_size": "null", "device": "cpu", "label": "3", "steps": "10"}
    assert values["lr"] == "1e-5" and values["eps"] == ["1e-5", 0.1]  # what the kernel would get
    P.check(values, lrs=P.list_of(P.positive), lr=P.positive, eps=P.list_of(P.positive), test_size=P.optional(P.count),
            device=P.device, label=P.one_of("3", "4"), steps=P.count)
    assert values == {"lrs": [0.1, 1], "lr": 1e-5, "eps": [1e-5, 0.1], "test_size": None, "device": "cpu", "label": "3",
                      "steps": 10}
    assert type(values["steps"]) is int and type(values["lr"]) is float
    for bad, message in [("[0.1, -1]", r"got '\[0.1, -1\]'"), ("[0.1", r"got '\[0.1'"), ("abc", "got 'abc'")]:
        with pytest.raises(ValueError, match=message):  # still refused, as given, where parsing does not help
            P.check({"lrs": bad}, lrs=P.list_of(P.positive))
    with pytest.raises(ValueError, match="got '2.5'"):
        P.check({"steps": "2.5"}, steps=P.count)


def test_a_preset_check_compares_the_parsed_values():
    """``papermill -f smoke.yaml`` with a list passed as a string still matches the preset once parsed."""
    from bnlib.lab.presets import preset_parameters
    from bnlib.lab.series import resolve_notebooks

    stem = "01_internal_covariate_shift"
    injected = {**preset_parameters(stem, "smoke"), "preset": "smoke", "kappas": "[1, 10, 100]"}
    values = _kernel(resolve_notebooks(["01"])[0], injected)
    P.check(values, preset=P.preset_for(stem), kappas=P.list_of(P.number(ge=1)))
    assert values["kappas"] == [1, 10, 100]
