"""``rounded`` is ``round(x, digits)`` bit for bit, half-integers and odd values included."""

import struct

import numpy as np
import pytest

from stream_app.core.rounding import rounded


def _bits(values):
    return [struct.pack("<d", v) for v in values]


def _round(values, digits):
    return [round(x, digits) for x in np.asarray(values, np.float64).tolist()]


@pytest.mark.parametrize("digits", [0, 3, 6, 9])
def test_rounded_is_round_on_ordinary_values(digits):
    rng = np.random.default_rng(digits)
    for values in (rng.random(20_000), rng.random(20_000) * 7, -rng.random(20_000),
                   rng.standard_normal(20_000) * 1e4, rng.random(5) * 1e-5):
        assert _bits(rounded(values, digits)) == _bits(_round(values, digits))


def test_rounded_is_round_next_to_half_integers():
    # the decimals halfway between two 6-digit values, and their neighbouring doubles
    half = (np.random.default_rng(1).integers(-10**6, 10**6, 20_000) + 0.5) / 1e6
    for values in (half, np.nextafter(half, 2), np.nextafter(half, -2)):
        for chunk in values.reshape(-1, 20):  # as a ranking rounds them: a few at a time
            assert _bits(rounded(chunk)) == _bits(_round(chunk, 6))


@pytest.mark.parametrize("values", [[], [0.0, -0.0, -1e-9], [float("nan"), 0.5],
                                    [float("inf"), -float("inf"), 1.0], [1e300, 5e-324],
                                    [999.9999995, 2.5e-6]])
def test_rounded_is_round_on_edge_values(values):
    assert _bits(rounded(values)) == _bits(_round(values, 6))
