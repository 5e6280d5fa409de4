"""Local pixel shuffling: grid size [2, 2] to [64, 64], the same range as inpainting (SI paper 5.3)."""


def space(trial) -> dict:
    return {"grid_size": trial.suggest_categorical("grid_size", [2, 4, 8, 16, 32, 64])}
