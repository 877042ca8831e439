"""A small name → class registry shared by the plug-in families (backends, noise models).

Lookup errors list the valid names; names that a later version provides say so instead of
"unknown", and a plug-in whose optional dependency is missing names the pip extra.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to plug-in classes of one family.

    Parameters
    ----------
    family : str
        What the plug-ins are, for messages ("backend", "noise model").
    key : str
        The config key that selects one, for messages ("backend.name").
    """

    def __init__(self, family: str, *, key: str) -> None:
        self.family = family
        self.key = key
        self._classes: dict[str, type[T]] = {}
        self._planned: set[str] = set()
        self._hidden: set[str] = set()

    def register(self, name: str, *, hidden: bool = False) -> Callable[[type[T]], type[T]]:
        """Class decorator: ``@registry.register("tfidf")``.

        ``hidden=True`` registers a diagnostic or test plug-in: it works when named, but lists of
        valid names shown to users leave it out.
        """

        def deco(cls: type[T]) -> type[T]:
            if name in self._classes:
                raise RuntimeError(f"{self.family} '{name}' registered twice")
            self._classes[name] = cls
            if hidden:
                self._hidden.add(name)
            cls.name = name  # type: ignore[attr-defined]
            return cls

        return deco

    def plan(self, *names: str) -> None:
        """Declare names a later version provides, so lookups say "not available yet"."""
        self._planned.update(names)

    def names(self, *, include_hidden: bool = False) -> list[str]:
        """Registered names, sorted; hidden (diagnostic) plug-ins only with ``include_hidden``."""
        return sorted(n for n in self._classes if include_hidden or n not in self._hidden)

    def get(self, name: str) -> type[T]:
        try:
            return self._classes[name]
        except KeyError:
            available = ", ".join(self.names())
            if name in self._planned:
                raise ConfigError(
                    f"{self.family} '{name}' is not available yet in this version of noisegrid; "
                    f"set {self.key} to one of: {available}"
                ) from None
            raise ConfigError(
                f"unknown {self.family} '{name}' in {self.key}; available: {available}"
            ) from None


def validate_options(
    options_model: type[BaseModel], options: Mapping[str, Any], *, where: str
) -> BaseModel:
    """Validate plug-in options, turning pydantic's error into a one-line :class:`ConfigError`.

    ``where`` names the section and plug-in, e.g. ``"[backend] of backend 'tfidf'"``.
    """
    try:
        return options_model.model_validate(dict(options))
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                valid = ", ".join(options_model.model_fields) or "(none)"
                parts.append(f"unknown key '{key}' in {where}; valid keys: {valid}")
            else:
                msg = str(err["msg"]).removeprefix("Value error, ")
                parts.append(f"'{key}' in {where}: {msg} (got {err.get('input')!r})")
        raise ConfigError("; ".join(parts)) from None


_LOADED: set[str] = set()


def load_members(package: str, path: Iterable[str], *, shared: Collection[str] = ("base",)) -> None:
    """Import every module of the plug-in package ``package`` (found at ``path``) but its shared
    parts, once: each module registers its member as it is imported."""
    if package in _LOADED:
        return
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(list(path)):
        if mod.name not in shared:
            importlib.import_module(f"{package}.{mod.name}")
    _LOADED.add(package)
