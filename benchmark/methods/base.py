"""The method registry (``@register_method``) and the method base classes.

``PretextTask``, ``Recipe`` and ``DataSpec`` are defined in ``benchmark.blocks.pretext`` (so the
shared pretext bases of ``benchmark.blocks.pretexts`` can extend them) and re-exported here.
"""
from __future__ import annotations

import dataclasses

from benchmark.backbones.registry import BACKBONES
from benchmark.blocks.pretext import DataSpec, PretextTask, Recipe  # noqa: F401  (re-exported)
from benchmark import plugins
from benchmark.registry import Registry, UnknownNameError

METHODS: Registry[type[PretextTask]] = Registry("method")


def register_method(name: str):
    return METHODS.register(name)


def list_methods() -> list[str]:
    return METHODS.names()


def get_method(name: str) -> type[PretextTask]:
    problem = plugins.problem_with(plugins.GROUPS["method"], name) if name not in METHODS else None
    if problem is not None:  # e.g. a Ray node whose environment lacks a plugin's dependency: say so, not just "unknown"
        raise UnknownNameError(f"method {name!r} is not available in this process: {problem}")
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


def plugin_problem(cls) -> str | None:
    """Why an entry point's object (``benchmark.plugins``) cannot be a method, or None: what the planner and the loops
    read of every method class. ``benchmark.testing.check_method`` then holds it to the registry's contract."""
    if not (isinstance(cls, type) and issubclass(cls, PretextTask)):
        return f"{cls!r} is not a method class: expected a subclass of benchmark.methods.base.PretextTask"
    name = cls.__name__
    config = cls.__dict__.get("Config", getattr(cls, "Config", None))
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        return f"{name} has no Config: expected a frozen dataclass of its hyperparameters as {name}.Config (an empty one if it has none)"
    try:
        config()
    except Exception as exc:  # noqa: BLE001 - a third-party class: any failure is the message
        return f"{name}.Config() does not build with its defaults: {type(exc).__name__}: {exc}"
    missing = [attr for attr in ("default_backbone", "supported_backbones") if not hasattr(cls, attr)]
    if missing:
        return f"{name} declares no {' / '.join(missing)}: expected the backbone it runs on by default and every backbone it supports"
    unknown = sorted(set(cls.supported_backbones) - set(BACKBONES.names()))
    if unknown:
        return f"{name}.supported_backbones names unknown backbone(s) {unknown}; expected some of: {', '.join(BACKBONES.names())}"
    if cls.default_backbone not in cls.supported_backbones:
        return f"{name}.default_backbone {cls.default_backbone!r} is not among its supported_backbones {list(cls.supported_backbones)}"
    if cls.pretrains and not isinstance(getattr(cls, "paper_recipe", None), Recipe):
        return f"{name} has no paper_recipe: expected a benchmark.methods.base.Recipe (its pretraining's optimiser, lr, batch, steps)"
    return None
