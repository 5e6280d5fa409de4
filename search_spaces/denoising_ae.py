"""Denoising autoencoder (Vincent et al. 2008; LADP Table 1 "DAE [16]"): the corruption and its strength.

LADP tunes nothing for its DAE row (it names the method only, section I and Table 1), so every range is ours or
Vincent et al.'s:

* ``corruption`` ∈ {"gaussian", "masking"}: the noise of the DDP / LADP rows it is compared with (LADP II.C) or
  Vincent et al.'s own masking noise (section 2.3); the Config default is "gaussian" (benchmark/methods/denoising_ae.py).
* ``gamma`` γ (only with "gaussian") ∈ {0.8, 0.9, 0.95, 0.975, 0.99}: the grid DDP and LADP are searched over
  (``search_spaces._denoising``, around LADP's γ = 0.95), so the three denoising rows get the same noise levels.
* ``mask_fraction`` ν (only with "masking") ∈ {0.1, 0.25, 0.4}: Vincent et al. choose the destruction fraction per
  data set among a few levels of this size (10-40 %); 0.25 is the Config default.
* Not searched: ``freeze_encoder`` (Vincent et al. train encoder and decoder; False), the pretraining batch
  (16, LADP II.D, not tuned).
"""
from __future__ import annotations

from search_spaces._denoising import gamma

CORRUPTIONS = ["gaussian", "masking"]
MASK_FRACTIONS = [0.1, 0.25, 0.4]


def space(trial) -> dict:
    params = {"corruption": trial.suggest_categorical("corruption", CORRUPTIONS)}
    if params["corruption"] == "gaussian":  # each strength only where its corruption reads it (the Config rejects the other)
        params.update(gamma(trial))
    else:
        params["mask_fraction"] = trial.suggest_categorical("mask_fraction", MASK_FRACTIONS)
    return params
