"""The live dashboard: ``stream-app dashboard`` reads the engine's output topics and serves a
page that follows what the engine decides and learns while it runs.

``board.py`` aggregates the topics in plain Python (testable without Kafka), ``feed.py`` reads
them, ``server.py`` serves the page, ``/api/summary`` (JSON) and ``/api/stream`` (server-sent
events); ``oracle.py`` adds the simulator's ground truth when the traffic is simulated.
"""

from stream_app.dashboard.board import Board
from stream_app.dashboard.oracle import SimulatorOracle

__all__ = ["Board", "SimulatorOracle"]
