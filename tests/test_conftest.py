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


def test_process_state_is_put_back_after_thread_limits_and_device_choice(tmp_path) -> None:
    # What `--threads 1 --device cpu` does in-process: later tests in the same process
    # (any file may share it) ran pinned to one core, with its variables.
    import os
    import signal
    import sys

    import jax  # its platform setting is put back too
    import matplotlib

    from appsleuth.hardware import apply_device, apply_thread_limits
    from tests.conftest import _pools, restored_process_state

    env, cwd, path = dict(os.environ), os.getcwd(), list(sys.path)
    affinity, pools = os.sched_getaffinity(0), _pools()
    handler = signal.getsignal(signal.SIGTERM)
    platforms = jax.config.jax_platforms
    fallback = matplotlib.rcParams["backend_fallback"]
    with restored_process_state():
        apply_thread_limits(1)
        apply_device("cpu")
        os.environ["APPSLEUTH_TEST_LEAK"] = "1"
        os.environ.pop("PATH")
        os.chdir(tmp_path)
        sys.path.insert(0, str(tmp_path))
        del sys.modules["appsleuth.hardware"]
        signal.signal(signal.SIGTERM, lambda *args: None)
        matplotlib.rcParams["backend_fallback"] = not fallback
        assert len(os.sched_getaffinity(0)) == 1 and jax.config.jax_platforms == "cpu"
    assert dict(os.environ) == env
    assert (os.getcwd(), sys.path) == (cwd, path)
    assert "appsleuth.hardware" in sys.modules
    assert os.sched_getaffinity(0) == affinity
    assert _pools() == pools
    assert signal.getsignal(signal.SIGTERM) is handler
    assert jax.config.jax_platforms == platforms
    assert matplotlib.rcParams["backend_fallback"] is fallback


def test_a_variable_a_test_sets_without_monkeypatch_is_gone_after_it() -> None:
    # With the next test: the autouse fixture puts the environment back after each one.
    import os

    os.environ["APPSLEUTH_TEST_LEAK"] = "1"


def test_the_next_test_starts_without_it() -> None:
    import os

    assert "APPSLEUTH_TEST_LEAK" not in os.environ


def test_each_file_is_put_back_too(request: pytest.FixtureRequest) -> None:
    # A module-scoped fixture (a model trained for a file's tests) wrote KERAS_BACKEND
    # and kept it for the next file in this process; the file-level fixture undoes it.
    assert {"_process_state_restored", "_process_state_restored_after_the_file"} <= set(
        request.fixturenames
    )
