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


# Deprecated method names -> their spelling now (a method name, or METHOD:KEY=VALUE[:...] for a variant).
METHOD_ALIASES: dict[str, str] = {}


def register_method_alias(old: str, new: str) -> None:
    if old in METHODS or old in METHOD_ALIASES:
        raise ValueError(f"method alias {old!r} clashes with a registered method or alias")
    METHOD_ALIASES[old] = new


def resolve_method_alias(entry: str) -> tuple[str, str | None]:
    """(the entry spelled with current names, the deprecated name it used or None): ``l1+coper_swav_resnet:lambda1=0.4``
    -> ``l1+coper:loss_backbone=resnet_unet:lambda1=0.4``."""
    name, sep, rest = entry.strip().partition(":")
    if name not in METHOD_ALIASES:
        return entry, None
    return METHOD_ALIASES[name] + (f":{rest}" if sep else ""), name
