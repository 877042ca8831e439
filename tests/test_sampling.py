"""Class-balanced nested subsampling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invariants import check_balanced, check_nested_sets
from noisegrid import DataError, subsample_per_class
from noisegrid.sampling import STREAM_TEST


def labels_for(counts: list[int]) -> np.ndarray:
    y = np.concatenate([np.full(c, k) for k, c in enumerate(counts)])
    return np.random.default_rng(123).permutation(y)


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 40), min_size=2, max_size=5),
    seed=st.integers(0, 2**31),
    data=st.data(),
)
def test_balanced_nested_and_deterministic(
    counts: list[int], seed: int, data: st.DataObject
) -> None:
    y = labels_for(counts)
    k = len(counts)
    per_class = data.draw(st.lists(st.integers(1, min(counts)), min_size=1, max_size=4))
    sizes = sorted({p * k for p in per_class})
    subsets = [subsample_per_class(y, n, seed=seed, n_classes=k) for n in sizes]
    for n, rows in zip(sizes, subsets, strict=True):
        check_balanced(y, rows, n, k)
        assert np.array_equal(rows, subsample_per_class(y, n, seed=seed, n_classes=k))
    for small, large in itertools.pairwise(subsets):
        check_nested_sets(small, large)


def test_different_seeds_give_different_draws() -> None:
    y = labels_for([500, 500])
    a = subsample_per_class(y, 100, seed=0)
    b = subsample_per_class(y, 100, seed=1)
    assert not np.array_equal(a, b)


def test_streams_are_independent() -> None:
    y = labels_for([500, 500])
    assert not np.array_equal(
        subsample_per_class(y, 100, seed=0), subsample_per_class(y, 100, seed=0, stream=STREAM_TEST)
    )


def test_one_member_class_and_string_free_labels() -> None:
    y = np.array([0, 0, 0, 1])
    rows = subsample_per_class(y, 2, seed=0)
    check_balanced(y, rows, 2, 2)
    with pytest.raises(DataError, match="maximum balanced size is 2"):
        subsample_per_class(y, 4, seed=0)


def test_size_not_multiple_of_classes() -> None:
    with pytest.raises(DataError, match="not a multiple of the 3 classes"):
        subsample_per_class(np.array([0, 1, 2] * 5), 7, seed=0)
