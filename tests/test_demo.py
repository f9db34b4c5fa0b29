"""The demo end to end with a tiny setting: every artifact it promises exists and is valid."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from appsleuth.cli import main
from appsleuth.demo import run_demo
from appsleuth.run import load_run, run_status
from appsleuth.sweep import trial_states


@pytest.mark.slow
def test_demo_tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPSLEUTH_CACHE", str(tmp_path / "cache"))
    out = io.StringIO()
    result = run_demo(
        tmp_path / "demo", rows=3000, epochs=2, workers=1, console=Console(file=out, width=120)
    )
    text = out.getvalue()
    for heading in (
        "1. Data",
        "2. The baseline",
        "3. Tuning",
        "4. Report",
        "5. Classify",
        "Summary",
    ):
        assert heading in text
    assert "leakage lesson" in text and "Moriarty" in text
    quality = json.loads(result.quality_json.read_text())
    assert quality["synthetic"] is True
    assert run_status(result.baseline_run) == "complete"
    load_run(result.baseline_run)
    (sweep_dir,) = result.sweep_dirs
    states = trial_states(sweep_dir)
    assert [s.status for s in states] == ["complete"] * 4
    assert len(pd.read_csv(sweep_dir / "results.csv")) == 4
    for report in result.reports:
        html = report.read_text(encoding="utf-8")
        assert html.startswith("<!DOCTYPE html>") or html.lower().startswith("<!doctype html>")
        assert "data:image/png;base64," in html
    preds = pd.read_csv(result.predictions_csv)
    assert 0 < len(preds) <= 500
    assert {"row_id", "predicted_app", "probability", "true_app", "correct"} <= set(preds)
    assert str(result.reports[0]) in text
    # Re-running reuses every complete run instead of training again.
    again = run_demo(
        tmp_path / "demo", rows=3000, epochs=2, workers=1, console=Console(file=io.StringIO())
    )
    assert again.seconds < result.seconds
    # Other settings: the baseline is retrained and the scan planned again, not refused.
    other = run_demo(
        tmp_path / "demo", rows=2500, epochs=2, workers=1, console=Console(file=io.StringIO())
    )
    assert run_status(other.baseline_run) == "complete"
    assert [s.status for s in trial_states(other.sweep_dirs[0])] == ["complete"] * 4
    assert (tmp_path / "demo" / ".scan-hidden-neurons.previous").is_dir()
    assert main(["demo", "--help"]) == 0


def test_full_demo_studies_are_the_examples_and_need_no_source_checkout() -> None:
    # `demo --full` once read examples/sweeps/ next to the source tree, which an installed
    # appsleuth (pip install, not -e) does not have: the studies live in the package now,
    # and must stay the very studies the README says ship in examples/sweeps/.
    from appsleuth.demo import STUDIES, teaching_studies
    from appsleuth.spec import DataSpec
    from appsleuth.sweep import load_sweep_spec

    examples = Path(__file__).resolve().parents[1] / "examples" / "sweeps"
    data = DataSpec(rows=3000)
    studies = teaching_studies(data)
    assert [s.name for s in studies] == list(STUDIES)
    assert sum(s.size() for s in studies) == 22  # "22 trials x 30 epochs"
    assert sorted(p.stem for p in examples.glob("*.yaml")) == sorted(STUDIES)
    for spec in studies:
        shipped = load_sweep_spec(examples / f"{spec.name}.yaml").to_dict()
        shipped["data"] = data.to_dict()
        assert spec.to_dict() == shipped, spec.name
        assert {t.spec.train.epochs for t in spec.plan()} == {30}
