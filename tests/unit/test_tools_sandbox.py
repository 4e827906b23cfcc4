"""The replay sandbox refuses anything that could touch production (no broker needed: the
guard fires before a message is handed to the client)."""

from __future__ import annotations

import pytest

from stream_app.kafka.topics import CONTRACT
from stream_app.settings import Settings
from stream_app.tools.sandbox import Sandbox, SandboxViolation


@pytest.mark.parametrize("prefix", ["", "prod-", "replay-"])
def test_sandbox_names_never_meet_production(prefix, tmp_path):
    prod = Settings().with_(topic_prefix=prefix, cache_dir=tmp_path, data_dir=tmp_path / "w")
    box = Sandbox.create(prod, "nightly")
    assert box.prefix == "replay-nightly-" and box.settings.app_id == "replay-nightly"
    assert box.settings.data_dir == tmp_path / "replay-nightly"
    assert not box.topics & {prod.topic(s.name) for s in CONTRACT}
    assert all(t.startswith("replay-nightly-") for t in box.topics)
    # the worker's changelog topics are named after the app id, so the prefix covers them too
    assert f"{box.settings.app_id}-arms-changelog".startswith(box.prefix)


def test_producer_refuses_every_production_topic(tmp_path):
    prod = Settings().with_(topic_prefix="", cache_dir=tmp_path)
    guarded = Sandbox.create(prod, "g").producer()
    for spec in CONTRACT:
        with pytest.raises(SandboxViolation, match="refusing to write"):
            guarded.produce(prod.topic(spec.name), b"c1", b"{}")
    with pytest.raises(SandboxViolation):
        guarded.produce("replay-other-decision-requests", b"c1", b"{}")  # another sandbox
    assert guarded.sent == {}


@pytest.mark.parametrize("prod, name", [
    ({"topic_prefix": "replay-x-"}, "x"),                 # same prefix
    ({"topic_prefix": "replay-x-y-"}, "x"),               # production topics under the prefix
    ({"app_id": "replay-x"}, "x"),                        # same consumer group
    ({}, "../etc"),                                        # not a name
])
def test_sandbox_that_could_be_production_is_refused(prod, name, tmp_path):
    settings = Settings().with_(cache_dir=tmp_path, **prod)
    with pytest.raises(SandboxViolation):
        Sandbox.create(settings, name)


def test_same_state_folder_is_refused(tmp_path):
    prod = Settings().with_(cache_dir=tmp_path, data_dir=tmp_path / "replay-x")
    with pytest.raises(SandboxViolation, match="state folder"):
        Sandbox.create(prod, "x")
