"""The fine-tuning part of every method's space, scratch and restart included (issue 10: the same budget for all).

The tuner adds it to each method's pretext space, so a pretrained method is never compared with
an untuned baseline: every method, the baselines too, gets its fine-tuning learning rate (and,
where memory allows, batch size) searched over the same ranges with the same number of trials.

* ``finetune_lr``: log-uniform over [lr / 10, lr × 10] around the fine-tuning recipe's learning
  rate. No paper gives a fine-tuning learning-rate range (SI paper 5.5.3 fixes 1e-2, DAE paper 3.2
  4e-4, LADP II.D 1e-4, CoPer appendix C 2e-4); one decade either side of the recipe's value is our
  choice, log-uniform because a learning rate acts multiplicatively.
* ``finetune_batch_size`` (only with ``tune_batch_size=True``): half, the same and twice the
  recipe's batch size. The SI paper tuned its main-task batch size "between 1 to 16 based on the
  validation set" and chose 8 (BraTS) and 4 (WMH) (section 5.5.1); half / same / double around the
  recipe is that search centred on the paper's value. Opt-in because a larger batch may not fit in
  memory. A batch size of 1 has no half: the choices are then [1, 2].
"""
from __future__ import annotations


def space(trial, *, lr: float, batch_size: int, tune_batch_size: bool = False) -> dict:
    if not lr > 0:
        raise ValueError(f"finetune space: lr must be > 0 (the recipe's fine-tuning learning rate), got {lr}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"finetune space: batch_size must be an integer >= 1, got {batch_size!r}")
    params = {"finetune_lr": trial.suggest_float("finetune_lr", lr / 10, lr * 10, log=True)}
    if tune_batch_size:
        params["finetune_batch_size"] = trial.suggest_categorical("finetune_batch_size", batch_size_choices(batch_size))
    return params


def batch_size_choices(batch_size: int) -> list[int]:
    """[batch_size // 2 (at least 1), batch_size, 2 × batch_size] without repeats."""
    return list(dict.fromkeys([max(1, batch_size // 2), batch_size, batch_size * 2]))
