"""The plug-in floor: what the spec needs from the backends, noise models and executors.

:mod:`noisegrid.config` is the ground floor and imports no plug-in; the registries are filled by
the plug-in modules themselves. This module sits one floor up, answers the spec's questions
(:class:`~noisegrid.config.PluginCatalog`: are these options valid, which ``[noise]`` and
``[train]`` keys does a plug-in read) from the registries, and installs itself in
:mod:`noisegrid.config` when imported (the spec loads it by name on first use).
"""

from __future__ import annotations

from collections.abc import Collection

from ._registry import validate_options
from .backends import get_backend_class
from .config import ExperimentSpec, set_plugin_catalog
from .errors import ConfigError
from .executors import check_executor
from .noise import get_noise_model_class
from .trackers import get_tracker_class


class RegistryCatalog:
    """The :class:`~noisegrid.config.PluginCatalog` backed by the plug-in registries."""

    def check(self, spec: ExperimentSpec) -> None:
        """Validate ``[backend]`` and ``[noise]`` options and the executor's and tracker's names.

        Raises
        ------
        ConfigError
            An unknown plug-in, an unknown key (one no noise model of the grid reads), or an
            invalid value; the message names the section, the plug-in and the valid keys.
        """
        name = spec.backend.name
        validate_options(
            get_backend_class(name).Options,
            spec.backend_options(),
            where=f"[backend] of backend '{name}'",
        )
        noise_options = spec.noise.options()
        known: set[str] = set()
        for model in spec.grid.noise_models:
            fields = self.noise_keys(model)
            known.update(fields)
            validate_options(
                get_noise_model_class(model).Options,
                {k: v for k, v in noise_options.items() if k in fields},
                where=f"[noise] of noise model '{model}'",
            )
        unknown = sorted(set(noise_options) - known)
        if unknown:
            models = ", ".join(spec.grid.noise_models)
            raise ConfigError(
                f"unknown key '{unknown[0]}' in [noise]: no noise model of this grid ({models}) "
                f"reads it; valid keys: {', '.join(sorted(known)) or '(none)'}"
            )
        check_executor(spec.run.executor)
        if spec.track is not None:
            get_tracker_class(spec.track.to)

    def noise_keys(self, model: str) -> Collection[str]:
        return tuple(get_noise_model_class(model).Options.model_fields)

    def train_keys(self, backend: str) -> Collection[str]:
        return get_backend_class(backend).train_keys


set_plugin_catalog(RegistryCatalog())

__all__ = ["RegistryCatalog"]
