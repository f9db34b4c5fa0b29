"""The HTML report: contents, escaping, partial sweeps, options and the command."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from appsleuth.analysis import load_results
from appsleuth.cli import report_command
from appsleuth.errors import DataError, SpecError
from appsleuth.report import render_report, write_report
from appsleuth.sweep import SweepSpec, prepare_sweep_dir, read_plan, run_trial
from tests.test_analysis import REFERENCE, fake_sweep, write_fake_run

EVIL_APP = "<img src=x onerror=alert(1)>"
EVIL_ERROR = 'RuntimeError: <script>alert("pwned")</script> & \'quoted\' "double"'
EVIL_DATASET = "\"quoted\" & 'single' <b>bold</b> data.csv"
_ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "main", "header", "footer", "section",
    "h1", "h2", "h3", "p", "dl", "dt", "dd", "div", "span", "strong", "em", "code", "table",
    "caption", "thead", "tbody", "tr", "th", "td", "figure", "figcaption", "img", "wbr",
}  # fmt: skip


def _quiet(message: str) -> None:
    del message


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def assert_safe(page: str) -> list[tuple[str, dict[str, str | None]]]:
    """Only the report's own tags: no script, no event handler, images from data URIs."""
    parser = _Tags()
    parser.feed(page)
    for tag, attrs in parser.tags:
        assert tag in _ALLOWED_TAGS, f"unexpected <{tag}> in the report"
        assert not any(name.startswith("on") for name in attrs), f"<{tag} {attrs}>"
        if tag == "img":
            assert (attrs.get("src") or "").startswith("data:image/png;base64,")
    assert "<script" not in page.lower()
    assert not re.search(r"(src|href)=\"https?:", page), "the report must not fetch anything"
    return parser.tags


def leaderboard_rows(page: str) -> list[str]:
    table = page.split('id="leaderboard-table"', 1)[1].split("</table>", 1)[0]
    return re.findall(r'<tr class="(trial[^"]*)"', table)


@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny trained trials (18 apps, 2000 rows, 2 epochs), trained in this process."""
    spec = SweepSpec.from_dict(
        {
            "name": "scan",
            "data": {"rows": 2000},
            "base": {"train": {"epochs": 2, "batch_size": 64, "learning_rate": 0.003}},
            "grid": {"hidden_neurons": [3, 6]},
        }
    )
    sweep_dir = prepare_sweep_dir(spec, tmp_path_factory.mktemp("report"))
    for index in range(2):
        assert run_trial(sweep_dir, index).status == "complete"
    return sweep_dir


def test_sweep_report_contents(real_sweep: Path) -> None:
    path = write_report(real_sweep, log=_quiet)
    assert path == real_sweep / "report.html"
    page = path.read_text(encoding="utf-8")
    tags = assert_safe(page)
    assert "Sweep scan" in page
    assert "synthetic" in page and "random (validation 0.2, seed 34)" in page
    assert re.search(r"\d+\.\d % of validation rows have an exact copy in training", page)
    # The advice's option on one line: browsers broke '(--split' after its first hyphen.
    assert '(<span class="nowrap">--split blocked</span>)' in page
    assert "2 (2 complete)" in page
    assert "local" in page and "trials ran outside SLURM" in page
    assert "sum of the trials&#x27; wall times" in page
    assert "cores per trial" in page  # hardware
    rows = leaderboard_rows(page)
    assert rows == ["trial best", "trial"]
    best = load_results(real_sweep).sort_values("val_accuracy", ascending=False).iloc[0]
    assert f"Best trial: {best['name']}" in page
    assert re.search(
        r'<tr class="trial best" data-status="complete" data-name="' + best["name"], page
    )
    for section in ("leaderboard", "params", "curves", "best"):
        assert f'<section id="{section}">' in page
    # Trial names fold after each "_": a sweep of several settings names its trials
    # model_1H8N_lr0.003_bs64_e2_dropout0.2_activationtanh_enginefused, which unbroken
    # pushed the metric columns out of sight.
    folded = "_<wbr>".join(best["name"].split("_"))
    assert f'<th scope="row" class="name">{folded}</th>' in page
    assert re.search(r"table\.numbers \.name \{ white-space: normal", page)
    # Moriarty's row stands out and its rates are called out.
    assert '<tr class="malware"><th scope="row">Moriarty' in page
    assert "detection rate" in page and "false-alarm rate" in page
    # ... and so is its detection rate at chosen false-alarm rates (the best trial's).
    best_section = page.split('<section id="best">', 1)[1]
    assert "<caption>Moriarty at chosen false-alarm rates" in best_section
    assert best_section.count('<th scope="row">') >= 3
    images = [a for t, a in tags if t == "img"]
    assert len(images) == 4  # metric vs hidden_neurons, curves, small multiples, confusion
    assert 'id="baselines"' not in page and 'id="comparison"' not in page


def test_sweep_report_with_comparison(real_sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "scan.html"
    path = write_report(
        real_sweep, out=out, compare=REFERENCE / "post_processing_hpc_neurons.csv", log=_quiet
    )
    assert path == out
    page = out.read_text(encoding="utf-8")
    assert_safe(page)
    comparison = page.split('id="comparison-table"', 1)[1].split("</table>", 1)[0]
    # Published values 1..1024 and this sweep's 3 and 6, one row each.
    assert comparison.count("<tr>") == 13 + 1
    assert "0.9906" in comparison  # published val_accuracy of 18 neurons
    assert "trained 2 epochs" in page
    assert len([t for t, _ in assert_safe(page) if t == "img"]) == 5


def test_sweep_report_with_baselines(tmp_path: Path) -> None:
    sweep_dir = fake_sweep(
        tmp_path,
        {"data": {"rows": 600, "apps": ["Chrome", "Gmail", "Moriarty"]},
         "base": {"train": {"epochs": 3, "class_weight": "balanced"}},
         "grid": {"batch_size": [16, 32]}},
        lambda i, p: {"final_acc": 0.8 + 0.1 * i},
    )  # fmt: skip
    page = render_report(sweep_dir, baselines=True, log=_quiet)
    assert_safe(page)
    baselines = page.split('id="baselines-table"', 1)[1].split("</table>", 1)[0]
    assert "logistic regression" in baselines and "decision tree" in baselines
    assert '<tr class="best"><th scope="row">network (model_1H18N_lr0.0003_bs32_e3)' in baselines
    # The network's time is its whole run's, not a fit time comparable to the baselines'.
    assert '<th scope="col">time</th>' in baselines and "fit time" not in baselines
    assert "Time: the network&#x27;s whole run" in page
    # A run trained on its own also spent its wall time loading and preparing the data.
    assert "for a run trained on its own rather than in a sweep, loading and preparing" in page
    # The network was trained with class weights: so were the baselines set beside it.
    assert "The baselines were fitted with the network&#x27;s class weights." in page
    assert re.search(r"decision tree</th><td>\d+\.\d\d %", baselines)
    # Which epoch's model, in one pair of brackets ("(the saved model, the last epoch (3))"),
    # and rows counted apart: these fake runs were scored on other rows than the baselines.
    assert re.search(
        r"<caption><span>The network, scored with the saved model \(epoch \d+, the last\), on its "
        r"90 validation rows and the baselines on \d+: not the same rows; time as said above.",
        baselines,
    )
    # The baselines' detection at chosen false-alarm rates, beside the network's (these
    # fake runs predate operating points: theirs are not recorded, not zeros).
    points = page.split('id="baselines-operating-points"', 1)[1].split("</table>", 1)[0]
    assert re.search(r"decision tree</th><td>\d+\.\d %<span class=\"muted\"> \(\d+ of", points)
    assert '<td><span class="muted">not recorded</span></td>' in points


def test_compare_must_vary_the_same_hyperparameter(real_sweep: Path) -> None:
    with pytest.raises(DataError, match="vary learning_rate, but sweep scan varies hidden_neurons"):
        render_report(real_sweep, compare=REFERENCE / "post_processing_hpc_lr.csv", log=_quiet)
    with pytest.raises(DataError, match=r"published results file .* does not exist"):
        render_report(real_sweep, compare=REFERENCE / "missing.csv", log=_quiet)


def test_report_on_an_empty_sweep(tmp_path: Path) -> None:
    spec = SweepSpec.from_dict(
        {"name": "empty", "data": {"rows": 600}, "grid": {"batch_size": [16, 32, 64]}}
    )
    sweep_dir = prepare_sweep_dir(spec, tmp_path)
    page = write_report(sweep_dir, baselines=True, log=_quiet).read_text(encoding="utf-8")
    assert_safe(page)
    assert leaderboard_rows(page) == ["trial pending"] * 3
    assert "3 of 3 trial(s) have no result yet (3 pending)" in page
    assert "No complete trial yet: nothing to plot." in page
    assert "No complete trial yet: no learning curves." in page
    assert "not computed: no trial is complete yet" in page
    assert "Total compute time</dt><dd>– " in page


@pytest.mark.parametrize(
    ("executor", "text"),
    [
        ({"threads_per_trial": 1}, "1 thread(s) per trial and leaves the number of workers"),
        ({"workers": 2, "threads_per_trial": 1}, "the spec asks for 2 worker(s) x 1 thread(s)"),
    ],
)
def test_report_says_what_the_spec_asks_of_local_workers(
    tmp_path: Path, executor: dict, text: str
) -> None:
    # The teaching studies set threads_per_trial only, and the report said "auto worker(s)".
    spec = SweepSpec.from_dict(
        {"name": "s", "data": {"rows": 600}, "grid": {"batch_size": [16]}, "executor": executor}
    )
    page = render_report(prepare_sweep_dir(spec, tmp_path), log=_quiet)
    assert text in page
    assert "auto worker" not in page


def test_report_lists_failed_and_unfinished_trials_escaped(tmp_path: Path) -> None:
    def outcome(i: int, params: dict[str, Any]) -> dict[str, Any] | None:
        return [
            {"final_acc": 0.9, "dataset": EVIL_DATASET},
            {"status": "failed", "error": EVIL_ERROR, "wall_time": 3.0},
            {"status": "incomplete"},
            None,
        ][i]

    sweep_dir = fake_sweep(tmp_path, {"grid": {"hidden_neurons": [2, 4, 8, 16]}}, outcome)
    page = write_report(sweep_dir, log=_quiet).read_text(encoding="utf-8")
    assert_safe(page)
    assert leaderboard_rows(page) == ["trial best", "trial failed", "trial incomplete",
                                      "trial pending"]  # fmt: skip
    assert html.escape(EVIL_ERROR) in page
    assert EVIL_ERROR not in page and "<script>" not in page
    assert html.escape(EVIL_DATASET) in page and "<b>bold</b>" not in page
    assert "3 of 4 trial(s) have no result yet (1 failed, 1 incomplete, 1 pending)" in page
    assert "started but not finished" in page and "not started yet" in page
    assert "4 (1 complete, 1 failed, 1 incomplete, 1 pending)" in page
    assert "5.0 s (sum of the trials" in page  # 2 s complete + 3 s failed


def test_run_report_escapes_app_names(tmp_path: Path) -> None:
    from appsleuth.data.synth import generate_sherlock
    from appsleuth.run import train
    from appsleuth.spec import RunSpec

    df = generate_sherlock(2000, apps=["Facebook", "WhatsApp"])
    df["ApplicationName"] = df["ApplicationName"].replace("Facebook", EVIL_APP)
    spec = RunSpec.from_dict({"model": {"hidden": [4]}, "train": {"epochs": 2, "batch_size": 64}})
    result = train(
        spec, data=df, out=tmp_path, verbose=False, dataset_name=EVIL_DATASET, log=_quiet
    )
    assert EVIL_APP in result.metrics["per_class"]
    page = write_report(result.run_dir, log=_quiet).read_text(encoding="utf-8")
    tags = assert_safe(page)
    assert html.escape(EVIL_APP) in page and EVIL_APP not in page
    assert html.escape(EVIL_DATASET) in page
    assert f"Run {result.run_dir.name}" in page
    assert "Fit diagnosis" in page and 'id="per-class"' in page
    assert "Moriarty (the malware) is not a class of this task" in page
    # The table was passed as a DataFrame: the spec's data is another table.
    assert "the run was trained on a data frame given in Python (2,000 rows), not on" in page
    # Curves, confusion matrix, ROC curve (Facebook against WhatsApp).
    assert len([t for t, _ in tags if t == "img"]) == 3


def test_run_report_shows_the_software_the_run_recorded(tmp_path: Path) -> None:
    software = {
        "appsleuth": "0.1.0",
        "python": "3.11.9",
        "platform": "Linux-6.1-x86_64-with-glibc2.36",
        "jax": "0.4.30",
        "jaxlib": "0.4.30",
        "keras": "3.15.1",
        "numpy": "2.1.0",
        "pandas": "2.2.3",
        "scikit-learn": "1.5.2",
        "pyarrow": None,  # not installed: left out
    }
    write_fake_run(tmp_path / "new", extra={"backend": "jax", "software": software})
    page = render_report(tmp_path / "new", log=_quiet)
    assert (
        "<dt>Software</dt><dd>appsleuth 0.1.0, Python 3.11.9, Keras 3.15.1, JAX 0.4.30, "
        "jaxlib 0.4.30, NumPy 2.1.0, pandas 2.2.3, scikit-learn 1.5.2 on "
        "Linux-6.1-x86_64-with-glibc2.36</dd>"
    ) in page


def test_a_run_recorded_before_its_software_shows_the_versions_it_has() -> None:
    from appsleuth._software import software_text

    old = {"appsleuth_version": "0.1.0", "keras_version": "3.15.0", "backend": "jax"}
    old |= {"backend_version": "0.4.31", "hardware": {"python": "3.11.4"}}
    assert software_text(old) == "appsleuth 0.1.0, Python 3.11.4, Keras 3.15.0, JAX 0.4.31"
    assert software_text({"status": "failed", "software": "damaged"}) is None


def test_sweep_report_counts_the_trials_that_ran_on_other_software() -> None:
    from appsleuth.report import _software_text

    metas = [{"software": {"appsleuth": "0.1.0", "numpy": v}} for v in ("2.1", "2.1", "2.2")]
    assert _software_text(metas) == (
        "appsleuth 0.1.0, NumPy 2.1 (1 trial(s) ran on other versions)"
    )
    assert _software_text([{}, {"status": "failed"}]) == "–"


def test_run_report_of_a_failed_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "model_1H18N_lr0.0003_bs32_e3"
    write_fake_run(run_dir, status="failed", error=EVIL_ERROR)
    page = render_report(run_dir, log=_quiet)
    assert_safe(page)
    assert "This run failed: " in page and html.escape(EVIL_ERROR) in page
    assert "No training history." in page
    with pytest.raises(SpecError, match="--compare needs a sweep directory"):
        render_report(run_dir, compare=REFERENCE / "post_processing_hpc_lr.csv", log=_quiet)


@pytest.mark.parametrize("status", ["failed", "incomplete"])
def test_run_report_takes_unrecorded_settings_from_the_spec(tmp_path: Path, status: str) -> None:
    import yaml

    from appsleuth.spec import RunSpec

    spec = RunSpec.from_dict(
        {
            "data": {"path": str(tmp_path / "gone.csv")},  # no leakage to measure: fast
            "model": {"hidden": [12, 6]},
            "train": {"optimizer": "sgd", "learning_rate": 0.01, "batch_size": 16,
                      "epochs": 7, "seed": 3},
        }
    )  # fmt: skip
    run_dir = tmp_path / "model_2H12N6N_lr0.01_bs16_e7"
    if status == "failed":  # its record leaves the optimizer out
        write_fake_run(run_dir, status="failed", error="boom", extra={"spec": spec.to_dict()})
    else:  # interrupted: the spec and part of the history, no record yet
        write_fake_run(run_dir, status="incomplete")
        (run_dir / "spec.yaml").write_text(yaml.safe_dump(spec.to_dict()), encoding="utf-8")
    page = render_report(run_dir, log=_quiet)
    assert (
        "hidden layers [12, 6], learning rate 0.01, batch size 16, 7 epochs planned, seed 3, "
        "sgd optimizer"
    ) in page


def test_report_notes_unavailable_data(tmp_path: Path) -> None:
    data = tmp_path / "gone.csv"
    sweep_dir = fake_sweep(
        tmp_path,
        {"data": {"path": str(data)}, "grid": {"batch_size": [16, 32]}},
        lambda i, p: {
            "final_acc": 0.8 + 0.1 * i,
            "dataset": str(data),
            "extra": {"synthetic": False},
        },
    )
    said: list[str] = []
    page = render_report(sweep_dir, baselines=True, log=said.append)
    assert "not measured: the data is unavailable" in page
    assert "Baselines not computed: the data is unavailable" in page
    assert any(
        line.startswith("appsleuth: warning: baselines not computed: the data is unavailable")
        for line in said
    )
    assert leaderboard_rows(page) == ["trial best", "trial"]
    # A file may hold rows 'appsleuth data synth' wrote: the report never vouches for it.
    assert "gone.csv" in page and "real data" not in page


def test_measuring_leakage_repeats_no_training_warning(tmp_path: Path) -> None:
    import warnings

    from appsleuth.data.synth import generate_sherlock
    from appsleuth.errors import AppSleuthWarning

    data = tmp_path / "d.csv"
    generate_sherlock(2000, seed=3).to_csv(data, index=False)  # a state only in validation
    sweep_dir = fake_sweep(
        tmp_path,
        {"data": {"path": str(data)}, "grid": {"batch_size": [16, 32]}},
        lambda i, p: {"final_acc": 0.8 + 0.1 * i},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", AppSleuthWarning)
        page = render_report(sweep_dir, log=lambda line: None)
    assert "of validation rows have an exact copy in training" in page


def test_report_command(real_sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = CliRunner().invoke(report_command, [str(real_sweep), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(out)
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert "--baselines" in CliRunner().invoke(report_command, ["--help"]).output


@pytest.mark.parametrize(
    ("make", "args", "error", "match"),
    [
        (lambda d: d, [], DataError, "is neither a sweep directory .* nor a run directory"),
        (lambda d: d / "nope", [], DataError, "does not exist; expected a sweep or a run"),
        (lambda d: (d / "f.txt").write_text("x") and d / "f.txt", [], DataError, "is a file"),
    ],
)
def test_report_command_errors(
    tmp_path: Path, make: Any, args: list[str], error: type, match: str
) -> None:
    target = make(tmp_path)
    with pytest.raises(error, match=match):
        CliRunner().invoke(report_command, [str(target), *args], catch_exceptions=False)


def test_report_out_must_not_be_a_directory(tmp_path: Path) -> None:
    run_dir = tmp_path / "model_1H18N_lr0.0003_bs32_e3"
    write_fake_run(run_dir, status="failed", error="x")
    with pytest.raises(DataError, match="is a directory; pass a file name"):
        write_report(run_dir, out=tmp_path, log=_quiet)


def test_an_out_with_a_nul_is_refused_before_the_report_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Path.is_dir and Path.exists answer False for it: the report was built (minutes with
    # baselines), then writing it raised a bare ValueError (embedded null byte).
    import appsleuth.report as report_module

    run_dir = tmp_path / "model_1H18N_lr0.0003_bs32_e3"
    write_fake_run(run_dir, status="failed", error="x")
    built: list[str] = []
    monkeypatch.setattr(report_module, "render_report", lambda *a, **k: built.append("x"))
    with pytest.raises(DataError, match=r"out must be a path without a NUL character"):
        write_report(run_dir, out=str(tmp_path / "r\0.html"), log=_quiet)
    assert built == []


def test_an_unwritable_out_is_refused_before_the_report_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import appsleuth.report as report_module

    run_dir = tmp_path / "model_1H18N_lr0.0003_bs32_e3"
    write_fake_run(run_dir, status="failed", error="x")
    built: list[str] = []
    monkeypatch.setattr(report_module, "render_report", lambda *a, **k: built.append("x"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"cannot be written: .*notes\.txt is not a directory"):
        write_report(run_dir, out=tmp_path / "notes.txt" / "sub" / "r.html", log=_quiet)
    with pytest.raises(DataError, match=r"cannot be written: /proc does not take new files"):
        write_report(run_dir, out="/proc/r.html", log=_quiet)
    assert built == []  # refused before anything was computed


def test_report_never_overwrites_a_file_it_did_not_write(tmp_path: Path) -> None:
    run_dir = tmp_path / "model_1H18N_lr0.0003_bs32_e3"
    write_fake_run(run_dir, status="failed", error="x")
    data = tmp_path / "keep.html"
    data.write_text("<!DOCTYPE html><p>my notes</p>")
    with pytest.raises(DataError, match=r"exists and is not a report appsleuth wrote"):
        write_report(run_dir, out=data, log=_quiet)
    assert data.read_text() == "<!DOCTYPE html><p>my notes</p>"
    with pytest.raises(DataError, match=r"--out must name an \.html file; received 'keep\.csv'"):
        write_report(run_dir, out=tmp_path / "keep.csv", log=_quiet)
    out = write_report(run_dir, out=tmp_path / "r.html", log=_quiet)
    assert write_report(run_dir, out=out, log=_quiet) == out  # its own report is replaced
    old_style = out.read_text(encoding="utf-8").replace('<meta name="generator"', "<meta x")
    out.write_text(old_style, encoding="utf-8")
    assert write_report(run_dir, out=out, log=_quiet) == out  # so is an older one


def test_report_of_repeated_seeds_shows_seeds_and_spread(tmp_path: Path) -> None:
    accs = {0.0001: (0.80, 0.84), 0.001: (0.90, 0.94), 0.1: (0.60, 0.50)}
    sweep_dir = fake_sweep(
        tmp_path,
        {"grid": {"learning_rate": [0.0001, 0.001, 0.1]}, "repeats": 2},
        lambda i, p: {"final_acc": accs[p["learning_rate"]][i % 2]},
    )
    page = render_report(sweep_dir, log=_quiet)
    assert '<th scope="col">seed</th>' in page  # seeds differ, so the leaderboard shows them
    assert "mean, std error bars and min–max band over seeds" in page
    assert len(leaderboard_rows(page)) == 6


def test_report_warns_when_trials_predict_different_classes(tmp_path: Path) -> None:
    sweep_dir = fake_sweep(
        tmp_path,
        {"grid": {"batch_size": [16, 32]}},
        lambda i, p: {
            "extra": {"classes": ["other", "WhatsApp"] if i else ["Facebook", "WhatsApp"]}
        },
    )
    said: list[str] = []
    page = render_report(sweep_dir, log=said.append)
    assert "The trials predict different sets of classes" in page
    assert any("predict different classes" in line for line in said)
    same = fake_sweep(tmp_path / "same", {"grid": {"batch_size": [16, 32]}}, lambda i, p: {})
    assert "different sets of classes" not in render_report(same, log=_quiet)


def test_report_names_the_array_job_and_tasks_trials_ran_in(tmp_path: Path) -> None:
    def outcome(i: int, params: dict) -> dict:
        env = {"SLURM_JOB_ID": str(148 + i), "SLURM_ARRAY_JOB_ID": "147"}
        return {
            "extra": {"SLURM_JOB_ID": str(148 + i), "slurm": {**env, "SLURM_ARRAY_TASK_ID": str(i)}}
        }

    sweep_dir = fake_sweep(tmp_path, {"grid": {"batch_size": [16, 32, 64, 128]}}, outcome)
    page = render_report(sweep_dir, log=_quiet)
    # Task ids in ranges: a sweep of thousands of trials listed every one.
    assert "slurm: job(s) 147 (tasks 0-3)" in page
    assert "148" not in page.split("slurm: job(s)")[1][:40]


@pytest.mark.parametrize("damage", ['{"a":', "[1, 2]", '{"accuracy": 7}'])
def test_a_damaged_metrics_file_is_reported_not_hidden(tmp_path: Path, damage: str) -> None:
    sweep_dir = fake_sweep(
        tmp_path, {"grid": {"batch_size": [16, 32]}}, lambda i, p: {"final_acc": 0.8 + 0.1 * i}
    )
    best = load_results(sweep_dir).sort_values("val_accuracy", ascending=False).iloc[0]["name"]
    (sweep_dir / best / "metrics.json").write_text(damage)
    for target in (sweep_dir, sweep_dir / best):  # The sweep's report and the run's.
        said: list[str] = []
        page = render_report(target, log=said.append)
        assert_safe(page)
        assert f"metrics.json of {best} is damaged or unreadable" in page
        warning = (
            f"appsleuth: warning: {sweep_dir / best / 'metrics.json'} is damaged or "
            "unreadable; its evaluation is not shown"
        )
        assert said.count(warning) == 1
        # Nothing is claimed from the missing numbers.
        assert "is not a class of this task" not in page and "on 0 rows" not in page


def test_report_and_predict_name_the_same_best_trial_on_a_tie(tmp_path: Path) -> None:
    from appsleuth.predict import best_run_dir
    from appsleuth.sweep.store import read_plan

    # Equal accuracy and loss: plan order decides, though "bs16" sorts before "bs32".
    sweep_dir = fake_sweep(
        tmp_path, {"grid": {"batch_size": [32, 16]}}, lambda i, p: {"final_acc": 0.9}
    )
    first = read_plan(sweep_dir)[0].name
    assert "bs32" in first
    assert best_run_dir(sweep_dir) == sweep_dir / first
    page = render_report(sweep_dir, log=_quiet)
    assert f"Best trial: {first}" in page
    # The page says how it broke the tie, or a reader cannot tell why this one is best.
    assert "ties: lower validation loss, then plan order" in page


@pytest.mark.parametrize(("asked", "shown"), [(0.05, True), (0.1, False), (0.1005, False)])
def test_split_text_shows_the_share_whole_blocks_hold(asked: float, shown: bool) -> None:
    from appsleuth.report import _split_text

    split = {"kind": "blocked", "val_fraction": asked, "seed": 34, "n_train": 900, "n_val": 100}
    text = _split_text(split)
    assert text.startswith(f"blocked (validation {asked:g}")
    assert ("(a validation share of 0.100)" in text) is shown


@pytest.mark.parametrize(
    ("split", "shown"),
    [
        ({"kind": "random", "stratify": True}, "random (stratified by app, validation 0.2"),
        ({"kind": "random", "stratify": False}, "random (validation 0.2"),
        ({"kind": "blocked", "n_blocks": 10}, "blocked (10 time blocks per app, validation 0.2"),
        ({"kind": "group", "group_column": "UserId"}, "group (whole groups of UserId, validation"),
    ],
)
def test_split_text_says_what_kept_rows_together(split: dict, shown: str) -> None:
    from appsleuth.report import _split_text

    # A group split read "group (validation 0.2, seed 34)": kept apart by what?
    assert _split_text({**split, "val_fraction": 0.2, "seed": 34}).startswith(shown)


def _with_metrics(run_dir: Path, **changes: Any) -> None:
    """Replace parts of a fake run's metrics.json."""
    import json

    path = run_dir / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_run_report_shows_the_held_out_test_rows(tmp_path: Path) -> None:
    import numpy as np

    from appsleuth.evaluate import classification_metrics

    run_dir = tmp_path / "model_1H18N_lr0.0003_bs32_e3"
    split = {"kind": "random", "val_fraction": 0.2, "test_fraction": 0.1, "seed": 34,
             "n_train": 63, "n_val": 18, "n_test": 9}  # fmt: skip
    write_fake_run(run_dir, extra={"split": split})
    test = classification_metrics(
        np.array([0, 0, 0, 1, 1, 1, 2, 2, 2]), np.array([0, 0, 1, 1, 1, 1, 2, 2, 2]),
        ["Chrome", "Gmail", "Moriarty"],
    )  # fmt: skip
    _with_metrics(run_dir, test=test)
    page = render_report(run_dir, log=_quiet)
    assert_safe(page)
    assert "18 validation rows / 9 test rows" in page
    section = page.split('<div id="test">', 1)[1]
    assert "Test accuracy 88.89 % on 9 rows, macro F1 0.886" in section
    assert "detection rate" in section and 'id="per-class-test"' in section
    assert page.count('id="per-class"') == 1  # the validation table keeps its own id


def test_per_app_table_shows_no_rates_for_apps_neither_present_nor_predicted(
    tmp_path: Path,
) -> None:
    import numpy as np

    from appsleuth.evaluate import classification_metrics

    run_dir = tmp_path / "model_1H18N_lr0.0003_bs32_e3"
    write_fake_run(run_dir)
    # Gmail is neither among the rows nor predicted; Moriarty is never flagged.
    scored = classification_metrics(
        np.array([0, 0, 2, 2]), np.array([0, 0, 0, 0]), ["Chrome", "Gmail", "Moriarty"]
    )
    _with_metrics(run_dir, **scored)
    page = render_report(run_dir, log=_quiet)
    table = page.split('id="per-class"', 1)[1].split("</table>", 1)[0]
    assert '<tr><th scope="row">Gmail</th><td>–</td><td>–</td><td>–</td><td>0</td></tr>' in table
    assert '<th scope="row">Chrome</th><td>0.500</td><td>1.000</td><td>0.667</td>' in table
    assert (
        "–: 1 app(s) neither among these rows nor predicted; the macro average is over the other 2."
        in page
    )
    malware = page.split('class="callout malware"', 1)[1].split("</div></div></div>", 1)[0]
    assert "no sample was flagged as malware" in malware
    assert "alarms that are malware" not in malware
    # Moriarty is never predicted: its precision is 0/0, not a 0 that reads as always wrong.
    assert '<th scope="row">Moriarty' in table
    assert "</span></th><td>–</td><td>0.000</td><td>0.000</td>" in table
    assert (
        "–: precision of 1 app(s) never predicted: 0/0, undefined; the macro average counts "
        "each as 0 (scikit-learn&#x27;s zero_division=0)." in page
    )


def test_run_report_says_which_epoch_early_stopping_kept(tmp_path: Path) -> None:
    run_dir = tmp_path / "model_1H18N_lr0.0003_bs32_e10"
    write_fake_run(run_dir, extra={"epochs": 10, "epochs_run": 3, "results_epoch": 2})
    page = render_report(run_dir, log=_quiet)
    assert "3 of 10 epochs run, results from epoch 2 (early stopping restored it)" in page
    evaluation = page.split('<section id="evaluation">', 1)[1]
    assert evaluation.index("Early stopping restored the weights of epoch 2 after 3 epochs") < (
        evaluation.index("Fit diagnosis")
    )
    write_fake_run(run_dir, extra={"epochs": 10, "epochs_run": 3, "results_epoch": 3})
    page = render_report(run_dir, log=_quiet)
    assert "3 of 10 epochs (stopped early)" in page and "restored" not in page


def test_best_trial_without_a_recorded_epoch_count(tmp_path: Path) -> None:
    # Older or hand-made metadata without epochs_run made the report fail on int(NaN).
    sweep_dir = fake_sweep(
        tmp_path,
        {"grid": {"batch_size": [16, 32]}},
        lambda i, p: {"final_acc": 0.8 + 0.1 * i, "extra": {"epochs_run": None, "epochs": 3}},
    )
    page = render_report(sweep_dir, log=_quiet)
    assert "batch_size = 32; 3 epochs, 2.0 s." in page


def test_report_of_repeated_seeds_compares_settings_by_their_mean(tmp_path: Path) -> None:
    # The best single trial (0.99) is a lucky seed of a setting whose mean (0.895) is
    # below the other setting's (0.945).
    accs = {16: (0.80, 0.99), 32: (0.95, 0.94)}
    sweep_dir = fake_sweep(
        tmp_path,
        {"grid": {"batch_size": [16, 32]}, "repeats": 2},
        lambda i, p: {"final_acc": accs[p["batch_size"]][i % 2]},
    )
    page = render_report(sweep_dir, log=_quiet)
    assert_safe(page)
    table = page.split('id="seeds-table"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(
        r'<tr><th scope="row">(\d+)</th><td>2 of 2</td><td>([\d.]+)</td><td>([\d.]+)</td>', table
    )
    assert rows == [("32", "0.9450", "0.0071"), ("16", "0.8950", "0.1344")]
    best = page.split('<section id="best">', 1)[1]
    assert "batch_size = 16" in best  # the best single trial is still named
    assert "its setting averages 0.8950 (std 0.1344) over 2 seed(s)" in best
    assert "The best setting by mean is batch_size = 32 (0.9450, std 0.0071)" in best
    assert "Each setting ran with one seed" not in page
    single = fake_sweep(tmp_path / "one", {"grid": {"batch_size": [16, 32]}}, lambda i, p: {})
    page = render_report(single, log=_quiet)
    assert 'id="seeds"' not in page
    # Without repeats the spread is unknown, and the page says so beside the best trial.
    best = page.split('<section id="best">', 1)[1]
    assert (
        "Each setting ran with one seed, so how much of this ranking is seed-to-seed luck" in best
    )


def test_the_best_trials_learning_curve_panel_is_framed_even_when_a_history_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import appsleuth.report as report

    sweep_dir = fake_sweep(
        tmp_path,
        {"grid": {"batch_size": [16, 32, 64]}},
        lambda i, p: {"final_acc": [0.7, 0.8, 0.9][i]},
    )
    (sweep_dir / read_plan(sweep_dir)[0].name / "model_history.csv").unlink()
    framed: list[Any] = []
    real = report.plot_small_multiples

    def spy(histories: Any, **kwargs: Any) -> Any:
        framed.append((list(histories), kwargs.get("highlight")))
        return real(histories, **kwargs)

    monkeypatch.setattr(report, "plot_small_multiples", spy)
    render_report(sweep_dir, log=_quiet)
    assert framed == [(["batch_size=32", "batch_size=64"], "batch_size=64")]


def test_a_sweep_of_thousands_gets_learning_curve_panels_for_its_best_trials_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import appsleuth.report as report

    # One panel per trial of 5,000 trials drew for many minutes (stopped after five).
    sweep_dir = fake_sweep(
        tmp_path,
        {"grid": {"batch_size": [16, 32, 64, 128]}},
        lambda i, p: {"final_acc": [0.9, 0.6, 0.7, 0.8][i]},
    )
    panels: list[Any] = []
    real = report.plot_small_multiples

    def spy(histories: Any, **kwargs: Any) -> Any:
        panels.append(list(histories))
        return real(histories, **kwargs)

    monkeypatch.setattr(report, "plot_small_multiples", spy)
    monkeypatch.setattr(report, "_MAX_PANELS", 2)
    page = render_report(sweep_dir, log=_quiet)
    assert panels == [["batch_size=16", "batch_size=128"]]  # plan order, the best framed
    assert "Shown: the 2 of 4 complete trials with the highest validation accuracy at" in page


def test_sweep_report_names_the_engine_and_a_fallback(tmp_path: Path) -> None:
    # A sweep asking for 'fused' on TensorFlow trains with 'fit', about 100x slower: the
    # report's timings must say so.
    note = "engine 'fused' needs the JAX backend (KERAS_BACKEND=tensorflow); using 'fit'"

    def outcome(i: int, params: dict) -> dict:
        return {"extra": {"engine": "fit", "engine_note": note, "backend": "tensorflow"}}

    sweep_dir = fake_sweep(tmp_path, {"grid": {"batch_size": [16, 32]}}, outcome)
    page = render_report(sweep_dir, log=_quiet)
    assert f"<dt>Engine</dt><dd>fit ({html.escape(note)})</dd>" in page


@pytest.mark.parametrize(
    "text",
    [
        "executor: {workers: " + "[" * 500 + "]" * 500 + "}\n",
        "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
        + "".join(
            f"{n}: &{n} [" + ", ".join([f"*{p}"] * 9) + "]\n"
            for p, n in zip("abcdef", "bcdefg", strict=True)
        )
        + "executor: {workers: *g}\n",
    ],
)
def test_a_sweep_spec_that_nests_or_expands_without_end_reads_as_unreadable(
    tmp_path: Path, text: str
) -> None:
    from appsleuth.report import _read_json_yaml

    (tmp_path / "sweep.yaml").write_text(text)
    assert _read_json_yaml(tmp_path) == {}


def test_run_report_gives_the_roc_auc_of_a_two_class_task(tmp_path: Path) -> None:
    import numpy as np

    from appsleuth.evaluate import classification_metrics

    run_dir = tmp_path / "model_1H18N_lr0.0003_bs32_e3"
    write_fake_run(run_dir)
    y = np.array([0, 0, 0, 1, 1])
    scored = classification_metrics(
        y, np.array([0, 0, 1, 1, 1]), ["other", "Moriarty"], y_score=[0.1, 0.2, 0.7, 0.6, 0.9]
    )
    test = classification_metrics(y, y, ["other", "Moriarty"], y_score=[0.1, 0.2, 0.3, 0.6, 0.9])
    _with_metrics(run_dir, **scored, test=test)
    page = render_report(run_dir, log=_quiet)
    # metrics.json and the terminal gave it; the report left it out.
    assert "Validation accuracy 80.00 % on 5 rows, macro F1 0.800, ROC AUC 0.8333" in page
    assert "Test accuracy 100.00 % on 5 rows, macro F1 1.000, ROC AUC 1.0000." in page


def _seeds_note(accs: dict[int, tuple[float, float]]) -> str:
    """The best trial's note of a two-seed batch_size sweep with these accuracies."""
    from appsleuth.analysis import summarize_seeds
    from appsleuth.report import _best_of_seeds_note

    rows = [(b, a) for b, pair in accs.items() for a in pair]
    results = pd.DataFrame(
        {
            "batch_size": [b for b, _ in rows],
            "status": "complete",
            "val_accuracy": [a for _, a in rows],
            "val_loss": [1 - a for _, a in rows],
        }
    )
    results.attrs["varied"] = ["batch_size"]
    best = results.loc[results["val_accuracy"].idxmax()]
    return _best_of_seeds_note(summarize_seeds(results), best, ["batch_size"])


def test_the_best_trial_note_warns_when_its_settings_lead_is_within_the_seed_spread() -> None:
    # batch_size 16 leads by 0.015 on the mean, but its own seeds lie 0.06 apart: the
    # report said only "No other setting has a higher mean", as if 16 had won.
    note = _seeds_note({16: (0.90, 0.96), 32: (0.92, 0.91)})
    assert note.startswith('<p class="callout warn">Seeds repeat')
    assert "No other setting has a higher mean" not in note
    assert (
        "Its lead over the runner-up, batch_size = 32 (0.9150), is 0.0150: no more than the "
        "seed-to-seed standard deviation (0.0424), so the seeds do not tell these settings "
        "apart" in note
    )
    # A lead larger than either setting's spread is a lead.
    note = _seeds_note({16: (0.95, 0.96), 32: (0.90, 0.91)})
    assert "No other setting has a higher mean" in note and "seed-to-seed" not in note


@pytest.mark.parametrize("kind", ["random", "blocked"])
def test_a_random_split_is_cautioned_even_where_its_leakage_is_not_measured(
    tmp_path: Path, kind: str
) -> None:
    from appsleuth.report import _leakage_item

    # The data went away: no rate, and a random split of 5-second samples got no caution.
    item = _leakage_item({"leakage": None, "note": "not measured: the data is unavailable"}, kind)
    assert "not measured: the data is unavailable" in item
    assert ("puts near-copies of validation rows into training" in item) is (kind == "random")
    # Few exact copies do not make a random split of a time series honest.
    item = _leakage_item({"leakage": 0.05}, kind)
    assert "5.0 % of validation rows have an exact copy in training" in item
    assert ("accuracy is optimistic; compare a blocked or group split" in item) is (
        kind == "random"
    )


def test_report_keeps_task_ids_that_are_no_number_as_they_are() -> None:
    from appsleuth.report import _slurm_jobs

    # '²' passes str.isdigit() but not int(): a hand-edited metadata file was a traceback.
    env = {"SLURM_ARRAY_JOB_ID": "147"}
    metas = [{"slurm": {**env, "SLURM_ARRAY_TASK_ID": t}} for t in ("0", "1", "2", "²", "?")]
    assert _slurm_jobs(metas) == "147 (tasks 0-2, ?, ²)"


@pytest.mark.parametrize(
    ("kind", "advice"),
    [
        ("random", "also report a blocked split (--split blocked) or a group split"),
        ("blocked", "recur in other time blocks: also report a group split by device"),
        ("group", "recur across the groups: also report a copy without exact duplicates"),
    ],
)
def test_a_leaky_split_is_told_what_it_does_not_already_do(kind: str, advice: str) -> None:
    from appsleuth.report import _leakage_item

    # A blocked split with many exact copies was told to "compare a blocked or group split".
    item = re.sub(r"<[^>]+>", "", _leakage_item({"leakage": 0.3}, kind))  # the text
    assert "30.0 % of validation rows have an exact copy in training" in item
    assert f"accuracy on this {kind} split is optimistic; " in item and advice in item
    assert f"a {kind} split" not in item


def test_leaderboard_says_which_epoch_a_restored_trials_numbers_are(tmp_path: Path) -> None:
    from appsleuth.report import _leaderboard
    from appsleuth.run import read_metadata

    # Trial 0's weights (and so its val_accuracy) are epoch 2's of 3: the leaderboard
    # called every number "final", and its last history row disagreed with it.
    sweep_dir = fake_sweep(
        tmp_path,
        {"grid": {"batch_size": [16, 32]}},
        lambda i, p: {"final_acc": 0.9 - 0.1 * i, "extra": {"results_epoch": 2} if i == 0 else {}},
    )
    results = load_results(sweep_dir)
    metas = {name: read_metadata(sweep_dir / name) for name in results["name"]}
    board = _leaderboard(results, results, results.iloc[0], ["batch_size"], metas)
    table = board.split('id="leaderboard-table"', 1)[1].split("</table>", 1)[0]
    assert '<th scope="col">results epoch</th>' in table
    cells = re.findall(
        r'<th scope="row" class="name">.*?</th><td>.*?</td><td>\d+</td><td>([^<]*)</td>', table
    )
    assert cells == ["2 of 3", "3"]
    assert "a trial&#x27;s numbers are that epoch&#x27;s" in board
    for meta in metas.values():
        meta.pop("results_epoch", None)
    plain = _leaderboard(results, results, results.iloc[0], ["batch_size"], metas)
    assert "results epoch" not in plain


def test_leaderboard_shows_moriarty_detection_at_1pct_false_alarms(tmp_path: Path) -> None:
    from appsleuth.report import _leaderboard
    from tests.test_analysis import add_operating_point

    # metrics.json recorded each trial's detection at 1 % false alarms; the leaderboard
    # showed Moriarty's argmax recall only.
    sweep_dir = fake_sweep(
        tmp_path, {"grid": {"batch_size": [16, 32]}}, lambda i, p: {"final_acc": 0.9 - 0.1 * i}
    )
    plain = _leaderboard(*(load_results(sweep_dir),) * 2, None, ["batch_size"], {})
    assert "1 % false alarms" not in plain  # no trial has it: no column of dashes
    names = list(load_results(sweep_dir)["name"])
    add_operating_point(sweep_dir / names[0], threshold=0.42, detection_rate=0.75)
    results = load_results(sweep_dir)
    board = _leaderboard(results, results, None, ["batch_size"], {})
    table = board.split('id="leaderboard-table"', 1)[1].split("</table>", 1)[0]
    assert '<th scope="col" class="long">Moriarty detection at 1 % false alarms</th>' in table
    recall = r"<td>\d+\.\d %</td>"
    assert len(re.findall(recall + "<td>75.0 %</td>", table)) == 1
    assert len(re.findall(recall + "<td>–</td>", table)) == 1  # a run from before them
    assert "chose on its own validation rows, which flatters it" in board


def test_a_sweep_of_seeds_alone_gets_its_spread(tmp_path: Path) -> None:
    from appsleuth.analysis import seeds_repeat, summarize_seeds
    from appsleuth.report import _best_of_seeds_note, _seeds_section

    # One setting over three seeds, the study of seed-to-seed spread itself: it varies
    # nothing, so the report thought nothing repeated and showed no mean or spread.
    sweep_dir = fake_sweep(tmp_path, {"repeats": 3}, lambda i, p: {"final_acc": 0.8 + i / 50})
    results = load_results(sweep_dir)
    assert seeds_repeat(results)
    seeds = summarize_seeds(results)
    table = _seeds_section(seeds, [], restored=False)
    assert "<td>3 of 3</td><td>0.8200</td><td>0.0200</td><td>0.8000 – 0.8400</td>" in table
    best = results.loc[results["val_accuracy"].idxmax()]
    note = _best_of_seeds_note(seeds, best, [])
    assert "its setting averages 0.8200 (std 0.0200) over 3 seed(s)" in note
    assert "No other setting" not in note  # there is none
    one = fake_sweep(tmp_path / "one", {}, lambda i, p: {})
    assert not seeds_repeat(load_results(one))


def test_baselines_table_gives_the_roc_auc_of_a_two_class_task() -> None:
    from appsleuth.report import _baselines_section

    # The network's and the baselines' ROC AUC were recorded but not in the table (a
    # Facebook-against-WhatsApp task, where Moriarty's columns would be all "–").
    def metrics(auc: float | None) -> dict[str, Any]:
        return {"accuracy": 0.9, "macro_avg": {"f1": 0.9}, "roc_auc": auc}

    context = {"baselines": {"logistic_regression": metrics(0.91), "decision_tree": metrics(None)}}
    table = _baselines_section(context, metrics(0.9762), "network")
    assert '<th scope="col">ROC AUC</th>' in table
    row = '<th scope="row">{}</th><td>90.00 %</td><td>0.900</td><td>{}</td>'
    assert row.format("network", "0.9762") in table
    assert row.format("logistic regression", "0.9100") in table
    assert row.format("decision tree", "–") in table
    many = {"baselines": {"decision_tree": metrics(None)}}
    assert "ROC AUC" not in _baselines_section(many, metrics(None), "network")
    # No Moriarty among the classes: no columns of its rates, all "–".
    assert "Moriarty detection" not in table and "false alarms" not in table
    malware = {**metrics(0.9), "malware": {"detection_rate": 0.5, "false_alarm_rate": 0.25}}
    with_moriarty = _baselines_section({"baselines": {"decision_tree": malware}}, malware, "n")
    head = '<th scope="col" class="fold">Moriarty detection</th><th scope="col">false alarms</th>'
    assert head in with_moriarty
    assert "<td>50.0 %</td><td>25.00 %</td>" in with_moriarty


def test_baselines_table_of_moriarty_at_chosen_false_alarm_rates() -> None:
    from appsleuth.report import _baselines_section

    # The network's operating points were in the report, the baselines' nowhere: an
    # analyst could not tell whether the network catches more at 1 % false alarms.
    def point(target: float, **measured: Any) -> dict[str, Any]:
        return {"false_alarm_target": target, "threshold": None, "reason": None, **measured}

    tuned = {"threshold": 1.0, "detection_rate": 0.8, "false_alarm_rate": 0.005}
    counts = {"detected": 8, "false_alarms": 1}
    unmeasurable = "not measurable: 200 benign sample(s) cannot resolve a false-alarm rate"

    def metrics(distinct: int, points: list[dict[str, Any]]) -> dict[str, Any]:
        malware = {"detection_rate": 0.8, "false_alarm_rate": 0.005, "support": 10}
        return {
            "accuracy": 0.9,
            "macro_avg": {"f1": 0.9},
            "n": 210,
            "split": {"kind": "random"},
            "malware": {**malware, "distinct_scores": distinct, "operating_points": points},
        }

    tree = metrics(
        2,
        [
            point(0.1, **tuned, **counts),
            point(0.01, **tuned, **counts),
            point(0.001, detection_rate=None, reason=unmeasurable),
        ],
    )
    network = metrics(
        150,
        [
            point(0.1, threshold=0.3, detection_rate=0.9, false_alarm_rate=0.1, detected=9,
                  false_alarms=20),
            point(0.01, **tuned, **counts),
            point(0.001, detection_rate=None, reason=unmeasurable),
        ],
    )  # fmt: skip
    page = _baselines_section({"baselines": {"decision_tree": tree}}, network, "network")
    table = page.split('id="baselines-operating-points"', 1)[1].split("</table>", 1)[0]
    assert (
        "<caption><span>Moriarty detection at 10 % / 1 % / 0.1 % false alarms: for each "
        "model, the threshold on its P(Moriarty) with the most detections within that "
        "false-alarm rate, chosen on the validation rows it was scored on above.</span></caption>"
    ) in table
    assert '<th scope="col" class="long">detection at 0.1 % false alarms</th>' in table
    caught = '80.0 %<span class="muted"> (8 of 10 caught; 1 false alarm(s), 0.50 %)'
    # The tree's two values meet 10 % and 1 % with one threshold: said, not shown as two.
    assert (
        f'<th scope="row">decision tree</th><td>{caught}</span></td><td>{caught}; the same '
        f'threshold as at 10 %</span></td><td><span class="muted">not measurable (see below)'
        f"</span></td>"
    ) in table
    # Why, said once for the models it holds for, below the table (a cell too narrow).
    assert f"At 0.1 % false alarms, network and decision tree: {unmeasurable}." in page
    assert '<th scope="row">network</th><td>90.0 %' in table
    assert f"<td>{caught}</span></td><td><span" in table  # the network's own 1 % threshold
    assert "decision tree: P(Moriarty) takes only 2 distinct value(s) on these rows" in page
    assert "network: P(Moriarty)" not in page
    assert "more so with this random split" in page
    # A network from before operating points: its cells say so, the baselines' still show.
    older = {k: v for k, v in network.items() if k != "malware"}
    older["malware"] = {"detection_rate": 0.8, "false_alarm_rate": 0.005}
    page = _baselines_section({"baselines": {"decision_tree": tree}}, older, "network")
    assert '<th scope="row">network</th><td><span class="muted">not recorded</span>' in page
    # No model recorded any: no table.
    page = _baselines_section({"baselines": {"decision_tree": older}}, older, "network")
    assert "baselines-operating-points" not in page


def _tables(page: str) -> list[str]:
    return re.findall(r"<table.*?</table>", page, flags=re.S)


def _without_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """The report's figures drawn as their captions alone: a test of its text runs fast."""
    import appsleuth.plots
    import appsleuth.report as report

    for name in ("plot_metric_vs_param", "plot_learning_curves", "plot_small_multiples"):
        monkeypatch.setattr(report, name, lambda *a, **k: None)
    monkeypatch.setattr(report, "plot_comparison", lambda *a, **k: None)
    monkeypatch.setattr(appsleuth.plots, "plot_confusion_matrix", lambda *a, **k: None)
    monkeypatch.setattr(
        report, "_figure", lambda fig, alt, caption=None: report._tag("figcaption", caption)
    )


def test_every_table_has_a_caption_and_headers_for_its_rows_and_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rows were all <td>: a screen reader read "0.500" with no app or trial named, and no
    # table said what it held ("final" numbers that were early stopping's restored epoch).
    _without_figures(monkeypatch)
    sweep_dir = fake_sweep(
        tmp_path,
        {"grid": {"batch_size": [16, 32]}, "repeats": 2},
        lambda i, p: {"final_acc": 0.9 - 0.1 * i, "extra": {"results_epoch": 2} if i == 0 else {}},
    )
    page = render_report(sweep_dir, compare=REFERENCE / "post_processing_hpc_bs.csv", log=_quiet)
    assert_safe(page)
    tables = _tables(page)
    assert len(tables) == 4  # leaderboard, seeds, per-app, comparison
    for table in tables:
        assert re.search(r"<table[^>]*><caption><span>[^<]{20,}</span></caption><thead>", table), (
            table[:200]
        )
        head, body = table.split("<tbody>", 1)
        assert head.count("<th ") == head.count('<th scope="col"'), head
        rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body)
        assert rows and all('<th scope="row"' in row for row in rows), table[:300]
        assert 'scope="col"' not in body
    restored = "at each trial&#x27;s results epoch (its last, or the earlier one whose weights"
    board, seeds, per_app, comparison = tables
    assert restored in board and restored in seeds and restored in comparison
    assert per_app.startswith(
        '<table class="numbers" id="per-class"><caption><span>Precision, recall and F1 of each app '
        "on the 90 validation rows, scored with the saved model (epoch 2 of 3, restored by "
        "early stopping)"
    )
    assert "Final-epoch" not in page and "final validation accuracy" not in page
    assert f"Accuracy and loss {restored}" in page  # the metric-vs-batch size figure


def test_baselines_are_computed_on_the_file_the_run_read_and_say_so(
    tmp_path: Path, sherlock18_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from appsleuth.run import data_fingerprint, load_data, prepare_run_data
    from appsleuth.spec import RunSpec
    from tests.conftest import make_sherlock18

    # The spec's relative path read a namesake (or nothing) from where the report ran, so
    # the run's own file, recorded in its metadata, went unused and no baselines came.
    _without_figures(monkeypatch)
    monkeypatch.chdir(sherlock18_csv.parent)
    spec = RunSpec.from_dict({"data": {"path": "small18.csv"}})
    fingerprint = data_fingerprint(prepare_run_data(spec, load_data(spec)))
    source = {"kind": "file", "path": str(sherlock18_csv), "rows": 180}
    sweep_dir = fake_sweep(
        tmp_path / "sweeps",
        {"data": {"path": "small18.csv"}, "grid": {"batch_size": [16, 32]}},
        lambda i, p: {"extra": {"data_fingerprint": fingerprint, "data_source": source}},
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    make_sherlock18(n_per_app=40, seed=1).to_csv(elsewhere / "small18.csv")
    monkeypatch.chdir(elsewhere)
    page = render_report(sweep_dir, baselines=True, log=_quiet)
    assert 'id="baselines-table"' in page
    assert (
        f"Data of the baselines: the file {sherlock18_csv} (180 rows after cleaning), the rows "
        f"the network was trained on (its data fingerprint, {fingerprint}, matches)."
    ) in html.unescape(page)


def test_baselines_are_refused_for_a_run_trained_on_other_rows_and_unchecked_ones_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_figures(monkeypatch)
    frame = {"kind": "data frame", "path": None, "rows": 500}
    other = fake_sweep(
        tmp_path / "frame",
        {"grid": {"batch_size": [16, 32]}},
        lambda i, p: {"extra": {"data_fingerprint": "0123456789abcdef", "data_source": frame}},
    )
    page = html.unescape(render_report(other, baselines=True, log=_quiet))
    assert 'id="baselines-table"' not in page
    assert re.search(
        r"Baselines not computed: the run was trained on a data frame given in Python \(500 "
        r"rows\), not on the data its spec names \(the embedded synthetic data \(600 rows, "
        r"seed 0\): data fingerprint \w+, the run's 0123456789abcdef\)",
        page,
    )
    # A run that recorded no fingerprint gets baselines, with a warning that says so.
    unrecorded = fake_sweep(tmp_path / "old", {"grid": {"batch_size": [16, 32]}}, lambda i, p: {})
    page = html.unescape(render_report(unrecorded, baselines=True, log=_quiet))
    assert (
        '<p class="callout warn">Data of the baselines: the embedded synthetic data (600 rows'
        in page
    )
    assert "the run records no data fingerprint, so that the network was trained on these" in page


def test_a_two_class_task_gets_roc_curves_and_a_many_class_task_none() -> None:
    import numpy as np

    from appsleuth.evaluate import classification_metrics
    from appsleuth.report import (
        _baselines_section,
        _evaluation_sections,
        _join,
        _roc_figure,
        _test_section,
    )

    # The report gave a two-class task's ROC AUC but never its curve.
    y = np.array([0, 0, 0, 1, 1])
    two = classification_metrics(
        y, np.array([0, 0, 1, 1, 1]), ["Facebook", "WhatsApp"], y_score=[0.1, 0.2, 0.7, 0.6, 0.9]
    )
    page = _join(_evaluation_sections(two, "validation rows", "the saved model"))
    assert_safe(page)
    assert page.count('alt="ROC curve with the area under each in the legend"') == 1
    assert "<figcaption>ROC curve on the 5 validation rows, scored with the saved model" in page
    # The held-out test rows, the numbers to quote, get theirs too.
    tested = _test_section(two, "the model")
    assert "<figcaption>ROC curve on the 5 held-out test rows, scored with the model" in tested
    context = {"baselines": {"logistic_regression": two, "decision_tree": two}, "data_text": "x"}
    section = _baselines_section(context, two, "network")
    assert 'alt="ROC curves with the area under each in the legend"' in section
    assert "<figcaption>ROC curves on the same 5 validation rows:" in section
    # Scored on other rows (a run whose data could not be checked): not called the same.
    six = classification_metrics(
        [0, 1] * 3, [0, 1] * 3, ["Facebook", "WhatsApp"], y_score=[0, 1] * 3
    )
    section = _baselines_section({"baselines": {"decision_tree": six}, "data_text": "x"}, two, "n")
    assert (
        "ROC curves, each on the validation rows its model was scored on (not the same)" in section
    )
    # Three apps: no curve, and no empty figure or note in its place.
    many = classification_metrics(y, y, ["Chrome", "Gmail", "Moriarty"])
    assert _roc_figure([("network", many)], "no curve") is None
    assert "ROC" not in _test_section(many, "the saved model")
    assert "ROC" not in _baselines_section({"baselines": {"decision_tree": many}}, many, "net")


def test_run_report_shows_moriarty_at_chosen_false_alarm_rates(tmp_path: Path) -> None:
    import numpy as np

    from appsleuth.evaluate import classification_metrics

    run_dir = tmp_path / "model_1H18N_lr0.0003_bs32_e3"
    write_fake_run(run_dir, extra={"split": {"kind": "random", "val_fraction": 0.2}})
    # 4 Moriarty rows among 200: 196 benign rows resolve 10 % and 1 %, not 0.1 %.
    y = np.array([1] * 4 + [0] * 196)
    score = np.concatenate([[0.9, 0.8, 0.3, 0.2], np.linspace(0.0, 0.85, 196)])
    metrics = classification_metrics(
        y, (score > 0.5).astype(int), ["other", "Moriarty"], malware_score=score
    )
    _with_metrics(run_dir, **metrics, split={"kind": "random"})
    page = render_report(run_dir, log=_quiet)
    assert_safe(page)
    table = page.split('id="operating-points"', 1)[1].split("</table>", 1)[0]
    assert "<caption>Moriarty at chosen false-alarm rates" in page
    ten, one, tenth = re.findall(r"<tr>(.*?)</tr>", table)[1:]
    assert ten.startswith('<th scope="row">10.0 % (1 in 10)</th>')
    points = {p["false_alarm_target"]: p for p in metrics["malware"]["operating_points"]}
    assert f"<td>{points[0.1]['threshold']:.4g}</td>" in ten
    # Only 0.9 beats every benign score (up to 0.85): 1 % allows a single false alarm.
    assert "<td>1 of 4</td><td>0 of 196</td>" in one
    assert "not measurable: 196 benign sample(s) cannot resolve" in tenth
    assert "ROC AUC of P(Moriarty)" in page
    assert "flatter it" in page and "more so with this random split" in page
    assert "applies the exact threshold metrics.json records (the table rounds it" in page


def test_a_run_without_operating_points_reports_as_before(tmp_path: Path) -> None:
    run_dir = tmp_path / "model_1H18N_lr0.0003_bs32_e3"
    write_fake_run(run_dir)
    page = render_report(run_dir, log=_quiet)
    assert 'id="operating-points"' not in page and "detection rate" in page
    # A hand-edited file: text where numbers belong shows as missing, never breaks.
    points = [{"false_alarm_target": "ten", "threshold": "x"}, 3]
    metrics = {"app": "Moriarty", "detection_rate": 0.5, "false_alarm_rate": 0.1,
               "precision": 0.5, "support": 2, "missed": 1, "false_alarms": 1,
               "operating_points": points}  # fmt: skip
    _with_metrics(run_dir, malware=metrics)
    page = render_report(run_dir, log=_quiet)
    assert 'id="operating-points"' in page and "not recorded" in page


def test_run_report_shows_the_test_rows_at_the_validation_rows_thresholds(tmp_path: Path) -> None:
    import numpy as np

    from appsleuth.evaluate import classification_metrics, rates_at_thresholds

    run_dir = tmp_path / "model_1H18N_lr0.0003_bs32_e3"
    split = {"kind": "blocked", "val_fraction": 0.2, "test_fraction": 0.1, "n_train": 70,
             "n_val": 20, "n_test": 10}  # fmt: skip
    write_fake_run(run_dir, extra={"split": split})
    y = np.array([1, 1] + [0] * 18)
    score = np.array([0.9, 0.6, *np.linspace(0.0, 0.7, 18)])
    validation = classification_metrics(y, y, ["other", "Moriarty"], malware_score=score)
    test = classification_metrics(y[:10], y[:10], ["other", "Moriarty"])
    test["malware"]["operating_points"] = rates_at_thresholds(
        y[:10] == 1, score[:10], validation["malware"]["operating_points"]
    )
    test["malware"]["thresholds_chosen_on"] = "validation"
    _with_metrics(run_dir, **validation, split=split, test=test)
    page = render_report(run_dir, log=_quiet)
    assert_safe(page)
    section = page.split('<div id="test">', 1)[1]
    assert "<caption>Moriarty at the thresholds chosen on the validation rows</caption>" in section
    assert 'id="operating-points-test"' in section and "the ones to quote" in section
    assert "chosen for a false-alarm rate of" in section
    assert page.count('id="operating-points"') == 1
    assert "more so with this random split" not in page  # a blocked split


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("loss", '<th scope="col">loss</th>'),
        ("false alarms", '<th scope="col">false alarms</th>'),
        # Names fold after their underscores, phrases at their spaces: unfolded, the demo's
        # leaderboard (hidden_neurons, val_accuracy, Moriarty's columns) ran past the page.
        ("hidden_neurons", '<th scope="col" class="fold">hidden_<wbr>neurons</th>'),
        ("val_accuracy", '<th scope="col" class="fold">val_<wbr>accuracy</th>'),
        ("Moriarty recall", '<th scope="col" class="fold">Moriarty recall</th>'),
        ("<b>_x", '<th scope="col" class="fold">&lt;b&gt;_<wbr>x</th>'),
        (
            "Moriarty detection at 1 % false alarms",
            '<th scope="col" class="long">Moriarty detection at 1 % false alarms</th>',
        ),
        # A long phrase with a name in it keeps its readable width too: the comparison
        # table's "val_accuracy (this sweep)" could fold to a word per line.
        (
            "val_accuracy (this sweep)",
            '<th scope="col" class="long">val_<wbr>accuracy (this sweep)</th>',
        ),
    ],
)
def test_column_headers_fold_where_they_may(header: str, expected: str) -> None:
    from appsleuth.report import _column_header

    assert str(_column_header(header)) == expected
