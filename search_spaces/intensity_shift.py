"""Non-linear intensity shift (SI paper 4.4, eq. 11): only the proxy-task batch size.

SI paper 5.3: "There is no hyperparameter to tune for non-linear intensity shift" (``curve_samples``
is a numerical detail, not searched). The proxy-task batch size was tuned from 1 to 4 "for all
experiments in this paper" (5.5.1), so ``pretrain_batch_size`` (reserved key, pretraining Recipe)
is searched as for the other proxy tasks of the paper.
"""
from __future__ import annotations

from search_spaces._si_paper import si_pretrain_batch_size


def space(trial) -> dict:
    return si_pretrain_batch_size(trial)
