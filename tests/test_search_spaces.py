"""Every method's search space, without Ray: a FixedTrial replay, a seeded Optuna study, the grids the
papers searched, the constraints between parameters, the fine-tuning part and get_space's errors."""
from __future__ import annotations

import dataclasses
import importlib
import itertools
import math
import sys
import warnings

import optuna
import pytest

import search_spaces
from benchmark.errors import BenchmarkInputError
from benchmark.methods import METHODS, get_method
from search_spaces import finetune, get_space, list_spaces, tuned_space

optuna.logging.set_verbosity(optuna.logging.WARNING)

RESERVED = {"pretrain_batch_size", "pretrain_lr"}  # applied to the pretraining Recipe, not the Config

# The values each parameter may take, written from the papers (not copied from the modules).
SI = {"num_mixtures": {2, 3}, "sources_per_mixture": {2, 3, 4}, "pool_size": {3, 5, 7},  # SI 6.3 (+ M̃ = 3)
      "pretrain_batch_size": {1, 2, 3, 4}}  # SI 5.5.1
GRID = {2, 4, 8, 16, 32, 64}  # SI 5.3: [2, 2] to [64, 64]
GAMMA = {0.8, 0.9, 0.95, 0.975, 0.99}
ALLOWED = {
    "csi": SI, "wsi": SI, "dsi": SI,
    "inpainting": {"grid_size": GRID, "keep_prob": {k / 10 for k in range(11)}, "pretrain_batch_size": {1, 2, 3, 4}},
    "pixel_shuffle": {"grid_size": GRID, "pretrain_batch_size": {1, 2, 3, 4}},
    "super_resolution": {"grid_size": GRID, "pretrain_batch_size": {1, 2, 3, 4}},
    "intensity_shift": {"pretrain_batch_size": {1, 2, 3, 4}},
    "dae": {"noise_variance": {0.05, 0.1, 0.2}, "downsample_factor": {2, 4, 8},  # DAE G.1, G.2
            "mask_ratio": {0.2, 0.4, 0.6, 0.8}, "cmcl_weight": {0.025, 0.05, 0.1}},
    "mae": {"mask_ratio": {0.5, 0.6, 0.75, 0.875}, "mask_block_size": {8, 16, 32}},
    "mae3d": {"mask_ratio": {0.5, 0.75, 0.875}},
    "csm": {"mask_ratio": {0.5, 0.875}, "same_position_masks": {False, True},  # CSM Tables VII-VIII
            "series_masking": {False, True}, "reconstruct_masked_series": {False, True}},
    "ddp": {"gamma": GAMMA},
    "denoising_ae": {"corruption": {"gaussian", "masking"}, "gamma": GAMMA, "mask_fraction": {0.1, 0.25, 0.4}},  # Vincent et al. 2.3
    "dino": {"teacher_temp": {0.04, 0.05, 0.06, 0.07}, "momentum_teacher": {0.99, 0.996, 0.9995},  # main_dino.py help texts
             "out_dim": {4096, 16384, 65536}, "local_crops_number": {2, 6, 8, 10}},
    "ladp": {"gamma": GAMMA, "sigma_a": {1.0, 1.25, 1.5, 1.75, 2.0}, "sigma_b": {0.4, 0.6, 0.8, 1.0}},
    "swav": {"temperature": {0.05, 0.1, 0.2}, "epsilon": {0.03, 0.05}, "n_prototypes": {300, 1000, 3000}},
    "simsiam": {"predictor_hidden_dim": {256, 512, 1024}},
    "swin_unetr_ssl": {"temperature": {0.25, 0.5, 1.0}, "max_drop": {0.15, 0.3, 0.6}},
    "contrastive": {"temperature": {0.25, 0.5, 1.0}, "max_drop": {0.15, 0.3, 0.6}},
    "rotation": {"max_drop": {0.15, 0.3, 0.6}},
    "scratch": {}, "restart": {},
    # CoPer Fig. 8 / appendix E: λ1 searched on a validation set (best 0.55 MS FLAIR, 0.70 BraTS T2); l1 has no CoPer term.
    "l1": {}, "l1+coper": {"lambda1": {0.1, 0.25, 0.4, 0.55, 0.7, 0.85}},
}
# Hand-written valid points: (the values given to FixedTrial, the dict the space must return).
FIXED = {
    "csi": {"num_mixtures": 2, "sources_per_mixture": 3, "pool_size": 5, "pretrain_batch_size": 1},  # the paper's
    "wsi": {"num_mixtures": 2, "sources_per_mixture": 2, "pool_size": 7, "pretrain_batch_size": 4},
    "dsi": {"num_mixtures": 3, "sources_per_mixture": 3, "pool_size": 7, "pretrain_batch_size": 2},
    "inpainting": ({"grid_size": 16, "masking_percentage": 70, "pretrain_batch_size": 1},
                   {"grid_size": 16, "keep_prob": 0.3, "pretrain_batch_size": 1}),
    "pixel_shuffle": {"grid_size": 64, "pretrain_batch_size": 3},
    "super_resolution": {"grid_size": 2, "pretrain_batch_size": 1},
    "intensity_shift": {"pretrain_batch_size": 4},
    "dae": {"noise_variance": 0.2, "downsample_factor": 2.0, "mask_ratio": 0.4, "cmcl_weight": 0.025},
    "mae": {"mask_ratio": 0.75, "mask_block_size": 32},
    "mae3d": {"mask_ratio": 0.875},
    "csm": {"mask_ratio": 0.5, "same_position_masks": True, "series_masking": True, "reconstruct_masked_series": False},
    "ddp": {"gamma": 0.9},
    "denoising_ae": {"corruption": "masking", "mask_fraction": 0.4},
    "dino": {"teacher_temp": 0.07, "momentum_teacher": 0.9995, "out_dim": 4096, "local_crops_number": 2},
    "ladp": {"gamma": 0.99, "sigma_a": 2.0, "sigma_b": 0.4},
    "swav": {"temperature": 0.2, "epsilon": 0.03, "n_prototypes": 300},
    "simsiam": {"predictor_hidden_dim": 1024},
    "swin_unetr_ssl": {"temperature": 0.25, "max_drop": 0.6},
    "contrastive": {"temperature": 1.0, "max_drop": 0.15},
    "rotation": {"max_drop": 0.15},
    "scratch": {},
    "restart": {},
    "l1": {}, "l1+coper": {"lambda1": 0.55},
}
DERIVED = {"inpainting": ({"masking_percentage"}, {"keep_prob"})}  # (suggested only, returned only)


def _si_constraints(params, cfg):
    assert params["pool_size"] >= 1 + params["num_mixtures"] * (params["sources_per_mixture"] - 1)  # eq. 12
    assert params["sources_per_mixture"] < params["pool_size"]  # Ñ < N


def _csm_constraints(params, cfg):
    # reconstruct_masked_series is conditional: present exactly when whole series are masked.
    assert ("reconstruct_masked_series" in params) == params["series_masking"]
    assert cfg.series_masking or cfg.reconstruct_masked_series


CONSTRAINTS = {
    "csi": _si_constraints, "wsi": _si_constraints, "dsi": _si_constraints,
    "csm": _csm_constraints,
    # each corruption's strength is suggested only with that corruption (the Config rejects the other's)
    "denoising_ae": lambda params, cfg: _check(("gamma" in params) == (params["corruption"] == "gaussian")
                                               and ("mask_fraction" in params) == (params["corruption"] == "masking")),
    "ladp": lambda params, cfg: _check(params["sigma_a"] >= params["sigma_b"]),  # more noise in the ROI (II.C)
    "simsiam": lambda params, cfg: _check(params["predictor_hidden_dim"] < cfg.projection_dim),  # a bottleneck
}


def _check(condition):
    assert condition


def _member(value, allowed) -> bool:
    return any(value == a if not isinstance(a, float) else math.isclose(value, a) for a in allowed)


def _build(method, params):
    return get_method(method).make_config({k: v for k, v in params.items() if not k.startswith("pretrain_")})


def _check_point(method, params, suggested):
    """One returned dict: known keys, allowed values, a Config that builds, the constraints, names 1:1."""
    fields = {f.name for f in dataclasses.fields(get_method(method).Config)}
    assert set(params) <= fields | RESERVED, f"{method}: keys {sorted(set(params) - fields - RESERVED)} are not Config fields"
    for key, value in params.items():
        assert _member(value, ALLOWED[method][key]), f"{method}.{key} = {value!r} is outside {sorted(ALLOWED[method][key])}"
    cfg = _build(method, params)
    for key, value in params.items():
        if key in fields:
            assert getattr(cfg, key) == value
    CONSTRAINTS.get(method, lambda p, c: None)(params, cfg)
    only_suggested, only_returned = DERIVED.get(method, (set(), set()))
    assert set(suggested) - only_suggested == set(params) - only_returned


def test_every_registered_method_has_a_space_module():
    """Every method of the suite (a plugin's space is an entry point, or it runs untuned: tests/test_plugins.py)."""
    assert set(list_spaces()) == set(METHODS.builtin_names())
    assert set(FIXED) == set(METHODS.builtin_names()) == set(ALLOWED)


@pytest.mark.parametrize("method", METHODS.builtin_names())
def test_module_imports_and_documents_every_key(method):
    space = get_space(method)
    assert callable(space)
    doc = importlib.import_module(f"search_spaces.{search_spaces.module_name(method)}").__doc__
    assert doc and doc.strip()
    for key in ALLOWED[method]:
        assert f"``{key}``" in doc, f"search_spaces/{method}.py's docstring does not document {key}"


@pytest.mark.parametrize("method", METHODS.builtin_names())
def test_fixed_trial_returns_the_given_values(method):
    given, expected = FIXED[method] if isinstance(FIXED[method], tuple) else (FIXED[method], FIXED[method])
    trial = optuna.trial.FixedTrial(given)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FixedTrial only warns when a value is outside the distribution
        params = get_space(method)(trial)
    assert params == pytest.approx(expected) and set(params) == set(expected)
    assert set(trial.params) == set(given)  # every given value was suggested under its own name
    _check_point(method, params, trial.params)


@pytest.mark.parametrize("method", METHODS.builtin_names())
def test_seeded_study_samples_only_valid_configs(method):
    space = get_space(method)
    sampled = []

    def objective(trial):
        params = space(trial)
        _check_point(method, params, trial.params)  # raises (and fails the test) on any violation
        sampled.append(params)
        return 0.0

    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(objective, n_trials=30)
    assert len(sampled) == 30
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    for trial in study.trials:  # and each value lies inside the distribution it was drawn from
        for name, value in trial.params.items():
            dist = trial.distributions[name]
            assert dist._contains(dist.to_internal_repr(value))
    if ALLOWED[method]:
        assert len({tuple(sorted(p.items())) for p in sampled}) > 1  # the study does explore


def test_source_identification_space_is_the_feasible_part_of_the_papers_grid():
    """SI 6.3: N ∈ {3, 5, 7}, Ñ ∈ {2, 3, 4}; M̃ ∈ {2, 3}; exactly the triples eq. 12 can build are reachable."""
    space = get_space("csi")
    for m, n_tilde, n in itertools.product([2, 3], [2, 3, 4], [3, 5, 7]):
        feasible = n >= 1 + m * (n_tilde - 1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            params = space(optuna.trial.FixedTrial({"num_mixtures": m, "sources_per_mixture": n_tilde, "pool_size": n,
                                                    "pretrain_batch_size": 1}))
        out_of_range = any("out of the range" in str(w.message) for w in caught)
        assert out_of_range == (not feasible), (m, n_tilde, n)
        if feasible:
            _build("csi", params)
    # M̃ = 2 (the paper's): the six feasible (N, Ñ) pairs, e.g. (5, 3) of eq. 12 and (7, 4).
    seen = set()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: (seen.add(tuple(space(t)[k] for k in ("num_mixtures", "pool_size", "sources_per_mixture"))), 0.0)[1],
                   n_trials=200)
    assert {(n, k) for m, n, k in seen if m == 2} == {(3, 2), (5, 2), (7, 2), (5, 3), (7, 3), (7, 4)}
    assert {(n, k) for m, n, k in seen if m == 3} == {(5, 2), (7, 2), (7, 3)}


def test_csm_series_masking_conditional():
    space = get_space("csm")
    trial = optuna.trial.FixedTrial({"mask_ratio": 0.875, "same_position_masks": False, "series_masking": False})
    params = space(trial)  # "series-mask ×": no reconstruct key is asked for or returned
    assert params == {"mask_ratio": 0.875, "same_position_masks": False, "series_masking": False}
    assert _build("csm", params).reconstruct_masked_series is True
    rows = set()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(lambda t: (rows.add((space(t)["series_masking"], t.params.get("reconstruct_masked_series"))), 0.0)[1],
                   n_trials=40)
    assert rows == {(True, True), (True, False), (False, None)}  # ✓, ○, × of Tables VII-VIII


def test_inpainting_masking_percentage_covers_0_to_100():
    space = get_space("inpainting")
    for percentage, keep in [(0, 1.0), (100, 0.0), (50, 0.5)]:
        params = space(optuna.trial.FixedTrial({"grid_size": 8, "masking_percentage": percentage, "pretrain_batch_size": 1}))
        assert params["keep_prob"] == keep  # eq. 8: γ is the kept fraction


def test_finetune_space_is_log_uniform_around_the_recipe():
    lr = 4e-4
    assert finetune.space(optuna.trial.FixedTrial({"finetune_lr": 1e-3}), lr=lr, batch_size=4) == {"finetune_lr": 1e-3}
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(lambda t: finetune.space(t, lr=lr, batch_size=4)["finetune_lr"], n_trials=30)
    for trial in study.trials:
        assert set(trial.params) == {"finetune_lr"}  # batch size is opt-in
        assert lr / 10 * (1 - 1e-9) <= trial.params["finetune_lr"] <= lr * 10 * (1 + 1e-9)
        dist = trial.distributions["finetune_lr"]
        assert dist.log and math.isclose(dist.low, lr / 10) and math.isclose(dist.high, lr * 10)


def test_finetune_batch_size_is_opt_in_half_same_double():
    trial = optuna.trial.FixedTrial({"finetune_lr": 1e-2, "finetune_batch_size": 16})
    assert finetune.space(trial, lr=1e-2, batch_size=8, tune_batch_size=True) == {"finetune_lr": 1e-2, "finetune_batch_size": 16}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: finetune.space(t, lr=1e-2, batch_size=8, tune_batch_size=True)["finetune_batch_size"], n_trials=20)
    assert study.trials[0].distributions["finetune_batch_size"].choices == (4, 8, 16)
    assert {t.params["finetune_batch_size"] for t in study.trials} <= {4, 8, 16}
    assert finetune.batch_size_choices(1) == [1, 2]  # no half of 1, no repeated choice
    with pytest.raises(ValueError, match="lr"):
        finetune.space(optuna.trial.FixedTrial({}), lr=0.0, batch_size=2)


@pytest.mark.parametrize("method", METHODS.builtin_names())
def test_every_method_gets_the_fine_tuning_part(method):
    """The same budget for all: scratch and restart are tuned too (their fine-tuning learning rate)."""
    space = tuned_space(method, lr=1e-2, batch_size=8, tune_batch_size=True)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(lambda t: (_build(method, {k: v for k, v in space(t).items() if not k.startswith("finetune_")}), 0.0)[1],
                   n_trials=5)
    params = space(optuna.trial.FixedTrial(study.best_params))  # best params replay into the same dict
    assert {"finetune_lr", "finetune_batch_size"} <= set(params)
    assert set(params) - {"finetune_lr", "finetune_batch_size"} == set(get_space(method)(optuna.trial.FixedTrial(study.best_params)))
    if method in ("scratch", "restart"):
        assert set(params) == {"finetune_lr", "finetune_batch_size"}


# ---- get_space errors: a missing or broken module is an error, never "nothing to tune" ---------------
@pytest.fixture
def extra_space_dir(tmp_path, monkeypatch):
    """A temporary folder on search_spaces' package path, for modules written by the test."""
    monkeypatch.setattr(search_spaces, "__path__", [*search_spaces.__path__, str(tmp_path)])
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith("search_spaces.zz_")]:
        del sys.modules[name]
    importlib.invalidate_caches()


def test_unknown_method_is_an_input_error():
    with pytest.raises(BenchmarkInputError, match="no_such_method"):
        get_space("no_such_method")
    for name in ("finetune", "_si_paper", "../csi", "csi.space", ""):
        with pytest.raises(BenchmarkInputError):
            get_space(name)


def test_syntax_error_in_a_space_module_is_an_input_error(extra_space_dir):
    (extra_space_dir / "zz_broken.py").write_text("def space(trial) -> dict\n    return {}\n")
    importlib.invalidate_caches()
    with pytest.raises(BenchmarkInputError, match=r"search_spaces\.zz_broken.*SyntaxError") as info:
        get_space("zz_broken")
    assert "zz_broken.py" in str(info.value)


def test_missing_dependency_of_a_space_module_is_not_a_missing_space(extra_space_dir):
    (extra_space_dir / "zz_needs_dep.py").write_text("import zz_not_installed_anywhere\n\ndef space(trial):\n    return {}\n")
    importlib.invalidate_caches()
    with pytest.raises(BenchmarkInputError, match="failed to import.*zz_not_installed_anywhere"):
        get_space("zz_needs_dep")


def test_module_without_space_function_is_an_input_error(extra_space_dir):
    (extra_space_dir / "zz_no_space.py").write_text("SPACE = {}\n")
    importlib.invalidate_caches()
    with pytest.raises(BenchmarkInputError, match="defines no function space"):
        get_space("zz_no_space")


def test_list_spaces_skips_helpers():
    names = list_spaces()
    assert "finetune" not in names and not any(n.startswith("_") for n in names)
