"""CNN-restart baseline (SI paper section 5.5.3): train from random initialisation on the labelled
cases, then restart the optimisation (fresh optimiser and learning-rate schedule) from those weights."""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.blocks.pretexts.scratch import NoPretext
from benchmark.methods.base import register_method


@dataclass(frozen=True)
class RestartConfig:
    rounds: int = 2  # supervised runs, each restarting the schedule from the previous run's weights

    def __post_init__(self) -> None:
        if self.rounds < 2:
            raise ValueError(f"restart needs rounds >= 2 (one run from scratch, then restarts), got {self.rounds}")


@register_method("restart")
class Restart(NoPretext):
    """CNN-restart: fine-tune from scratch, then restart the schedule from the result (SI paper 5.5.3)."""

    Config = RestartConfig

    @classmethod
    def finetune_rounds(cls, cfg: RestartConfig) -> int:
        return cfg.rounds
