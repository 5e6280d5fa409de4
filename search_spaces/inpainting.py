"""Inpainting: grid size [2, 2] to [64, 64] and masking percentage 0-100%, tuned on validation (SI paper 5.3)."""


def space(trial) -> dict:
    grid_size = trial.suggest_categorical("grid_size", [2, 4, 8, 16, 32, 64])
    masking_percentage = trial.suggest_int("masking_percentage", 0, 100, step=10)
    return {"grid_size": grid_size, "keep_prob": 1.0 - masking_percentage / 100.0}  # eq. 8: masked fraction is 1 - γ
