"""The integration gate itself: a missing component fails under CI's variable."""

from __future__ import annotations

import pytest

from tests.conftest import require_component


def test_present_component_passes() -> None:
    require_component("something", True)


def test_missing_component_skips_without_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APPSLEUTH_REQUIRE_INTEGRATION", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not available"):
        require_component("slurmctld", False)


def test_missing_component_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPSLEUTH_REQUIRE_INTEGRATION", "1")
    with pytest.raises(pytest.fail.Exception, match="slurmctld is required"):
        require_component("slurmctld", False)
