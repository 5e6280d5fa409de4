"""DAE: noise variance σ, downsampling ε and local-masking ratio r, the grid of appendix G (tables 8-10)."""


def space(trial) -> dict:
    return {
        "noise_variance": trial.suggest_categorical("noise_variance", [0.05, 0.1, 0.2]),
        "downsample_factor": trial.suggest_categorical("downsample_factor", [2.0, 4.0, 8.0]),
        "mask_ratio": trial.suggest_float("mask_ratio", 0.2, 0.8, step=0.2),
    }
