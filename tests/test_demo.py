"""The demo end to end with a tiny setting: every artifact it promises exists and is valid."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console

from appsleuth.cli import main
from appsleuth.data.load import load_sherlock
from appsleuth.data.tables import embedded_data
from appsleuth.demo import _demo_sweep_dir, _run_scan, _train_baseline, run_demo
from appsleuth.run import load_run, run_status
from appsleuth.sweep import LocalSummary, SweepInterrupted, trial_states


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
    # The mystery sample is new rows (another seed of the generator), not the demo's own
    # table, most of which trained the model; with Moriarty's alarm where one was chosen.
    preds = pd.read_csv(result.predictions_csv)
    assert len(preds) == 2000
    assert {"row_id", "predicted_app", "probability", "true_app", "correct"} <= set(preds)
    assert "moriarty_score" in preds
    mystery = load_sherlock(result.out / "mystery.csv")
    own = embedded_data(3000)
    copies = mystery.merge(own.drop_duplicates(), how="inner", on=list(own.columns))
    assert len(copies) < len(mystery) / 2  # a sample of the demo's own table: all of them
    assert "accuracy on the new rows:" in text
    assert "Moriarty alarm at score >=" in text or "no Moriarty alarm: the baseline" in text
    assert str(result.reports[0]) in text
    # Re-running reuses every complete run instead of training again.
    again = run_demo(
        tmp_path / "demo", rows=3000, epochs=2, workers=1, console=Console(file=io.StringIO())
    )
    assert again.seconds < result.seconds
    assert main(["demo", "--help"]) == 0


def test_a_demo_with_other_settings_retrains_the_baseline_and_replans_the_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What run_demo does with the output of an earlier demo run with other rows (not
    # refused); shown here on tiny data instead of a third whole demo.
    from appsleuth.data.tables import embedded_data
    from appsleuth.spec import DataSpec, ModelSpec, RunSpec, TrainSpec
    from appsleuth.sweep import SweepSpec
    from appsleuth.sweep.store import MANIFEST

    monkeypatch.setenv("APPSLEUTH_CACHE", str(tmp_path / "cache"))

    def baseline(rows: int):
        spec = RunSpec(data=DataSpec(rows=rows), train=TrainSpec(epochs=1, batch_size=64))
        return _train_baseline(spec, data=embedded_data(rows), out=tmp_path, verbose=False)

    first = baseline(400)
    written = (first.run_dir / "model_metadata.json").read_text()
    assert baseline(400).run_dir == first.run_dir
    assert (first.run_dir / "model_metadata.json").read_text() == written  # reused
    other = baseline(300)
    assert other.run_dir == first.run_dir and run_status(other.run_dir) == "complete"
    assert (
        other.metadata["n_train"] + other.metadata["n_val"]
        < first.metadata["n_train"] + (first.metadata["n_val"])
    )

    def scan(rows: int) -> SweepSpec:
        return SweepSpec(
            name="scan-hidden-neurons",
            data=DataSpec(rows=rows),
            base=RunSpec(model=ModelSpec(), train=TrainSpec(epochs=1)),
            grid={"hidden_neurons": [1, 4]},
        )

    out = io.StringIO()
    planned = _demo_sweep_dir(scan(400), tmp_path, Console(file=out))
    assert _demo_sweep_dir(scan(400), tmp_path, Console(file=out)) == planned
    assert out.getvalue() == ""
    replanned = _demo_sweep_dir(scan(300), tmp_path, Console(file=out))
    assert replanned == planned
    assert (
        json.loads((replanned / MANIFEST).read_text())["trials"][0]["spec"]["data"]["rows"] == 300
    )
    previous = tmp_path / ".scan-hidden-neurons.previous"
    assert json.loads((previous / MANIFEST).read_text())["trials"][0]["spec"]["data"]["rows"] == 400
    assert "the settings changed since the last demo" in out.getvalue()


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


def test_the_teaching_studies_are_written_as_spec_files(tmp_path: Path) -> None:
    # An installed appsleuth has no examples/sweeps/ for `sweep run`: it writes them.
    from appsleuth.demo import STUDIES, teaching_studies, write_teaching_studies
    from appsleuth.sweep import load_sweep_spec

    out = tmp_path / "examples" / "sweeps"
    written = write_teaching_studies(out)
    assert written == [(out / f"{name}.yaml", True) for name in STUDIES]
    for spec in teaching_studies():
        assert load_sweep_spec(out / f"{spec.name}.yaml").to_dict() == spec.to_dict()
    edited = out / "scan-layers.yaml"
    edited.write_text("name: mine\n")
    assert (edited, False) in write_teaching_studies(out)
    assert edited.read_text() == "name: mine\n"  # the user's copy is kept


def test_a_scan_stopped_early_stops_the_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker stopped by a signal ends run_local early without raising: the demo went on
    # with an empty scan, reported it and said it had finished, with exit code 0.
    def stopped_early(sweep_dir: Path, *, workers: int | None) -> LocalSummary:
        return LocalSummary(
            sweep_dir=sweep_dir,
            outcomes=(),
            workers=1,
            threads_per_trial=1,
            wall_s=1.0,
            interrupted=True,
        )

    monkeypatch.setattr("appsleuth.sweep.run_local", stopped_early)
    with pytest.raises(SweepInterrupted, match="run the same command again"):
        _run_scan(tmp_path, 1)
