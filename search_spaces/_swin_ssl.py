"""Grids shared by the Swin-UNETR pretraining family (swin_unetr_ssl, rotation, contrastive).

The DAE paper trains these Table 4 baselines with Tang et al.'s settings and tunes nothing, and
Tang et al. (2022, section 3.2) give values, not ranges; so the grids are ours: half, the value and
double of the reference implementation's default, the rule this package uses where no paper gives
a range.
"""
from __future__ import annotations

TEMPERATURES = [0.25, 0.5, 1.0]  # NT-Xent τ around the reference's Contrast(temperature=0.5)
MAX_DROPS = [0.15, 0.3, 0.6]  # cut-out: at most this fraction of voxels, around the reference's 0.3


def temperature(trial) -> dict:
    return {"temperature": trial.suggest_categorical("temperature", TEMPERATURES)}


def max_drop(trial) -> dict:
    return {"max_drop": trial.suggest_categorical("max_drop", MAX_DROPS)}
