"""Shared test helpers."""
from __future__ import annotations

import pytest


@pytest.fixture
def capture_masked_mse(monkeypatch):
    """capture_masked_mse(module) -> dict filled with the prediction, target and mask that
    ``module.masked_mse`` receives on the next forward (the real loss is still computed)."""

    def install(module) -> dict:
        seen: dict = {}
        real = module.masked_mse

        def spy(prediction, target, mask):
            seen.update(prediction=prediction.detach(), target=target, mask=mask)
            return real(prediction, target, mask)

        monkeypatch.setattr(module, "masked_mse", spy)
        return seen

    return install
