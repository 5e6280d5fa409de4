"""CSI (cross-patient source identification): N, Ñ, M̃ and the proxy-task batch size.

* ``pool_size`` N ∈ {3, 5, 7}, ``sources_per_mixture`` Ñ ∈ {2, 3, 4}: SI paper 6.3 ("N = 3, 5, 7 and
  Ñ = 2, 3, 4 sources ... are tested", "N and Ñ is tuned on the validation set for all
  experiments"; 5.2 gives N = 5, Ñ = 3 as the tuned setting).
* ``num_mixtures`` M̃ ∈ {2, 3}: the paper fixes M̃ = 2 (5.2 eq. 12, 6.3) and discusses more mixtures
  only in section 3.3; M̃ = 3 is our one-step extension, not a paper value.
* Constraint: N ≥ 1 + M̃(Ñ − 1) (eq. 12 shares only the target between mixtures; hence Ñ < N),
  enforced by conditional ranges, see ``search_spaces._si_paper.si_sources``.
* ``pretrain_batch_size`` 1 to 4 (reserved key, applied to the pretraining Recipe): SI paper 5.5.1,
  "A batchsize of 1 is used for the proxy task ..., realized via tuning from 1 to 4".
"""
from __future__ import annotations

from search_spaces._si_paper import si_pretrain_batch_size, si_sources


def space(trial) -> dict:
    return {**si_sources(trial), **si_pretrain_batch_size(trial)}
