"""Per-customer behavioural profile: the analytics layer, O(1) work per event, bounded bytes.

- ``Profile`` (``state``): fixed-layout float32 vector + header + top-K offer table; ``encode`` /
  ``decode`` is a versioned binary codec of exactly ``PROFILE_BYTES`` (488) bytes.
- ``apply_interaction``, ``apply_outcome``, ``record_contact`` (``transitions``): pure updates.
- ``spend_personality`` (``personality``): archetype memberships, dominant, change.
- ``features`` / ``feature_vector`` (``features``): the one feature function for models and bandits.
- ``lifecycle_stage``, ``spend_mix``, ``decayed`` (``views``): read-only views at a time.

>>> p = apply_interaction(Profile.empty(), {"ts": 0, "type": "login", "channel": "app"})
>>> len(p.encode()) == PROFILE_BYTES, features(p, {"channel": "app"}, 0)["chan_app"]
(True, 1.0)
"""

from stream_app.profile.features import (
    BANDIT_FEATURES,
    FEATURE_NAMES,
    MAX_SEGMENTS,
    feature_vector,
    features,
    offer_features,
)
from stream_app.profile.layout import (
    ARCHETYPES,
    CATEGORIES,
    DEFAULT_CONFIG,
    EVENT_TYPES,
    LIFECYCLE_STAGES,
    ProfileConfig,
)
from stream_app.profile.personality import SpendPersonality, spend_personality
from stream_app.profile.state import PROFILE_BYTES, Profile, ProfileClocks, ProfileCodecError
from stream_app.profile.transitions import (
    MAX_AMOUNT,
    apply_interaction,
    apply_outcome,
    offer_history,
    record_contact,
)
from stream_app.profile.views import decayed, lifecycle_stage, recency_days, spend_mix

__all__ = [
    "ARCHETYPES",
    "BANDIT_FEATURES",
    "CATEGORIES",
    "DEFAULT_CONFIG",
    "EVENT_TYPES",
    "FEATURE_NAMES",
    "LIFECYCLE_STAGES",
    "MAX_AMOUNT",
    "MAX_SEGMENTS",
    "PROFILE_BYTES",
    "Profile", "ProfileClocks",
    "ProfileCodecError",
    "ProfileConfig",
    "SpendPersonality",
    "apply_interaction",
    "apply_outcome",
    "decayed",
    "feature_vector",
    "features",
    "lifecycle_stage",
    "offer_features",
    "offer_history",
    "recency_days",
    "record_contact",
    "spend_mix",
    "spend_personality",
]
