"""``stream-app demo``: its configuration is the learning benchmark's best, its learning curve and
its summary are computed as documented, bad options are one readable line."""

from __future__ import annotations

import orjson
import pytest

from stream_app.cli import main
from stream_app.evaluation.learning import ENGINE_CONFIGS, engine_config
from stream_app.kafka.traffic import Score
from stream_app.tools.demo import DEMO_CONFIG, _lockstep_ms
from stream_app.tools.learning_curve import learning_curve, write_png
from stream_app.tools.simulate import summary

HOUR = 3_600_000


def test_the_demo_publishes_the_learning_benchmarks_best_configuration():
    demo = orjson.loads(DEMO_CONFIG.read_bytes())
    best = engine_config(ENGINE_CONFIGS["engine_best"])
    assert demo["use_cases"] == best["use_cases"]
    assert demo["offers"] == best["offers"]
    assert demo["use_cases"][0]["policy"] == "linear_thompson"


def test_event_time_runs_at_most_half_the_shortest_attribution_window_ahead():
    doc = {"use_cases": [{"attribution_window_s": 3600}, {"attribution_window_s": 600}]}
    assert _lockstep_ms(doc) == 300_000
    assert _lockstep_ms(orjson.loads(DEMO_CONFIG.read_bytes())) == 1_800_000


def test_learning_curve_bins_by_event_time_and_scores_against_the_oracle():
    # three decisions in the first 2 h bin, none in the second, one in the third
    trace = [(0, 0.2, 0.4, 0.1), (HOUR, 0.4, 0.4, 0.2), (HOUR + 1, 0.0, 0.4, 0.3),
             (5 * HOUR, 0.3, 0.6, 0.1)]
    c = learning_curve(trace, start_ms=0, bin_h=2.0)
    assert c["hours"] == [1.0, 5.0] and c["decisions"] == [3, 1]
    # engine (0.2 + 0.4 + 0) / 3 = 0.2 against the oracle's 0.4: half of it; random 0.2 / 0.4
    assert c["engine"] == [0.2, 0.3] and c["oracle"] == [0.4, 0.6]
    assert c["efficiency"] == [0.5, 0.5] and c["random_efficiency"] == [0.5, 0.1667]


def test_summary_splits_the_run_in_halves_and_counts_no_action_as_nothing_shown():
    trace = [(0, 0.1, 0.5, 0.2), (1, 0.0, 0.5, 0.2), (2, 0.4, 0.5, 0.1), (3, 0.5, 0.5, 0.1)]
    s = Score(requests=4, decisions=4, no_action=1, trace=trace, start_ms=0, end_ms=4)
    out = summary(s)
    # first half 0.1 / 1.0, second half 0.9 / 1.0; random 0.6 / 2.0 over the run
    assert (out["efficiency_first_half"], out["efficiency_second_half"]) == (0.1, 0.9)
    assert out["random_efficiency"] == 0.3 and out["offers_made"] == 3


def test_the_plot_is_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    c = learning_curve([(0, 0.2, 0.4, 0.1), (7 * HOUR, 0.3, 0.4, 0.1)], start_ms=0, bin_h=6.0)
    path = tmp_path / "curve.png"
    write_png(c, path, title="test", halfway_h=6.0)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("options, says", [
    (["--customers", "0"], "must be positive"),
    (["--config", "no/such/config.json"], "cannot read no/such/config.json"),
])
def test_bad_options_are_one_readable_line_before_anything_starts(options, says, capsys):
    assert main(["demo", *options]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1


def test_a_config_the_engine_would_refuse_is_refused_before_anything_starts(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps({"version": "x", "offers": [], "use_cases": []}))
    assert main(["demo", "--config", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err
