"""On-disk caches are an optimisation: using one never fails a command.

An entry that cannot be read (missing, damaged, undecodable) is a miss and is computed again. A
cache that cannot be written (read-only, immutable, ``run.cache_dir`` naming a file) logs one
warning line per folder and the work goes on uncached. Every write is atomic: a temporary file in
the entry's folder, then a rename, so a concurrent reader sees the whole entry or none.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("noisegrid")
_warned: set[str] = set()


def write_entry(path: Path, write: Callable[[Path], object]) -> bool:
    """Write a cache entry atomically with ``write(temporary_path)``; False if it cannot be.

    Parameters
    ----------
    path : Path
        The entry; its folders are created.
    write : callable
        Writes the entry's content to the path it is given (a temporary file beside ``path``).

    Returns
    -------
    bool
        Whether the entry was written; when not, one warning names the folder and the fix.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        warn_unwritable(path.parent, exc)
        return False
    return True


def warn_unwritable(folder: Path, exc: OSError) -> None:
    """One warning line per cache folder that cannot be written."""
    key = str(folder)
    if key in _warned:
        return
    _warned.add(key)
    log.warning(
        "cannot write the cache %s (%s); going on without caching there — make it writable or "
        "set run.cache_dir (or $NOISEGRID_CACHE) to a writable folder",
        folder,
        exc.strerror or type(exc).__name__,
    )
