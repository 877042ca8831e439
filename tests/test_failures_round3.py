"""The third fault campaign: hard links, ambiguous split files, noise at the bound, tiny test
samples, caches, and the messages that named the wrong cause.

Each case runs through the CLI in-process, like :mod:`test_failures` (whose helpers it reuses): a
case that must fail asserts one ``error:`` line naming the cause and the fix, no traceback, and
that a store which existed before is byte for byte unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from test_failures import Case, Env, Prepared, check, env, invoke  # noqa: F401

# -- 1. hard links ------------------------------------------------------------------------------


def _hard_linked(command: str, *, snapshot: bool = False) -> Callable[[Env], Prepared]:
    def make(env: Env) -> Prepared:
        cfg = env.stored()
        if snapshot:
            # `cp -al`: a folder of hard links beside the original
            copy = env.tmp / "snapshot"
            copy.mkdir()
            os.link(env.store, copy / "results.sqlite")
            other = copy / "results.sqlite"
        else:
            other = env.tmp / "b.sqlite"
            os.link(env.store, other)
        args: list[object] = [command, cfg, "--store", other]
        if command == "run":
            args += ["--set", "backend.seconds=0.01"]
        if command == "export":
            args += ["--out", env.tmp / "out.csv"]
        return Prepared(args, store=env.store)

    return make


HARD_LINK = (
    r"results store \S+ has 2 hard links \(other names for the same file, made by `ln` or "
    r"`cp -al`\); SQLite keeps one journal per name, so using two names loses cells — give it a "
    r"name of its own: remove the other links, or copy it \(cp "
)
LOSS = [
    Case("hard-link-run-variant", _hard_linked("run"), 2, HARD_LINK),
    Case("hard-link-status", _hard_linked("status"), 2, HARD_LINK),
    Case("hard-link-snapshot-run", _hard_linked("run", snapshot=True), 2, HARD_LINK),
    Case("hard-link-snapshot-export", _hard_linked("export", snapshot=True), 2, HARD_LINK),
]


@pytest.mark.parametrize("case", LOSS, ids=lambda c: c.id)
def test_hard_linked_store_is_refused(env: Env, case: Case) -> None:
    check(case, env)


def test_hard_linked_store_keeps_every_cell(env: Env) -> None:
    cfg = env.stored()
    other = env.tmp / "b.sqlite"
    os.link(env.store, other)
    code, _, err = invoke("run", cfg, "--store", other, "--set", "backend.seconds=0.01")
    assert code == 2 and "hard links" in err
    other.unlink()
    code, out, _ = invoke("status", cfg)
    assert code == 0 and out.startswith("4 done, 0 failed, 0 pending"), out
