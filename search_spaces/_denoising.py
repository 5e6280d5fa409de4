"""The γ grid shared by DDP and LADP (both ``DenoisingConfig``)."""
from __future__ import annotations

# LADP II.C: "Similar to DDP we set γ = 0.95" — a value, no range. Ours: the noise share 1 − γ at
# 0.05 and roughly factor-2 steps either side (0.2, 0.1, 0.05, 0.025, 0.01); every value satisfies
# the Config's 0 < γ < 1.
GAMMAS = [0.8, 0.9, 0.95, 0.975, 0.99]


def gamma(trial) -> dict:
    return {"gamma": trial.suggest_categorical("gamma", GAMMAS)}
