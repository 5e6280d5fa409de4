"""Scratch (random initialisation, the SI paper's "CNN", section 5.4): no pretext hyperparameter.

Returns {}: the tuner still searches its fine-tuning part (``search_spaces.finetune``), the same
budget every pretrained method gets, so no method is compared with an untuned baseline.
"""
from __future__ import annotations


def space(trial) -> dict:
    return {}
