"""Command-line tools around the engine: ``simulate``, ``export``, ``replay``, ``evaluate``.

One module per command (``simulate.py``, ``export.py``, ``replay.py``, ``evaluate.py``), plus
the pieces they share: ``ranges.py`` (topic ranges by offset or time, the JSONL export record),
``lockstep.py`` (the replay feeder), ``sandbox.py`` (a replay's own topics, group, state and
worker, and the guard that keeps its writes off production) and ``targets.py`` (target policies
for off-policy evaluation). Errors a user can fix are raised as ``stream_app.cli.CliError``: one
readable line.
"""
