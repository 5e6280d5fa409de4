"""Hyperparameter search spaces, one file per registered method: ``space(trial) -> dict`` (Optuna define-by-run).

Contract (the tuner relies on it):

* ``search_spaces/<method>.py`` exists for EVERY registered method; a method with no pretext
  hyperparameter (scratch, restart) returns ``{}``. A missing module, or one that fails to
  import, is a ``BenchmarkInputError`` from ``get_space``, never "nothing to tune".
* The returned keys are field names of the method's Config, plus the reserved ``pretrain_*``
  keys (``pretrain_batch_size``) that the tuner applies to the pretraining Recipe instead.
  ``get_method(m).make_config({k: v for k, v in params.items() if not k.startswith("pretrain_")})``
  builds for every dict a space returns: constraints (e.g. N ≥ 1 + M̃(Ñ − 1) for source
  identification) are respected through conditional suggestions, not rejected trials.
* Names given to ``trial.suggest_*`` equal the returned keys, except a derived value (inpainting's
  ``keep_prob`` = 1 − masking percentage / 100). To turn a study's ``best_params`` back into the
  Config overrides, replay them: ``space(optuna.trial.FixedTrial(best_params))``.
* A plugin method (``benchmark.plugins``) brings its space as an entry point of ``medssl_bench.search_spaces``
  under its name (value ``module:space``); one without runs untuned (``untuned_reason`` says so), its Config
  defaults with a search budget of 0.
* ``search_spaces/finetune.py`` is the fine-tuning part (learning rate, optionally batch size) that
  the tuner adds to every method's space, scratch included, so that every method gets the same
  budget; ``tuned_space`` composes the two.
* Each module's docstring cites the paper section / table of every range, or says that the paper
  gives none and why the chosen range.

This package imports neither Ray nor torch.
"""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from benchmark import plugins
from benchmark.errors import BenchmarkInputError

_NOT_METHODS = frozenset({"finetune"})
PLUS = "_plus_"  # a method name's "+" in its module name (l1+coper -> search_spaces/l1_plus_coper.py)


def module_name(method: str) -> str:
    """The space module's name of ``method`` (its name, "+" spelled ``_plus_``)."""
    return method.replace("+", PLUS)


def list_spaces() -> list[str]:
    """The methods that have a space module (sorted); helper modules (``_*``) and ``finetune`` excluded."""
    names = (info.name for info in pkgutil.iter_modules([str(p) for p in __path__]))
    return sorted({n.replace(PLUS, "+") for n in names if not n.startswith("_") and n not in _NOT_METHODS})


def get_space(method: str) -> Callable:
    """``search_spaces.<method>.space``; a missing or broken module raises ``BenchmarkInputError``."""
    if (not isinstance(method, str) or method.startswith("_") or method in _NOT_METHODS
            or not (module_name(method).isidentifier() or _is_plugin_method(method))):
        raise BenchmarkInputError(f"{method!r} is not a method name: expected one of the search spaces {list_spaces()}")
    module_name_ = f"{__name__}.{module_name(method)}"
    spec = importlib.util.find_spec(module_name_)
    if spec is None and _is_plugin_method(method):
        return _plugin_space(method) or no_search_space
    if spec is None:
        raise BenchmarkInputError(
            f"no search space for method {method!r}: expected a module {Path(__file__).parent / (module_name(method) + '.py')} "
            f"defining space(trial) -> dict (return {{}} if the method has nothing to tune); existing spaces: {list_spaces()}"
        )
    try:
        module = importlib.import_module(module_name_)
    except Exception as error:  # SyntaxError, ImportError of a dependency, NameError, ... inside the module
        raise BenchmarkInputError(
            f"search space module {module_name_} ({spec.origin}) failed to import: {type(error).__name__}: {error}"
        ) from error
    space = getattr(module, "space", None)
    if not callable(space):
        raise BenchmarkInputError(f"search space module {module_name_} ({spec.origin}) defines no function space(trial) -> dict")
    return space


def no_search_space(trial) -> dict:
    """The space of a plugin method that declares none: nothing to tune (it runs with its Config defaults)."""
    return {}


def _is_plugin_method(method: str) -> bool:
    return any(ep.name == method for ep in plugins.entry_points(plugins.GROUPS["method"]))


def _plugin_space(method: str) -> Callable | None:
    """The ``medssl_bench.search_spaces`` entry point named ``method``, loaded; None when there is none."""
    for ep in plugins.entry_points(plugins.SEARCH_SPACES):
        if ep.name == method:
            where = f"{ep.dist.name if ep.dist else '?'} (entry point {plugins.SEARCH_SPACES}: {ep.name} = {ep.value})"
            try:
                space = ep.load()
            except Exception as error:  # noqa: BLE001 - a third-party import: any failure is the message
                raise BenchmarkInputError(f"search space of plugin {where} failed to import: {type(error).__name__}: {error}") from error
            if not callable(space):
                raise BenchmarkInputError(f"search space of plugin {where} is not a function space(trial) -> dict")
            return space
    return None


def untuned_reason(method: str) -> str | None:
    """Why ``--tune`` leaves ``method`` untuned though it may have hyperparameters: a plugin method without a search
    space; None otherwise (the suite's own methods all have one, ``{}`` when nothing is tuned)."""
    if importlib.util.find_spec(f"{__name__}.{module_name(method)}") is not None or not _is_plugin_method(method):
        return None
    if _plugin_space(method) is not None:
        return None
    return (f"method {method!r} is a plugin without a search space (an entry point {plugins.SEARCH_SPACES}: {method} = "
            "'module:space' with space(trial) -> dict): it runs untuned, with its Config defaults (search budget 0)")


@dataclass(frozen=True)
class SearchSpace:
    """The one space a method is tuned over: its own (``<method>.py``) plus, opt-in, the fine-tuning part every
    method shares (``finetune.space``, around the recipe's ``finetune_lr`` / ``finetune_batch_size``), so no
    pretrained method is compared with an untuned baseline. A module-level class: Ray Tune pickles the searcher."""

    method: str | None  # None: no method space (a --pretrained row: only the fine-tuning part, when asked)
    finetune_lr: float | None = None  # None: the fine-tuning learning rate is not searched
    finetune_batch_size: int | None = None  # None: the fine-tuning batch size is not searched

    def __call__(self, trial) -> dict:
        from search_spaces import finetune

        params = dict(get_space(self.method)(trial) or {}) if self.method is not None else {}
        if self.finetune_lr is not None:
            params.update(finetune.space(trial, lr=self.finetune_lr, batch_size=self.finetune_batch_size or 1,
                                         tune_batch_size=self.finetune_batch_size is not None))
        return params


def tuned_space(method: str, *, lr: float, batch_size: int, tune_batch_size: bool = False) -> SearchSpace:
    """The method's space plus the fine-tuning space (``lr`` / ``batch_size``: the fine-tuning recipe's values)."""
    return SearchSpace(method, finetune_lr=lr, finetune_batch_size=batch_size if tune_batch_size else None)
