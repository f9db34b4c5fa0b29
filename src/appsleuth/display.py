"""Terminal displays shared by the commands and the demo."""

from __future__ import annotations

import importlib.util
from typing import Any

__all__ = [
    "alarm_line",
    "in_jupyter",
    "live_display_works",
    "operating_point_lines",
    "plain_text",
    "print_metrics",
    "undefined_note",
]

_RATES = ("precision", "recall", "f1")
# A score of at most this many distinct values (a decision tree's leaves) has too few
# thresholds to tune: its operating points are said to be coarse.
COARSE_SCORES = 10


def plain_text(value: Any) -> Any:
    """``value`` as rich text shown as it is, for cells and titles that hold data.

    rich reads ``[...]`` in a string as markup: an app named ``[bold]X[/bold]`` would show
    as ``X``, one named ``[beta]`` not at all, and ``[/x]`` stops the command with a
    MarkupError.
    """
    from rich.text import Text

    return Text(str(value))


def print_metrics(metrics: dict[str, Any], *, title: str, console: Any = None) -> None:
    """Print per-class precision/recall/F1 (Moriarty highlighted) and the summary line.

    Args:
        metrics: As in ``metrics.json``.
        title: Table title.
        console: A rich console. Defaults to stdout.
    """
    from rich.console import Console
    from rich.table import Table

    from appsleuth.evaluate import idle_classes, undefined_rates

    console = console or Console()
    table = Table(title=plain_text(title), title_justify="left")
    for col in ("app", "precision", "recall", "F1", "support"):
        table.add_column(col, justify="left" if col == "app" else "right")
    idle = idle_classes(metrics)
    undefined = undefined_rates(metrics)
    for app, m in metrics["per_class"].items():
        style = "bold red" if app == "Moriarty" else None
        # A class neither present nor predicted has no precision or recall to show.
        shown = (
            ("–",) * 3
            if app in idle
            else tuple("–" if app in undefined.get(k, ()) else f"{m[k]:.3f}" for k in _RATES)
        )
        table.add_row(plain_text(app), *shown, f"{m['support']:,}", style=style)
    for avg in ("macro_avg", "weighted_avg"):
        m = metrics[avg]
        table.add_row(
            avg.replace("_", " "),
            f"{m['precision']:.3f}",
            f"{m['recall']:.3f}",
            f"{m['f1']:.3f}",
            f"{metrics['n']:,}",
            style="dim",
        )
    console.print(table)
    if idle:
        console.print(
            f"–: {len(idle)} app(s) neither in the data nor predicted; the macro average "
            f"is over the other {len(metrics['per_class']) - len(idle)}"
        )
    note = undefined_note(metrics, idle)
    if note:
        console.print(note)
    line = _summary_line(metrics)
    if "fit" in metrics:
        line += f"; fit: {metrics['fit']['diagnosis']}"
    console.print(line)
    test = metrics.get("test")
    if isinstance(test, dict) and test.get("n"):
        # The held-out test rows took no part in training or in choosing a run: their
        # numbers are the ones to quote, so they are never left to metrics.json alone.
        console.print(
            f"held-out test rows ({test['n']:,}, not used for training or selection): "
            f"{_summary_line(test, macro_f1=True)}"
        )


def operating_point_lines(metrics: dict[str, Any]) -> list[str]:
    """Moriarty's detection at each chosen false-alarm rate, one line each (none if unrecorded).

    A target that cannot be measured gives its reason, not a number; one reached with an
    earlier target's threshold says so, as the score had no finer threshold to offer.
    """
    from appsleuth._fields import is_number
    from appsleuth.evaluate import operating_points_of, same_threshold_as

    points = operating_points_of(metrics)
    if not points:
        return []
    malware = metrics["malware"]
    points = [p if isinstance(p, dict) else {} for p in points]

    def target_text(point: dict[str, Any]) -> str:
        target = point.get("false_alarm_target")
        return f"{100 * target:g} %" if is_number(target) else "?"

    def count(value: Any) -> str:
        return f"{int(value):,}" if is_number(value) else "?"

    support = malware.get("support")
    n = metrics.get("n")
    benign = n - support if is_number(n) and is_number(support) else None
    lines = [
        "Moriarty at chosen false-alarm rates (an alarm where P(Moriarty) is at least the "
        "threshold; each threshold chosen on these validation rows, so its numbers flatter it):"
    ]
    shared = same_threshold_as(points)
    for point, earlier in zip(points, shared, strict=True):
        head = f"  at most {target_text(point)} false alarms: "
        detection, false_alarm = point.get("detection_rate"), point.get("false_alarm_rate")
        if not is_number(detection) or not is_number(false_alarm):
            lines.append(head + str(point.get("reason") or "not recorded"))
            continue
        text = (
            f"detection {100 * detection:.1f} % ({count(point.get('detected'))} of "
            f"{count(support)}), false alarms {100 * false_alarm:.2f} % "
            f"({count(point.get('false_alarms'))} of {count(benign)})"
        )
        threshold = point.get("threshold")
        if earlier is not None:
            text += f", the same threshold as at {target_text(points[earlier])}"
        elif is_number(threshold):
            text += f", threshold {threshold:.4g}"
        elif point.get("reason"):
            text += f": {point['reason']}"
        lines.append(head + text)
    distinct = malware.get("distinct_scores")
    if is_number(distinct) and distinct <= COARSE_SCORES:
        lines.append(
            f"  P(Moriarty) takes only {int(distinct)} distinct value(s) on these rows: "
            f"too few thresholds to meet each false-alarm rate closely"
        )
    return lines


def undefined_note(metrics: dict[str, Any], idle: set[str]) -> str:
    """What a ``–`` precision or recall of an app that is present or predicted means."""
    from appsleuth.evaluate import undefined_rates

    undefined = {k: v - idle for k, v in undefined_rates(metrics).items()}
    said = []
    if undefined["precision"]:
        said.append(f"precision of {len(undefined['precision'])} app(s) never predicted")
    if undefined["recall"]:
        said.append(f"recall of {len(undefined['recall'])} app(s) without a sample")
    if not said:
        return ""
    return (
        f"–: {' and '.join(said)}: 0/0, undefined; the macro average counts each as 0 "
        f"(scikit-learn's zero_division=0)"
    )


def in_jupyter() -> bool:
    """Whether this process is a Jupyter kernel (a notebook's output area, not a terminal)."""
    from rich.console import Console

    return bool(Console().is_jupyter)


def live_display_works() -> bool:
    """Whether a rich progress bar can show here.

    In a Jupyter kernel rich draws it in an ipywidgets output area; without ipywidgets
    installed it warns ('install "ipywidgets" for Jupyter support') and shows nothing,
    so callers print plain lines there instead.
    """
    return not in_jupyter() or importlib.util.find_spec("ipywidgets") is not None


def _summary_line(metrics: dict[str, Any], *, macro_f1: bool = False) -> str:
    """``accuracy 0.9300[, macro F1 0.852]; Moriarty (malware): detection rate ...``."""
    from appsleuth.evaluate import flagged_as_malware

    line = f"accuracy {metrics['accuracy']:.4f}"
    if macro_f1 and isinstance(metrics.get("macro_avg"), dict):
        line += f", macro F1 {metrics['macro_avg']['f1']:.3f}"
    if metrics.get("roc_auc") is not None:
        line += f", ROC AUC {metrics['roc_auc']:.4f}"
    if "malware" in metrics:
        mw = metrics["malware"]
        false_alarms = (
            "no benign samples, so no false-alarm rate"
            if mw.get("false_alarm_rate") is None
            else f"false-alarm rate {mw['false_alarm_rate']:.4f}"
        )
        if mw.get("detection_rate") is None:
            line += (
                f"; Moriarty (malware): no Moriarty samples, so no detection rate; {false_alarms}"
            )
        else:
            precision = (
                "precision – (no sample flagged)"
                if flagged_as_malware(mw) == 0
                else f"precision {mw['precision']:.3f}"
            )
            line += (
                f"; Moriarty (malware): detection rate {mw['detection_rate']:.3f}, "
                f"{precision}, {false_alarms}"
            )
    return line


def alarm_line(alarm: dict[str, Any]) -> str:
    """What a prediction's Moriarty alarm flagged, and with labels how well, in one line.

    Args:
        alarm: :attr:`~appsleuth.predict.PredictionSummary.alarm`.
    """
    chosen = (
        f" (chosen on the run's validation rows for a false-alarm rate of "
        f"{alarm['false_alarm_target']:g})"
        if alarm["false_alarm_target"] is not None
        else ""
    )
    line = (
        f"Moriarty alarm at score >= {alarm['threshold']:.6g}{chosen}: "
        f"{alarm['alarms']:,} rows flagged"
    )
    if "detection_rate" not in alarm:
        return line
    rates = []
    for rate, hits, total, rows, what in (
        ("detection_rate", "detected", "moriarty_rows", "Moriarty", "caught"),
        ("false_alarm_rate", "false_alarms", "benign_rows", "benign", "flagged"),
    ):
        name = "detection rate" if rate == "detection_rate" else "false-alarm rate"
        if alarm[rate] is None:  # 0/0: a file without such rows
            rates.append(f"{name} – (no {rows} rows)")
        else:
            counts = f"{alarm[hits]:,} of {alarm[total]:,} {rows} rows {what}"
            rates.append(f"{name} {alarm[rate]:.4f} ({counts})")
    return f"{line}; {', '.join(rates)}"
