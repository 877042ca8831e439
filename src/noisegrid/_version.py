"""The installed package's version (its own module, so any module can import it)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("noisegrid")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"
