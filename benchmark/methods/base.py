"""The method registry (``@register_method``) and the method base classes.

``PretextTask``, ``Recipe`` and ``DataSpec`` are defined in ``benchmark.blocks.pretext`` (so the
shared pretext bases of ``benchmark.blocks.pretexts`` can extend them) and re-exported here.
"""
from __future__ import annotations

from benchmark.blocks.pretext import DataSpec, PretextTask, Recipe  # noqa: F401  (re-exported)
from benchmark.registry import Registry

METHODS: Registry[type[PretextTask]] = Registry("method")


def register_method(name: str):
    return METHODS.register(name)


def list_methods() -> list[str]:
    return METHODS.names()


def get_method(name: str) -> type[PretextTask]:
    return METHODS.get(name)
