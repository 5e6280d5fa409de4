"""SwAV as CoPer pretrains it (CoPer appendix B): temperature τ, Sinkhorn ε and the number of prototypes K.

CoPer appendix B gives SwAV's recipe (400 epochs, batch 96, SGD, base lr 0.6, 192/96 multi-crop,
331 prototype-freezing iterations) but searches none of these three, so every range is ours:

* ``temperature`` τ ∈ {0.05, 0.1, 0.2}: SwAV's default 0.1 (the Config default), half and double.
* ``epsilon`` ε ∈ {0.03, 0.05}: SwAV's default 0.05 and the lower value its authors recommend when
  training collapses ("use a lower epsilon value (--epsilon 0.03 instead of the default 0.05)",
  facebookresearch/swav README, Common issues); lower ε risks numerical instability (same place).
* ``n_prototypes`` K ∈ {300, 1000, 3000}: 3000 is SwAV's ImageNet default (1.28M images); CoPer's
  sets hold 18k-88k slices (appendix B), so we also try fewer prototypes. K ≥ 2 as the Config needs.
* Not searched: the multi-crop settings (given by CoPer appendix B), the projection sizes, the
  pretraining batch (96, appendix B, not tuned).
"""
from __future__ import annotations

TEMPERATURES = [0.05, 0.1, 0.2]
EPSILONS = [0.03, 0.05]
N_PROTOTYPES = [300, 1000, 3000]


def space(trial) -> dict:
    return {
        "temperature": trial.suggest_categorical("temperature", TEMPERATURES),
        "epsilon": trial.suggest_categorical("epsilon", EPSILONS),
        "n_prototypes": trial.suggest_categorical("n_prototypes", N_PROTOTYPES),
    }
