"""CSI: the number of pooled sources N and of sources per mixture Ñ, tuned on validation (SI paper 5.2, 6.3)."""


def space(trial) -> dict:
    sources_per_mixture = trial.suggest_int("sources_per_mixture", 2, 4)
    num_mixtures = trial.suggest_int("num_mixtures", 2, 3)
    minimum = 1 + num_mixtures * (sources_per_mixture - 1)  # eq. 12: non-target sources are not shared
    pool_size = trial.suggest_int("pool_size", minimum, minimum + 4)
    return {"pool_size": pool_size, "sources_per_mixture": sources_per_mixture, "num_mixtures": num_mixtures}
