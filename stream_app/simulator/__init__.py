"""Customer simulator: a seeded population with hidden ground truth that emits contract messages,
answers decisions and knows the oracle. Kafka-free; the CLI wires it to topics.

>>> sim = Simulation(Population(seed=1, n_customers=20, offers=default_engine_config()), days=0.5)
>>> sim.n_requests > 0
True
"""

from stream_app.simulator.offers import as_offers, default_engine_config
from stream_app.simulator.population import PAGES, SEGMENT_NAMES, Population
from stream_app.simulator.simulation import Simulation

__all__ = [
    "PAGES",
    "SEGMENT_NAMES",
    "Population",
    "Simulation",
    "as_offers",
    "default_engine_config",
]
