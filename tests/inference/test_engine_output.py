"""Model outputs to JSON values: non-finite numbers become null, nothing else changes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inferx.inference.engine import ModelOutputInvalid, _json_safe


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.array([0.25, 1.5]), [0.25, 1.5]),
        (np.array([0.25, np.nan, np.inf, -np.inf]), [0.25, None, None, None]),
        (np.array([[0.1, 0.9], [np.nan, 1.0]]), [[0.1, 0.9], [None, 1.0]]),
        (np.array([[[1.0, np.inf]], [[2.0, 3.0]]]), [[[1.0, None]], [[2.0, 3.0]]]),
        # The values are finite though their sum overflows: they stay as they are.
        (np.array([1e308, 1e308]), [1e308, 1e308]),
        (np.array([[1e308], [1e308]]), [[1e308], [1e308]]),
        (np.array([1, 2], dtype=np.int64), [1, 2]),
        (np.array([np.nan], dtype=np.float32), [None]),
    ],
)
def test_non_finite_numbers_become_null(array, expected):
    values = _json_safe(array, array.shape[0])
    assert values == expected
    assert all(v is None or not isinstance(v, float) or math.isfinite(v) for v in _flat(values))


def test_an_output_of_the_wrong_length_is_refused():
    with pytest.raises(ModelOutputInvalid, match="2 results for 3 rows"):
        _json_safe(np.array([1.0, 2.0]), 3)


def _flat(values):
    for v in values:
        if isinstance(v, list):
            yield from _flat(v)
        else:
            yield v
