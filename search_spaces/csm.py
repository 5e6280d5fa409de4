"""CSM: the intra-series mask ratio (the paper compares 87.5% with 50%, table ablations)."""


def space(trial) -> dict:
    return {"mask_ratio": trial.suggest_float("mask_ratio", 0.5, 0.9)}
