"""Methods, backbones and tasks of separately installed packages, found by entry points: no file of the suite edited.

A package registers a class under a name with an entry point in one of three groups (``GROUPS``); the entry point's
name is the registry name, its value the class::

    [project.entry-points."medssl_bench.methods"]
    denoise_ae = "medssl_example_denoise:DenoisingAutoencoder"

Each registry package (``benchmark.methods``, ``benchmark.backbones``, ``tasks``) loads its group once, after its own
entries (``load_plugins`` at the end of its ``__init__``), so every process that imports it (the driver, each Ray
worker) finds the same plugins in the same Python environment. The suite's own names win. A plugin that fails to
import, whose class is not what its group expects (the registry's ``check``: e.g. a method without a ``Config``), or
whose name is taken, is left out with one ``PluginProblem`` naming its package and entry point (``problems()``; the
command line prints them once), and everything else runs. Uninstalling the package removes the entry point, so the
plugin is gone from ``--list`` and the registries at the next start.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable

from benchmark.registry import Registry

GROUPS = {"method": "medssl_bench.methods", "backbone": "medssl_bench.backbones", "task": "medssl_bench.tasks"}
# A plugin method's search space (``space(trial) -> dict``, as search_spaces/<method>.py), under the method's name.
SEARCH_SPACES = "medssl_bench.search_spaces"


@dataclass(frozen=True)
class Plugin:
    """Where a registry entry came from: a package's entry point."""

    group: str  # medssl_bench.methods | medssl_bench.backbones | medssl_bench.tasks
    name: str  # the entry point's name: the registry name
    value: str  # "module:Class"
    package: str  # the distribution that declares it (pip's name)
    version: str

    @property
    def where(self) -> str:
        """"package 0.1.0 (entry point medssl_bench.methods: name = module:Class)"."""
        return f"{self.package} {self.version} (entry point {self.group}: {self.name} = {self.value})"


@dataclass(frozen=True)
class PluginProblem:
    """A plugin left out, and why."""

    plugin: Plugin
    reason: str

    def __str__(self) -> str:
        return f"plugin {self.plugin.where}: {self.reason}; it is left out, everything else runs"


_PROBLEMS: list[PluginProblem] = []
NAME = re.compile(r"[A-Za-z0-9_.+-]+")


def problems() -> list[PluginProblem]:
    """Every plugin left out in this process so far (the registries that were imported have loaded their groups)."""
    return list(_PROBLEMS)


def problem_with(group: str, name: str) -> PluginProblem | None:
    """The problem of the plugin ``name`` of ``group``, if it was left out (an unknown name's explanation)."""
    return next((p for p in _PROBLEMS if p.plugin.group == group and p.plugin.name == name), None)


def entry_points(group: str) -> list[metadata.EntryPoint]:
    """The group's entry points in the order Python finds their packages on ``sys.path``; a package seen twice (e.g.
    an editable install and a copy on PYTHONPATH) counts once."""
    seen, out = set(), []
    for ep in metadata.entry_points(group=group):
        package = ep.dist.name if ep.dist is not None else "?"
        if (package, ep.name, ep.value) not in seen:
            seen.add((package, ep.name, ep.value))
            out.append(ep)
    return out


def load_plugins(group: str, registry: Registry, *, check: Callable[[Any], str | None]) -> list[Plugin]:
    """Register every entry point of ``group`` in ``registry`` under its name; ``check(obj)``: why the loaded object
    cannot be an entry of this registry, or None. Returns the plugins registered; the others become problems."""
    loaded = []
    for ep in entry_points(group):
        plugin = Plugin(group=group, name=ep.name, value=ep.value, package=ep.dist.name if ep.dist else "?",
                        version=ep.dist.version if ep.dist else "?")
        if registry.origin(ep.name) == plugin or any(p.plugin == plugin for p in _PROBLEMS):
            continue  # loaded or reported already (a group loaded twice in one process)
        reason = _taken(registry, plugin)
        if not NAME.fullmatch(ep.name):
            reason = f"its name {ep.name!r} is not a registry name: expected letters, digits and _ . + - only (names join cell ids and METHOD:KEY=VALUE)"
        obj = None
        if reason is None:
            try:
                obj = ep.load()
            except Exception as exc:  # noqa: BLE001 - any failure of a third-party import leaves that plugin out
                reason = f"importing {ep.value} failed: {type(exc).__name__}: {exc}"
        if reason is None:
            try:
                reason = check(obj)
            except Exception as exc:  # noqa: BLE001 - e.g. a class attribute whose access raises
                reason = f"checking {ep.value} failed: {type(exc).__name__}: {exc}"
        if reason is None and ep.name in registry:  # its own import registered something under the name
            reason = None if registry.get(ep.name) is obj else _taken(registry, plugin)
        if reason is not None:
            _PROBLEMS.append(PluginProblem(plugin, reason))
            continue
        registry.register(ep.name, origin=plugin)(obj)
        loaded.append(plugin)
    return loaded


def _taken(registry: Registry, plugin: Plugin) -> str | None:
    if plugin.name not in registry:
        return None
    holder = registry.origin(plugin.name)
    by = f"plugin {holder.where}" if holder is not None else f"medssl-bench itself (a built-in {registry.kind})"
    return f"the {registry.kind} name {plugin.name!r} is taken by {by}; expected a new name (rename the entry point)"
