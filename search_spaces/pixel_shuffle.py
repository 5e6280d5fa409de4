"""Local pixel shuffling (SI paper 4.2, eq. 9): grid size and the proxy-task batch size.

* ``grid_size`` ∈ {2, 4, 8, 16, 32, 64}: SI paper 5.3, "for local pixel shuffling and
  super-resolution, the grid size has the same tuning range as that in inpainting" ([2, 2] to [64, 64]).
* ``shuffle_prob`` γ is NOT searched: eq. 9 calls γ "a hyperparameter ranged from 0 to 1" but 5.3
  tunes only the grid size for this task, so γ keeps the Config default (0.5).
* ``pretrain_batch_size`` 1 to 4 (reserved key, pretraining Recipe): SI paper 5.5.1.
"""
from __future__ import annotations

from search_spaces._si_paper import GRID_SIZES, si_pretrain_batch_size


def space(trial) -> dict:
    return {"grid_size": trial.suggest_categorical("grid_size", list(GRID_SIZES)), **si_pretrain_batch_size(trial)}
