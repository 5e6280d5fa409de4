"""Name -> thing registries, in the style of timm's ``@register_model``.

One registry per kind (methods, backbones, tasks). A duplicate name is an error,
and an unknown name raises an error that lists every valid choice. An entry registered by a separately installed
package (``benchmark.plugins``: an entry point) carries where it came from (``origin``); the suite's own entries
carry none.
"""
from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name that no registry entry has; the message lists the choices."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._origins: dict[str, Any] = {}  # name -> the plugin that registered it (benchmark.plugins.Plugin)

    def register(self, name: str, *, origin: Any = None) -> Callable[[T], T]:
        """Decorator registering an object under ``name``; ``origin``: the plugin it comes from (None: the suite)."""
        def decorator(obj: T) -> T:
            if name in self._entries and self._entries[name] is obj and origin is not None:
                self._origins[name] = origin  # a plugin that also used the decorator: it is the same entry
                return obj
            if name in self._entries:
                raise ValueError(f"duplicate {self.kind} name {name!r}: already registered to {self._entries[name]!r}")
            self._entries[name] = obj
            if origin is not None:
                self._origins[name] = origin
            try:
                obj.registry_name = name  # type: ignore[attr-defined]
            except (AttributeError, TypeError):
                pass
            return obj

        return decorator

    def unregister(self, name: str) -> T:
        """Remove ``name`` (an uninstalled plugin in a test); returns what it held."""
        self._origins.pop(name, None)
        return self._entries.pop(name)

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; expected one of: {', '.join(self.names())}")
        return self._entries[name]

    def origin(self, name: str) -> Any:
        """The plugin that registered ``name`` (``benchmark.plugins.Plugin``), or None for the suite's own entries."""
        return self._origins.get(name)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def builtin_names(self) -> list[str]:
        """The suite's own entries (no plugin's)."""
        return sorted(n for n in self._entries if n not in self._origins)

    def __contains__(self, name: str) -> bool:
        return name in self._entries
