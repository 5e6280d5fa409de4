"""Pieces shared by the SI paper's spaces: grid sizes (5.3), proxy-task batch size (5.5.1), N, Ñ, M̃ (5.2, 6.3).

Every helper suggests parameters under the Config field (or reserved ``pretrain_*``) name it
returns, so a study's ``best_params`` map back 1:1.
"""
from __future__ import annotations

# SI paper 5.3: "the grid size is tuned from ranging [2, 2] to [64, 64]" for inpainting, local pixel
# shuffling and super-resolution; read as the powers of two in that range (cell side in voxels).
GRID_SIZES = (2, 4, 8, 16, 32, 64)

# SI paper 5.5.1: "A batchsize of 1 is used for the proxy task for all experiments in this paper,
# realized via tuning from 1 to 4, based on the validation set."
SI_PRETRAIN_BATCH_SIZE = (1, 4)

# SI paper 6.3: "N = 3, 5, 7 and Ñ = 2, 3, 4 sources ... are tested to generate M̃ = 2 fused images".
SI_POOL_SIZES = (3, 5, 7)
SI_SOURCES_PER_MIXTURE = (2, 3, 4)
# M̃: the paper fixes M̃ = 2 in every experiment (5.2, eq. 12; 6.3) and discusses the number of
# mixtures only in general (section 3.3: more mixtures than extracted sources give the network the
# extra information that makes the target identifiable). It is not searched there; we add one more
# mixture (M̃ = 3) as the only extension of the paper's grid.
SI_NUM_MIXTURES = (2, 3)


def si_pretrain_batch_size(trial) -> dict:
    """The proxy-task batch size, 1 to 4 (SI paper 5.5.1); a Recipe field, not a Config field."""
    low, high = SI_PRETRAIN_BATCH_SIZE
    return {"pretrain_batch_size": trial.suggest_int("pretrain_batch_size", low, high)}


def si_sources(trial) -> dict:
    """N, Ñ, M̃ of the SI paper's grid (6.3) restricted to the combinations eq. 12 can build.

    Eq. 12 mixes the target with Ñ − 1 non-target sources per mixture and never shares a non-target
    source between mixtures, so N ≥ 1 + M̃(Ñ − 1) (checked by ``SIConfig.__post_init__``; it implies
    Ñ < N). Suggested in the order M̃, Ñ, N with ranges that depend on the earlier values, so every
    sampled triple builds: Ñ ≤ 1 + (max N − 1) // M̃, then N from the paper's odd values {3, 5, 7}
    that are at least the eq. 12 minimum. With M̃ = 2 that is exactly the feasible part of the
    paper's grid: (N, Ñ) ∈ {(3, 2), (5, 2), (7, 2), (5, 3), (7, 3), (7, 4)}.
    """
    num_mixtures = trial.suggest_int("num_mixtures", SI_NUM_MIXTURES[0], SI_NUM_MIXTURES[-1])
    max_pool = SI_POOL_SIZES[-1]
    most_sources = min(SI_SOURCES_PER_MIXTURE[-1], 1 + (max_pool - 1) // num_mixtures)
    sources_per_mixture = trial.suggest_int("sources_per_mixture", SI_SOURCES_PER_MIXTURE[0], most_sources)
    needed = 1 + num_mixtures * (sources_per_mixture - 1)  # eq. 12: non-target sources are not shared
    smallest_pool = min((n for n in SI_POOL_SIZES if n >= needed), default=max_pool)  # default: only a FixedTrial replaying an Ñ out of range
    pool_size = trial.suggest_int("pool_size", smallest_pool, max_pool, step=2)  # the paper's odd N
    return {"pool_size": pool_size, "sources_per_mixture": sources_per_mixture, "num_mixtures": num_mixtures}
