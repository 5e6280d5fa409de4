"""SimSiam (CoPer section IV, Table III): the predictor's hidden width.

* ``predictor_hidden_dim`` ∈ {256, 512, 1024}: CoPer gives no SimSiam setting (appendix B covers
  SwAV only); SimSiam (Chen & He 2021, section 4) uses a 512-wide bottleneck between the 2048-wide
  projection and prediction. We search half, the value and double, all below ``projection_dim``
  (2048) so the predictor stays a bottleneck (constraint predictor_hidden_dim < projection_dim).
* Not searched: the two-view augmentation (SimSiam's, fixed by its Config), the projection width.
"""
from __future__ import annotations

PREDICTOR_HIDDEN_DIMS = [256, 512, 1024]


def space(trial) -> dict:
    return {"predictor_hidden_dim": trial.suggest_categorical("predictor_hidden_dim", PREDICTOR_HIDDEN_DIMS)}
