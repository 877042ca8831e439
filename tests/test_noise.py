"""Exact, nested uniform noise and flip plans."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invariants import check_exact_noise
from noisegrid import DataError, inject_noise
from noisegrid.noise import FlipPlan, apply_plan, balanced_order, n_flips


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(2, 5),
    per_class=st.integers(1, 60),
    seed=st.integers(0, 2**31),
    rates=st.lists(st.floats(0, 0.49), min_size=1, max_size=5),
)
def test_exact_counts_nesting_and_determinism(
    k: int, per_class: int, seed: int, rates: list[float]
) -> None:
    y = np.random.default_rng(seed).permutation(np.repeat(np.arange(k), per_class))
    outs = [inject_noise(y, r, seed=seed, n_classes=k) for r in sorted(rates)]
    for rate, out in zip(sorted(rates), outs, strict=True):
        check_exact_noise(out, rate, k)
        assert np.array_equal(out.clean, y)
        again = inject_noise(y, rate, seed=seed, n_classes=k)
        assert np.array_equal(again.labels, out.labels)
    for low, high in itertools.pairwise(outs):
        assert not (low.flipped & ~high.flipped).any()  # flipped at low ⊆ flipped at high
        both = low.flipped & high.flipped
        assert np.array_equal(low.labels[both], high.labels[both])  # same target label


def test_binary_flips_go_to_the_other_class() -> None:
    y = np.array([0, 1] * 50)
    out = inject_noise(y, 0.2, seed=3)
    assert (out.labels[out.flipped] == 1 - y[out.flipped]).all()
    assert out.n_flipped == 20
    assert np.bincount(y[out.flipped]).tolist() == [10, 10]


def test_multiclass_targets_are_uniform_over_other_classes() -> None:
    y = np.repeat(np.arange(4), 3000)
    out = inject_noise(y, 0.7, seed=0)
    for c in range(4):
        targets = out.labels[out.flipped & (y == c)]
        assert c not in targets
        share = np.bincount(targets, minlength=4) / len(targets)
        assert np.allclose(share[np.arange(4) != c], 1 / 3, atol=0.03)


def test_different_seeds_flip_different_examples() -> None:
    y = np.array([0, 1] * 200)
    assert not np.array_equal(
        inject_noise(y, 0.1, seed=0).flipped, inject_noise(y, 0.1, seed=1).flipped
    )


def test_rounding_is_half_up() -> None:
    assert n_flips(0.25, 10) == 3
    assert n_flips(0.225, 1000) == 225
    assert n_flips(0.05, 10) == 1


def test_rate_out_of_range() -> None:
    with pytest.raises(DataError, match=r"noise_rate must be in \[0, 0.5\) for 2 classes; got 0.5"):
        inject_noise(np.array([0, 1]), 0.5, seed=0)


def test_plan_that_cannot_reach_the_rate() -> None:
    plan = FlipPlan(order=np.array([0]), targets=np.array([1, 0, 1, 0]))
    with pytest.raises(DataError, match=r"can flip at most 1 \(rate 0.25\)"):
        apply_plan(np.array([0, 1, 0, 1]), 0.45, plan)


def test_balanced_order_prefixes_are_even() -> None:
    y = np.repeat(np.arange(3), 5)
    order = balanced_order(y, 3, np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(15))
    for m in range(1, 16):
        counts = np.bincount(y[order[:m]], minlength=3)
        assert counts.max() - counts.min() <= 1
