"""Hyperparameter search spaces, one file per method: ``space(trial) -> dict`` (Optuna define-by-run).

Each space covers what the method's paper tuned, and returns keyword overrides for the
method's Config. ``get_space(name)`` returns None for methods with nothing to tune.
"""
from __future__ import annotations

import importlib
from typing import Callable


def get_space(method: str) -> Callable | None:
    try:
        module = importlib.import_module(f"search_spaces.{method}")
    except ModuleNotFoundError:
        return None
    return module.space
