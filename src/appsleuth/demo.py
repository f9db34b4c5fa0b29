"""``appsleuth demo``: the whole workflow on the embedded synthetic data, in a few minutes.

Data check (with the leakage lesson), the baseline model trained with the fused engine
and evaluated (per-class table, Moriarty's detection rate), a short hidden-neuron scan
with the local executor, the HTML report, and prediction of a "mystery" sample of new rows
(with Moriarty's alarm at the threshold chosen for 1 % false alarms).
Re-running it reuses what is already complete.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Any

__all__ = ["STUDIES", "DemoResult", "run_demo", "teaching_studies", "write_teaching_studies"]

SCAN_NEURONS = (1, 4, 18, 80)
# The mystery sample: rows of another seed of the generator, drawn from a pool spanning
# more sessions than the sample would on its own.
_MYSTERY_SEED = 1
_MYSTERY_POOL = 20_000
_MYSTERY_ROWS = 2_000
# The false-alarm rate whose threshold the mystery sample's Moriarty alarm uses.
_ALARM_RATE = 0.01
# The teaching material's four studies, varied around the baseline (1 hidden layer of 18,
# Adam 0.0003, batch 32, 30 epochs, the teaching split). examples/sweeps/ holds the same
# studies as YAML (a test keeps them equal); they are defined here too because an
# installed appsleuth has no examples folder, and --full must work there as well.
_STUDY_GRIDS: dict[str, dict[str, list[Any]]] = {
    "scan-hidden-neurons": {"hidden_neurons": [1, 2, 4, 8, 12, 18, 40, 80]},
    "scan-learning-rate": {"learning_rate": [0.0003, 0.001, 0.01, 0.1]},
    "scan-batch-size": {"batch_size": [16, 32, 64, 128, 512, 1024]},
    "scan-layers": {"hidden_neurons": [[18], [18, 18], [18, 18, 18], [18, 18, 18, 18]]},
}
STUDIES = tuple(_STUDY_GRIDS)


def teaching_studies(data: Any = None) -> list[Any]:
    """The teaching material's four studies as sweep specs (22 trials x 30 epochs).

    Args:
        data: The :class:`~appsleuth.spec.DataSpec` of every study. Defaults to the
            embedded synthetic data.

    Returns:
        One :class:`~appsleuth.sweep.SweepSpec` per study, in :data:`STUDIES` order.
    """
    from appsleuth.spec import DataSpec, RunSpec, TrainSpec
    from appsleuth.sweep import SweepSpec

    base = RunSpec(train=TrainSpec(epochs=30))
    data = DataSpec() if data is None else data
    return [
        SweepSpec(name=name, data=data, base=base, grid=grid) for name, grid in _STUDY_GRIDS.items()
    ]


def write_teaching_studies(directory: str | Path) -> list[tuple[Path, bool]]:
    """Write the four teaching studies as sweep spec files ``<study>.yaml`` in ``directory``.

    An installed appsleuth has no ``examples/sweeps/`` folder; this writes the same studies
    there (every setting spelled out), for ``appsleuth sweep run``. A file that exists
    already is left as it is: it may be the user's edited copy.

    Args:
        directory: Where to write; made if it does not exist.

    Returns:
        Each study's path, and whether it was written (False: it existed and was kept).
    """
    import yaml

    from appsleuth._atomic import atomic_create
    from appsleuth._version import __version__

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for spec in teaching_studies():
        path = directory / f"{spec.name}.yaml"
        header = (
            f"# The teaching material's {spec.name!r} study around the baseline (written by "
            f"appsleuth {__version__}).\n"
            f"#   appsleuth sweep run .../{spec.name}.yaml      -> runs/{spec.name}/\n"
        )
        text = header + yaml.safe_dump(spec.to_dict(), sort_keys=False)
        written.append((path, atomic_create(path, text)))
    return written


@dataclasses.dataclass(frozen=True, kw_only=True)
class DemoResult:
    """What the demo produced (every path exists when it returns)."""

    out: Path
    quality_json: Path
    baseline_run: Path
    sweep_dirs: tuple[Path, ...]
    reports: tuple[Path, ...]
    mystery_csv: Path
    predictions_csv: Path
    seconds: float


def _section(console: Any, title: str) -> None:
    console.rule(f"[bold]{title}[/]")


def _demo_sweep_dir(spec: Any, out: Path, console: Any) -> Path:
    """The demo's sweep directory, re-planned when an earlier demo used other settings."""
    from appsleuth.errors import SpecError
    from appsleuth.sweep import prepare_sweep_dir
    from appsleuth.sweep.store import MANIFEST

    try:
        return prepare_sweep_dir(spec, out)
    except SpecError:
        old = out / spec.name
        if not (old / MANIFEST).is_file():
            raise
        previous = out / f".{spec.name}.previous"  # hidden: not a run predict picks from
        shutil.rmtree(previous, ignore_errors=True)
        old.rename(previous)
        console.print(
            f"{spec.name}: the settings changed since the last demo; its sweep is kept in "
            f"{previous}"
        )
        return prepare_sweep_dir(spec, out)


def _run_scan(sweep_dir: Path, workers: int | None) -> Any:
    """Run the demo's sweep; one that stopped early stops the demo, as ``sweep run`` stops.

    A worker stopped by a signal (``kill``, an out-of-memory killer) ends ``run_local``
    early, ``interrupted``, without raising: the demo went on to report and classify
    with the scan unfinished, and said it had finished (exit code 0).

    Raises:
        SweepInterrupted: The sweep stopped early; the same command resumes it.
    """
    from appsleuth.sweep import SweepInterrupted, run_local

    summary = run_local(sweep_dir, workers=workers)
    if summary.interrupted:
        raise SweepInterrupted(summary)
    return summary


def _train_baseline(spec: Any, **kwargs: Any) -> Any:
    """Train the demo's baseline, reusing a complete one trained with the same settings.

    One that an earlier demo trained with other settings (the demo's own output) is
    replaced.
    """
    from appsleuth.run import RunExistsError, train

    try:
        return train(spec, skip_complete=True, **kwargs)
    except RunExistsError:  # an earlier demo with other settings: this demo's own output
        return train(spec, force=True, **kwargs)


def run_demo(
    out: str | Path = "demo-output",
    *,
    full: bool = False,
    rows: int | None = None,
    epochs: int = 20,
    workers: int | None = None,
    console: Any = None,
) -> DemoResult:
    """Run the demo.

    Args:
        out: Output directory. Defaults to ``demo-output``.
        full: Run the four complete teaching studies (22 trials x 30 epochs) instead of
            the short scan. Defaults to False.
        rows: Rows of embedded data. Defaults to 273,129 (the real file's size).
        epochs: Epochs of the baseline and the short scan. Defaults to 20.
        workers: Worker processes of the scan. Defaults to one per core.
        console: A rich console. Defaults to stdout.

    Returns:
        The :class:`DemoResult`.
    """
    from rich.console import Console

    from appsleuth._atomic import atomic_write_text
    from appsleuth.data.quality import check_data
    from appsleuth.data.synth import generate_sherlock
    from appsleuth.data.tables import embedded_data, write_table
    from appsleuth.display import alarm_line
    from appsleuth.predict import predict_file
    from appsleuth.report import write_report
    from appsleuth.run import recorded_operating_points
    from appsleuth.spec import DataSpec, ModelSpec, RunSpec, TrainSpec
    from appsleuth.sweep import SweepSpec

    console = console or Console()
    start = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    _section(console, "1. Data: synthetic SherLock-like telemetry for 18 apps")
    df = embedded_data(rows)
    info = df.attrs["appsleuth"]
    console.print(
        f"{len(df):,} rows, {df['ApplicationName'].nunique()} apps "
        f"({info['dataset']}: generated, not real SherLock data)"
    )
    report = check_data(df)
    report.render(console)
    quality_json = out / "data_quality.json"
    atomic_write_text(quality_json, report.to_json() + "\n")
    leak = report["leakage"].data.get("rates", {})
    if "random" in leak and "blocked" in leak:
        console.print(
            f"[bold]The leakage lesson:[/] {leak['random']:.0%} of validation rows "
            f"of the teaching random split have an exact copy in training; a "
            f"blocked split: {leak['blocked']:.0%}. Random-split accuracy is "
            f"optimistic."
        )

    _section(
        console, f"2. The baseline: 1 hidden layer of 18, Adam 0.0003, batch 32, {epochs} epochs"
    )
    data_spec = DataSpec(rows=rows)
    baseline_args: dict[str, Any] = {
        "data": df,
        "out": out / "baseline",
        "verbose": False,
        "log": lambda m: console.print(m, markup=False, highlight=False),
    }
    baseline = _train_baseline(
        RunSpec(data=data_spec, train=TrainSpec(epochs=epochs)), **baseline_args
    )
    _print_run(console, baseline.metrics, baseline.metadata)

    _section(
        console,
        "3. Tuning: "
        + (
            "the four teaching studies (22 trials x 30 epochs)"
            if full
            else f"hidden neurons {list(SCAN_NEURONS)}, {epochs} epochs"
        ),
    )
    if full:
        specs = teaching_studies(data_spec)
    else:
        specs = [
            SweepSpec(
                name="scan-hidden-neurons",
                data=data_spec,
                base=RunSpec(model=ModelSpec(), train=TrainSpec(epochs=epochs)),
                grid={"hidden_neurons": list(SCAN_NEURONS)},
            )
        ]
    sweep_dirs = []
    for spec in specs:
        sweep_dir = _demo_sweep_dir(spec, out, console)
        summary = _run_scan(sweep_dir, workers)
        console.print(
            f"{spec.name}: {summary.count('complete')} trained, "
            f"{summary.count('skipped')} reused, {summary.failed} failed "
            f"({summary.wall_s:.0f} s"
            + (f", {summary.workers} worker(s))" if summary.workers else ")")
        )
        sweep_dirs.append(sweep_dir)
        _print_scan(console, sweep_dir)

    _section(console, "4. Report")
    reports = tuple(write_report(d) for d in sweep_dirs)
    for path in reports:
        console.print(f"report: {path}")

    _section(console, "5. Classify new rows with the baseline model")
    # Rows the model never saw: the generator under another seed (other sessions and
    # times). A sample of the demo's own table would be mostly training rows, and its
    # accuracy would measure nothing.
    fresh = generate_sherlock(_MYSTERY_POOL, seed=_MYSTERY_SEED, with_ids=True)
    mystery = fresh.sample(n=_MYSTERY_ROWS, random_state=7).sort_index()
    mystery_csv = write_table(mystery, out / "mystery.csv", force=True)
    predictions_csv = out / "mystery.predictions.csv"
    # The alarm at the threshold the baseline chose for 1 % false alarms, where it chose
    # one (too few validation rows, or none of Moriarty's, choose none).
    point = next(
        (
            p
            for p in recorded_operating_points(baseline.run_dir) or ()
            if p.get("false_alarm_target") == _ALARM_RATE
        ),
        None,
    )
    alarm_rate = _ALARM_RATE if point and point.get("threshold") is not None else None
    summary = predict_file(
        baseline.run_dir, mystery_csv, predictions_csv, force=True, alarm_false_rate=alarm_rate
    )
    console.print(
        f"predicted {summary.predicted} of {summary.rows} new rows "
        f"({summary.skipped} skipped for missing values) -> {predictions_csv}"
    )
    if summary.metrics:
        console.print(
            f"accuracy on the new rows: {summary.metrics['accuracy']:.4f} (validation: "
            f"{baseline.metadata['last_results']['val_accuracy']:.4f})"
        )
        malware = summary.metrics.get("malware")
        if malware and malware["support"]:
            console.print(
                f"Moriarty rows caught by the predicted app: "
                f"{malware['support'] - malware['missed']} of {malware['support']}"
            )
    if summary.alarm is not None:
        # The threshold chosen on the validation rows, measured on rows that chose nothing.
        console.print(alarm_line(summary.alarm), markup=False, highlight=False)
    elif point is not None:
        console.print(
            f"no Moriarty alarm: the baseline chose no threshold for {_ALARM_RATE * 100:g} % false "
            f"alarms ({point.get('reason')})",
            markup=False,
            highlight=False,
        )
    import pandas as pd

    preview = pd.read_csv(predictions_csv).head(5)
    shown = [
        c
        for c in ("row_id", "predicted_app", "probability", "top2_app", "true_app", "correct")
        if c in preview.columns
    ]
    console.print(preview[shown].to_string(index=False), markup=False, highlight=False)

    seconds = time.time() - start
    _section(console, "Summary")
    console.print(
        f"baseline val_accuracy {baseline.metadata['last_results']['val_accuracy']:.4f} "
        f"({baseline.metadata['engine']} engine, "
        f"{baseline.metadata['seconds_per_epoch'] or 0:.2f} s/epoch)"
    )
    console.print(f"everything is in {out}; open the report: {reports[0]}")
    console.print(f"demo finished in {seconds:.0f} s")
    return DemoResult(
        out=out,
        quality_json=quality_json,
        baseline_run=baseline.run_dir,
        sweep_dirs=tuple(sweep_dirs),
        reports=reports,
        mystery_csv=mystery_csv,
        predictions_csv=predictions_csv,
        seconds=seconds,
    )


def _print_run(console: Any, metrics: dict[str, Any], meta: dict[str, Any]) -> None:
    from appsleuth.display import print_metrics

    print_metrics(metrics, title=f"validation metrics of {meta['model_code']}", console=console)


def _print_scan(console: Any, sweep_dir: Path) -> None:
    from rich.table import Table

    from appsleuth.sweep import collect_results, trial_states

    collect_results(sweep_dir)
    table = Table(title=sweep_dir.name, title_justify="left")
    for col in ("run", "state", "val_accuracy", "fit"):
        table.add_column(col)
    for st in trial_states(sweep_dir):
        acc = st.last("val_accuracy")
        table.add_row(
            st.name,
            st.status,
            f"{acc:.4f}" if acc is not None else "",
            (st.metadata or {}).get("fit_diagnosis") or st.error or "",
        )
    console.print(table)
