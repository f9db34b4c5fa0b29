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


@pytest.mark.parametrize("n_per_app", [1, 5, 6, 12, 60])
def test_make_sherlock18_gives_the_rows_asked_for(n_per_app: int) -> None:
    from tests.conftest import SHERLOCK18_FEATURES, make_sherlock18

    df = make_sherlock18(n_per_app=n_per_app, apps=("Gmail", "Moriarty"))
    assert len(df) == 2 * n_per_app
    counts = df["ApplicationName"].value_counts().to_dict()
    assert counts == {"Gmail": n_per_app, "Moriarty": n_per_app}
    # cminflt is all missing on purpose (the real file's empty column).
    filled = [f for f in SHERLOCK18_FEATURES if f != "cminflt"]
    assert not df[filled].isna().any().any()
