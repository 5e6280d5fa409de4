"""``l1+coper``: the weight ``lambda1`` of L1 against the CoPer loss (eq. 5), searched as CoPer Fig. 8 does.

``lambda1`` ∈ {0.1, 0.25, 0.4, 0.55, 0.7, 0.85}: CoPer Fig. 8 plots the synthesis quality against λ1 on a
validation set and finds 0.55 best for MS FLAIR and 0.70 for brain-tumour T2 (appendix E: "λ1 should be
optimized in a separate validation set"); the grid holds both and steps of 0.15 either side. λ1 = 0 (CoPer
alone, no pixel loss) and 1 (the ``l1`` method) are left out. The grid is a balance only where the two terms are of one
size, which the default ``feature_norm`` (``energy``) gives on any loss network; with ``feature_norm=none`` (eq. 3 raw) on
the smoke VGG-16 the CoPer term is hundreds of times the L1 term at every λ1 here. The reconstruction / adversarial balance
(``balance``, ``reconstruction_weight``, ``adversarial_weight``) is fixed by the paper, "the default setting [...] in all of
our experiments" (III.C): recorded in the cell's config, not searched. The loss network (``loss_network``,
``loss_backbone``) and ``feature_norm`` are what a Table III row compares or how it reads eq. 3, not tuned values: variants.
"""
from __future__ import annotations

LAMBDA1 = [0.1, 0.25, 0.4, 0.55, 0.7, 0.85]


def space(trial) -> dict:
    return {"lambda1": trial.suggest_categorical("lambda1", LAMBDA1)}
