"""The HTTP decision gateway: channels that cannot speak Kafka ask for decisions over HTTP, in the
engine's own JSON or with Azure AI Personalizer's Rank / Reward calls (``docs/gateway.md``).

The gateway is a Kafka client like any channel: it produces to ``decision-requests`` and
``outcomes`` and reads ``decisions``; the engine does not know it is there. Its pieces:

- ``service.py``: ``DecisionGateway``, what each call does (no HTTP, no Kafka);
- ``engine.py`` and ``correlator.py``: the Kafka link (a request out, its decision back by id);
- ``personalizer.py``: Rank / Reward / Activate mapped onto the contract;
- ``apprentice.py``: apprentice mode, the baseline serving until the engine beats it;
- ``events.py``: the answered events kept for their rewards;
- ``catalogue.py``: the engine's catalogue, read from ``engine-config``;
- ``app.py``: the aiohttp routes and ``run_gateway``.
"""

from stream_app.gateway.apprentice import Apprentice, ApprenticeRule
from stream_app.gateway.service import DecisionGateway

__all__ = ["Apprentice", "ApprenticeRule", "DecisionGateway"]
