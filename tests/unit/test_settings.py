"""Settings read from the environment: values parsed, wrong ones refused with a readable line."""

from __future__ import annotations

import pytest

from stream_app.settings import HEARTBEAT_INTERVAL_S, Settings


def test_the_group_session_timeout_is_read_and_kept_above_three_heartbeats():
    assert Settings.from_env({}).session_timeout_s == 10.0
    assert Settings.from_env({"STREAM_APP_SESSION_TIMEOUT_S": "4"}).session_timeout_s == 4.0
    with pytest.raises(ValueError, match="STREAM_APP_SESSION_TIMEOUT_S must be at least 3"):
        Settings.from_env({"STREAM_APP_SESSION_TIMEOUT_S": str(2.5 * HEARTBEAT_INTERVAL_S)})
