"""CNN-restart (SI paper 5.5.3): no pretext hyperparameter.

Returns {}: the paper gives no range for the number of supervised runs (``rounds`` keeps its Config
default); the tuner still searches the fine-tuning part (``search_spaces.finetune``) as for every method.
"""
from __future__ import annotations


def space(trial) -> dict:
    return {}
