"""Online segmentation, its codec, the segment report and the quality measures."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from river import metrics

from stream_app.models.evaluation import adjusted_rand_index, auc, mae
from stream_app.models.kmeans import OnlineKMeans, SegmentCodecError
from stream_app.models.segment_report import SegmentReport
from stream_app.models.segments import SEGMENT_FEATURES, _SCALE, segment_vector, teaches_segmenter
from stream_app.profile import Profile, apply_interaction, feature_vector

CENTRES = np.array([[0, 0, 0], [4, 0, 0], [0, 4, 0], [0, 0, 4], [4, 4, 4]], float)


def blobs(n: int, seed: int, skew: bool = False):
    """Points around five planted centres; with ``skew`` the first 300 come from two of them
    only (as when the most active customers mature first)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        label = int(rng.integers(2)) if skew and i < 300 else int(rng.integers(5))
        yield label, CENTRES[label] + rng.normal(0, 0.6, 3)


def test_recovers_planted_clusters_from_a_skewed_start():
    km = OnlineKMeans(k=5, dim=3, seed=0)
    for _, x in blobs(3000, seed=1, skew=True):
        km.learn(x)
    truth, pred = zip(*[(label, km.predict(x)) for label, x in blobs(1000, seed=2)])
    assert adjusted_rand_index(truth, pred) > 0.95


def test_predict_is_minus_one_until_initialised_and_ids_stay_stable():
    km = OnlineKMeans(k=5, dim=3, init_size=100, recluster_every=100, seed=3)
    stream = list(blobs(2000, seed=4))
    for _, x in stream[:99]:
        assert km.learn(x) == -1
    km.learn(stream[99][1])
    assert km.initialised
    probes = CENTRES
    ids = [km.predict(c) for c in probes]
    assert sorted(ids) == [0, 1, 2, 3, 4]
    for _, x in stream[100:]:  # 19 re-clusterings later, every centre keeps its id
        km.learn(x)
    assert [km.predict(c) for c in probes] == ids


def test_learn_validates_its_input():
    km = OnlineKMeans(k=2, dim=3)
    with pytest.raises(ValueError):
        km.learn(np.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        km.learn(np.array([1.0, np.nan, 2.0]))


def test_codec_round_trip_continues_identically_and_is_bounded():
    km = OnlineKMeans(k=5, dim=3, memory=300, seed=5)
    stream = list(blobs(1500, seed=6))
    for _, x in stream[:60]:  # before initialisation: the buffer is state too
        km.learn(x)
    early = OnlineKMeans.decode(km.encode())
    assert early.encode() == km.encode() and not early.initialised
    for _, x in stream[60:1000]:
        km.learn(x)
    copy = OnlineKMeans.decode(km.encode())
    for _, x in stream[1000:]:
        assert copy.learn(x) == km.learn(x)
    assert copy.encode() == km.encode()
    np.testing.assert_array_equal(copy.centers, km.centers)
    # bounded: header + centres + counts + at most ``memory`` buffered vectors
    assert len(km.encode()) <= 64 + 8 * (5 * 3 + 5 + 300 * 3)


def test_codec_rejects_bad_bytes():
    data = OnlineKMeans(k=2, dim=2).encode()
    for bad in (b"", b"\x07" + data[1:], data[:-8]):
        with pytest.raises(SegmentCodecError):
            OnlineKMeans.decode(bad)


def test_segment_vector_is_the_scaled_feature_subset():
    p = Profile.empty()
    for i in range(30):
        p = apply_interaction(p, {"ts": i * 7 * 3_600_000, "type": ("transaction", "login")[i % 2],
                                  "amount": 12.0 + i, "category": ("dining", "travel")[i % 3 == 0],
                                  "channel": ("app", "web")[i % 4 == 0]})  # fmt: skip
    now = 40 * 7 * 3_600_000
    expected = feature_vector(p, None, now, SEGMENT_FEATURES) * _SCALE
    np.testing.assert_allclose(segment_vector(p, now), expected, rtol=1e-12)


def test_teaching_schedule_doubles():
    assert [n for n in range(1, 700) if teaches_segmenter(n)] == [10, 20, 40, 80, 160, 320, 640]
    assert [n for n in range(1, 30) if teaches_segmenter(n, first=3)] == [3, 6, 12, 24]


def test_segment_report_sizes_and_rates():
    r = SegmentReport(3)
    for old, new in [(-1, 0), (-1, 0), (-1, 1), (0, 2), (2, 2), (1, -1)]:
        r.move(old, new)
    for seg, reward, value in [(0, 1.0, 10.0), (0, 0.0, 0.0), (2, 1.0, 4.0), (-1, 1.0, 9.0)]:
        r.outcome(seg, reward, value)
    rows = {row["segment"]: row for row in r.rows(ts=5)}
    assert [rows[j]["size"] for j in range(3)] == [1, 0, 1]
    assert rows[0]["response_rate"] == 0.5 and rows[0]["value_per_contact"] == 5.0
    assert rows[1]["response_rate"] is None and rows[2]["value"] == 4.0
    assert all(row["kind"] == "segment" and row["ts"] == 5 for row in rows.values())


def test_adjusted_rand_index_matches_hand_values_and_river():
    assert adjusted_rand_index([0, 0, 1, 1], [5, 5, 7, 7]) == 1.0
    # contingency [[2, 1], [0, 1, 2]...]: index 2, expected 6 * 3 / 15, max 4.5
    assert adjusted_rand_index([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2]) == pytest.approx(0.8 / 3.3)
    rng = np.random.default_rng(7)
    a, b = rng.integers(4, size=200), rng.integers(3, size=200)
    b[:100] = a[:100] % 3
    river_ari = metrics.AdjustedRand()
    for x, y in zip(a, b):
        river_ari.update(int(x), int(y))
    assert adjusted_rand_index(a, b) == pytest.approx(river_ari.get(), abs=1e-9)
    with pytest.raises(ValueError):
        adjusted_rand_index([0, 1], [0])


def test_auc_is_the_probability_a_positive_outranks_a_negative():
    rng = np.random.default_rng(8)
    y = rng.integers(2, size=150)
    s = np.round(rng.normal(y * 0.8, 1.0), 1)  # rounding makes ties
    pos, neg = s[y == 1], s[y == 0]
    pairs = [(p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg)]
    assert auc(y, s) == pytest.approx(float(np.mean(pairs)), abs=1e-12)
    assert np.isnan(auc([1, 1], [0.2, 0.3]))


def test_mae():
    assert mae([1, 2, 3], [2, 2, 1]) == 1.0
