"""Inpainting (SI paper 4.1, eq. 8): grid size, masking percentage γ and the proxy-task batch size.

* ``grid_size`` ∈ {2, 4, 8, 16, 32, 64}: SI paper 5.3, "the grid size is tuned from ranging [2, 2] to
  [64, 64]" (read as the powers of two in that range).
* ``masking_percentage`` 0 to 100 % in steps of 10: SI paper 5.3, "the masking percentage ranging
  from 0% to 100%" (the paper gives no step; 10 points is ours). The Config's ``keep_prob`` γ is
  DERIVED: eq. 8 keeps a cell when B(γ) = 1, so keep_prob = 1 − masking percentage / 100.
* ``pretrain_batch_size`` 1 to 4 (reserved key, pretraining Recipe): SI paper 5.5.1, the proxy-task
  batch size "for all experiments" was tuned from 1 to 4.
"""
from __future__ import annotations

from search_spaces._si_paper import GRID_SIZES, si_pretrain_batch_size


def space(trial) -> dict:
    grid_size = trial.suggest_categorical("grid_size", list(GRID_SIZES))
    masking_percentage = trial.suggest_int("masking_percentage", 0, 100, step=10)
    keep_prob = (100 - masking_percentage) / 100  # eq. 8: the masked fraction is 1 - γ
    return {"grid_size": grid_size, "keep_prob": keep_prob, **si_pretrain_batch_size(trial)}
