"""Super-resolution (SI paper 4.3, eq. 10): grid size and the proxy-task batch size.

* ``grid_size`` ∈ {2, 4, 8, 16, 32, 64}: SI paper 5.3, the same tuning range as inpainting
  ([2, 2] to [64, 64]).
* ``random_offset`` is not a paper hyperparameter (the paper is silent on the grid's phase) and is
  not searched.
* ``pretrain_batch_size`` 1 to 4 (reserved key, pretraining Recipe): SI paper 5.5.1.
"""
from __future__ import annotations

from search_spaces._si_paper import GRID_SIZES, si_pretrain_batch_size


def space(trial) -> dict:
    return {"grid_size": trial.suggest_categorical("grid_size", list(GRID_SIZES)), **si_pretrain_batch_size(trial)}
