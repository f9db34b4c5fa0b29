"""The HTML report of a sweep or a run: one self-contained file.

``appsleuth report DIR`` writes ``DIR/report.html``: inline CSS, figures embedded as
base64 PNG data URIs, no JavaScript, nothing fetched from the network, so the file can
be mailed, archived or opened from a cluster's scratch directory. Every string that
comes from data, specs or error messages is HTML-escaped, and the page's
Content-Security-Policy forbids scripts, so an app called ``<script>`` stays text.

A sweep report holds the data and split (with the split's leakage rate), the
leaderboard (every trial, failed and pending ones included), metric-vs-hyperparameter
plots, learning curves, the best trial's confusion matrix and per-class table with
Moriarty (the malware) called out, and optionally classical baselines and a comparison
with published results. A run report holds the same for one run.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import html
import io
import math
import os
import re
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from appsleuth._fields import is_int, is_number
from appsleuth._files import read_record_table, read_record_text, refuse_nul
from appsleuth._software import software_text
from appsleuth._version import __version__
from appsleuth.analysis import (
    check_one_setting_per_value,
    comparison_table,
    lead_within_spread,
    load_histories,
    load_results,
    plot_comparison,
    plot_learning_curves,
    plot_metric_vs_param,
    plot_small_multiples,
    read_published,
    seeds_repeat,
    summarize_seeds,
    trial_label,
    value_key,
)
from appsleuth.data.layouts import MALWARE_APP
from appsleuth.data.quality import leakage_advice
from appsleuth.data.split import held_share
from appsleuth.display import COARSE_SCORES, undefined_note
from appsleuth.errors import AppSleuthError, AppSleuthWarning, DataError, SpecError
from appsleuth.evaluate import (
    ALARM_POINT_COLUMNS,
    flagged_as_malware,
    idle_classes,
    operating_points_of,
    same_threshold_as,
    undefined_rates,
)
from appsleuth.run import (
    HISTORY,
    METADATA,
    METRICS,
    best_run_key,
    read_json_object,
    read_metadata,
    run_status,
)
from appsleuth.spec import RunSpec

__all__ = ["REPORT", "render_report", "write_report"]

REPORT = "report.html"
_DPI = 80
# Learning-curve panels drawn at most: one per trial of a sweep of thousands made a figure
# hundreds of metres tall that took matplotlib many minutes (its shared axes are quadratic).
_MAX_PANELS = 24


# --- HTML building blocks ----------------------------------------------------------------


class _Html(str):
    """Markup built here: inserted as is. Any other value is escaped."""


def _e(value: Any) -> str:
    """Escape a value for HTML text or a quoted attribute."""
    if isinstance(value, _Html):
        return value
    return html.escape("" if value is None else str(value), quote=True)


def _tag(name: str, content: Any = "", **attrs: Any) -> _Html:
    attr_text = "".join(
        f' {k.rstrip("_").replace("_", "-")}="{_e(v)}"' for k, v in attrs.items() if v is not None
    )
    inner = "".join(_e(c) for c in content) if isinstance(content, list | tuple) else _e(content)
    return _Html(f"<{name}{attr_text}>{inner}</{name}>")


def _join(parts: Iterable[Any]) -> _Html:
    return _Html("".join(_e(p) for p in parts))


def _unbroken_options(text: str) -> _Html:
    """``text`` with each command-line option (``--split blocked``) kept on one line.

    Browsers break lines after a hyphen: ``(--split`` wrapped as ``(-`` and ``-split``.
    """
    parts = re.split(r"(--[A-Za-z][\w-]*(?: [a-z]+)?)", text)
    return _join(
        _tag("span", part, class_="nowrap") if i % 2 else part for i, part in enumerate(parts)
    )


def _table(
    headers: Sequence[Any],
    rows: Sequence[Sequence[Any]],
    *,
    caption: Any,
    row_classes: Sequence[str | None] | None = None,
    row_attrs: Sequence[Mapping[str, Any]] | None = None,
    row_headers: int = 1,
    cls: str | None = None,
    id_: str | None = None,
) -> _Html:
    """A table whose first ``row_headers`` cells of a row name it (a model, an app, a setting).

    Those cells are row headers, so a screen reader announces them with each number of
    the row, and the caption says what the numbers are (which rows, which epoch).
    """
    head = _tag("thead", _tag("tr", [_column_header(h) for h in headers]))
    body_rows = []
    for i, row in enumerate(rows):
        attrs = dict(row_attrs[i]) if row_attrs else {}
        cells = [
            *(_tag("th", c, scope="row") for c in row[:row_headers]),
            *(_tag("td", c) for c in row[row_headers:]),
        ]
        body_rows.append(_tag("tr", cells, class_=row_classes[i] if row_classes else None, **attrs))
    table = _tag(
        "table",
        [_caption(caption), head, _tag("tbody", body_rows)],
        class_=cls,
        id=id_,
    )
    return _tag("div", table, class_="scroll")


def _caption(text: Any) -> _Html:
    """A table's caption, its text held within the visible width (see the CSS)."""
    return _tag("caption", _tag("span", text))


def _section(title: str, *content: Any, id_: str | None = None) -> _Html:
    return _tag("section", [_tag("h2", title), *content], id=id_)


def _note(text: Any, kind: str = "note") -> _Html:
    return _tag("p", text, class_=f"callout {kind}")


def _best_histories(
    histories: Mapping[str, pd.DataFrame], limit: int, best: str | None
) -> dict[str, pd.DataFrame]:
    """The ``limit`` histories of highest final val_accuracy (``best`` among them), in order."""

    def final(h: pd.DataFrame) -> float:
        values = h["val_accuracy"].dropna() if "val_accuracy" in h else ()
        return float(values.iloc[-1]) if len(values) else -math.inf

    if len(histories) <= limit:
        return dict(histories)
    ranked = sorted(histories, key=lambda label: (label != best, -final(histories[label])))
    kept = set(ranked[:limit])
    return {label: h for label, h in histories.items() if label in kept}


def _figure(fig: Any, alt: str, caption: Any = None) -> _Html:
    """The figure as an embedded PNG (the figure is closed)."""
    from appsleuth.plots import close_figure

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=_DPI)
    finally:
        close_figure(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    img = _Html(f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">')
    parts = [img] + ([_tag("figcaption", caption)] if caption is not None else [])
    return _tag("figure", parts)


def _dl(items: Sequence[tuple[str, Any]]) -> _Html:
    return _tag("dl", [_join([_tag("dt", k), _tag("dd", v)]) for k, v in items], class_="facts")


def _badge(status: str) -> _Html:
    return _tag("span", status, class_=f"badge {status}")


# --- number formats -------------------------------------------------------------------------


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x)) or x is pd.NA


def _num(x: Any, digits: int = 4) -> str:
    return "–" if _missing(x) else f"{float(x):.{digits}f}"


def _pct(x: Any, digits: int = 1) -> str:
    return "–" if _missing(x) else f"{100 * float(x):.{digits}f} %"


def _duration(seconds: Any) -> str:
    if _missing(seconds):
        return "–"
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def _value(v: Any) -> str:
    if _missing(v):
        return "–"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


# --- the data context: leakage and baselines ----------------------------------------------


def _data_context(
    spec: RunSpec, meta: Mapping[str, Any] | None, *, baselines: bool
) -> dict[str, Any]:
    """Leakage of the split (and baselines) on the rows the run (``meta``) was trained on.

    A run that read a file is measured on that file, by the absolute path its metadata
    records (a relative path in the spec reads another file, or none, from elsewhere);
    otherwise on the data the spec names, and only where its data fingerprint is the
    run's: a data frame given in Python is not the spec's data, and numbers on other rows
    would sit beside the network's as if comparable.

    Returns ``{"leakage": rate or None, "note": why not, "baselines": {...} or None,
    "baselines_note": ..., "data_text": which rows they are}``; never raises for
    unavailable data, which is noted instead.
    """
    from appsleuth.data.load import frame_info
    from appsleuth.data.quality import leakage_rate
    from appsleuth.run import class_weights, data_fingerprint, load_data, prepare_run_data

    meta = meta or {}
    fingerprint = meta.get("data_fingerprint")
    spec = _spec_on_runs_file(spec, meta.get("data_source"))
    described = _spec_data_text(spec)
    out: dict[str, Any] = {"leakage": None, "note": None, "baselines": None, "baselines_note": None}
    try:
        with warnings.catch_warnings():
            # Training said these already (e.g. a category only in validation); the report
            # only measures, and repeating them here reads as news about the report.
            warnings.simplefilter("ignore", AppSleuthWarning)
            prepared = prepare_run_data(spec, load_data(spec))
    except (AppSleuthError, OSError) as exc:
        out["note"] = f"not measured: the data is unavailable ({exc})"
        out["baselines_note"] = out["note"].replace("not measured", "not computed")
        return out
    here = data_fingerprint(prepared)
    if isinstance(fingerprint, str) and here != fingerprint:
        out["note"] = (
            f"not measured: the run was trained on {_source_text(meta.get('data_source'))}, "
            f"not on the data its spec names ({described}: data fingerprint {here}, the "
            f"run's {fingerprint}), and numbers on other rows would describe another "
            f"experiment"
        )
        out["baselines_note"] = out["note"].replace("not measured", "not computed")
        return out
    rows = f"{prepared.cleaning.rows_after:,} rows after cleaning"
    if isinstance(fingerprint, str):
        out["data_text"] = (
            f"{described} ({rows}), the rows the network was trained on (its data "
            f"fingerprint, {fingerprint}, matches)"
        )
    else:
        out["data_text"] = (
            f"{described} ({rows}); the run records no data fingerprint, so that the "
            f"network was trained on these same rows is not checked"
        )
        out["unchecked"] = True
    table = prepared.table
    train, val, _ = prepared.split.frames(table)
    out["leakage"] = leakage_rate(train, val, list(frame_info(table).features))
    if baselines:
        from appsleuth.baselines import run_baselines

        # Fitted with the run's class weights, so that they are compared on equal terms.
        weights = class_weights(spec, prepared)
        out["baselines"] = run_baselines(prepared, seed=spec.train.seed, class_weight=weights)
        out["baselines_weighted"] = weights is not None
    return out


def _spec_on_runs_file(spec: RunSpec, source: Any) -> RunSpec:
    """``spec`` reading the file the run read, by the absolute path its metadata records."""
    if spec.data.path is None or not isinstance(source, Mapping):
        return spec
    path = source.get("path")
    if source.get("kind") != "file" or not isinstance(path, str) or path == spec.data.path:
        return spec
    if not os.path.exists(path):  # moved: the spec's path may find it, fingerprint-checked
        return spec
    return dataclasses.replace(spec, data=dataclasses.replace(spec.data, path=path))


def _spec_data_text(spec: RunSpec) -> str:
    """The data a spec names, in words: a file, or the embedded data of some size."""
    if spec.data.path is not None:
        return f"the file {spec.data.path}"
    size = f"{spec.data.rows:,} rows" if spec.data.rows is not None else "its default size"
    return f"the embedded synthetic data ({size}, seed {spec.data.synth_seed})"


def _source_text(source: Any) -> str:
    """The data a run's metadata says it was trained on (``data_source``), in words."""
    if not isinstance(source, Mapping):
        return "other data (its metadata does not say which)"
    rows = source.get("rows")
    of = f"{rows:,} rows" if is_int(rows) else "rows"
    kind = source.get("kind")
    if kind == "data frame":
        return f"a data frame given in Python ({of})"
    if kind == "file":
        return f"the file {source.get('path')} ({of})"
    return f"the embedded synthetic data ({of})"


# --- common sections --------------------------------------------------------------------------


def _split_text(split: Mapping[str, Any] | None) -> str:
    if not split:
        return "–"
    kind = split.get("kind", "?")
    # What sets the split apart: which rows stay together, or that classes keep their share.
    how = {
        "random": "stratified by app, " if split.get("stratify") else "",
        "blocked": f"{_value(split.get('n_blocks'))} time blocks per app, "
        if split.get("n_blocks") is not None
        else "",
        "group": f"whole groups of {split['group_column']}, " if split.get("group_column") else "",
    }.get(str(kind), "")
    text = f"{kind} ({how}validation {_value(split.get('val_fraction'))}"
    if split.get("test_fraction"):
        text += f", test {_value(split.get('test_fraction'))}"
    text += f", seed {_value(split.get('seed'))})"
    if split.get("n_train") is not None:
        text += f": {split['n_train']:,} training / {split.get('n_val', 0):,} validation rows"
        if split.get("n_test"):
            text += f" / {split['n_test']:,} test rows"
        total = split["n_train"] + split.get("n_val", 0) + split.get("n_test", 0)
        asked = split.get("val_fraction")
        held = held_share(asked, split.get("n_val", 0), total) if is_number(asked) else None
        if held is not None:  # blocks and groups go whole
            text += f" (a validation share of {held:.3f})"
    return text


# Said of a random split whatever its measured rate: exact copies are only part of the leak.
_RANDOM_SPLIT_CAUTION = (
    "a random split of time-series rows (SherLock samples each app every 5 seconds, and "
    "neighbouring samples are near copies) puts near-copies of validation rows into "
    "training, so its accuracy is optimistic; compare a blocked or group split"
)


def _leakage_item(context: Mapping[str, Any], split_kind: str | None) -> _Html:
    rate = context.get("leakage")
    if rate is None:
        unmeasured = _tag("span", context.get("note") or "not measured", class_="muted")
        if split_kind != "random":
            return unmeasured
        return _join([unmeasured, " — ", _tag("strong", _RANDOM_SPLIT_CAUTION, class_="warn")])
    text = f"{_pct(rate)} of validation rows have an exact copy in training"
    if rate < 0.2 and split_kind == "random":
        return _join(
            [_tag("span", text), _tag("span", f" — but {_RANDOM_SPLIT_CAUTION}", class_="muted")]
        )
    if rate >= 0.2:
        return _join(
            [
                _tag("strong", text, class_="warn"),
                _tag(
                    "span",
                    [
                        f" — accuracy on this {split_kind or ''} split is optimistic; ",
                        _unbroken_options(leakage_advice(split_kind)),
                    ],
                    class_="muted",
                ),
            ]
        )
    return _tag("span", text)


def _dataset_item(meta: Mapping[str, Any] | None, spec: RunSpec) -> _Html:
    meta = meta or {}
    name = meta.get("dataset") or (spec.data.path or "embedded synthetic SherLock data")
    synthetic = meta.get("synthetic", spec.data.path is None)
    parts: list[Any] = [_tag("span", name)]
    # Only generated data is known for what it is: a file may hold real rows or rows
    # that 'appsleuth data synth' wrote (a plain table, nothing marks it), so a file gets
    # no badge rather than a "real data" claim the report cannot back.
    if synthetic:
        parts.append(_tag("span", "synthetic", class_="badge synthetic"))
    return _join(parts)


def _engines_text(metas: Sequence[Mapping[str, Any]]) -> str:
    """The engines the trials trained with, and why any fell back from ``fused``.

    Times differ by one or two orders of magnitude between the engines, and a sweep
    asking for ``fused`` trains with ``fit`` on another Keras backend: the timings of the
    report only make sense with the engine beside them.
    """
    engines = Counter(str(m["engine"]) for m in metas if m.get("engine"))
    if not engines:
        return "–"
    if len(engines) == 1:
        text = next(iter(engines))
    else:
        text = ", ".join(f"{e} ({n} trials)" for e, n in sorted(engines.items()))
    notes = sorted({str(m["engine_note"]) for m in metas if m.get("engine_note")})
    if notes:
        text += " (" + "; ".join(notes) + ")"
    return text


def _hardware_text(metas: Sequence[Mapping[str, Any]]) -> str:
    hardware = [m.get("hardware") for m in metas if isinstance(m.get("hardware"), Mapping)]
    if not hardware:
        return "–"
    first = hardware[0]
    devices = ", ".join(map(str, first.get("devices") or [])) or str(first.get("device", "?"))
    text = (
        f"{first.get('hostname', '?')}: {first.get('machine', '')} {first.get('system', '')}, "
        f"{first.get('cores_available', '?')} of {first.get('cpu_count', '?')} cores per trial, "
        f"{first.get('backend', '?')} backend on {devices}"
    )
    hosts = {h.get("hostname") for h in hardware}
    if len(hosts) > 1:
        text += f" ({len(hosts)} hosts in all)"
    return text


def _software_text(metas: Sequence[Mapping[str, Any]]) -> str:
    """The software most trials ran on; the trials that ran on other versions (a
    sweep resumed after an upgrade) are counted, as their numbers may not compare."""
    texts = Counter(t for t in map(software_text, metas) if t is not None)
    if not texts:
        return "–"
    text = texts.most_common(1)[0][0]
    if len(texts) > 1:
        others = sum(texts.values()) - texts[text]
        text += f" ({others} trial(s) ran on other versions)"
    return text


def _malware_block(metrics: Mapping[str, Any]) -> _Html:
    malware = metrics.get("malware")
    if not malware:
        return _note(
            f"{MALWARE_APP} (the malware) is not a class of this task: no detection rate.",
            "muted",
        )
    per_class = (metrics.get("per_class") or {}).get(MALWARE_APP) or {}
    support = per_class.get("support")
    caught = (
        f" ({round(malware['detection_rate'] * support):,} of {support:,} samples)"
        if support is not None and malware.get("detection_rate") is not None
        else ""
    )
    # Precision is 0/0 when nothing was flagged: recorded as 0, shown as undefined.
    nothing_flagged = flagged_as_malware(malware) == 0
    return _tag(
        "div",
        [
            _tag("h3", f"{MALWARE_APP} (malware)"),
            _tag(
                "div",
                [
                    _tag(
                        "div",
                        [
                            _tag("span", "detection rate", class_="label"),
                            _tag("span", _pct(malware.get("detection_rate")), class_="big"),
                            _tag("span", f"recall of {MALWARE_APP}{caught}", class_="muted"),
                        ],
                        class_="stat",
                    ),
                    _tag(
                        "div",
                        [
                            _tag("span", "false-alarm rate", class_="label"),
                            _tag("span", _pct(malware.get("false_alarm_rate"), 2), class_="big"),
                            _tag("span", "benign samples flagged as malware", class_="muted"),
                        ],
                        class_="stat",
                    ),
                    _tag(
                        "div",
                        [
                            _tag("span", "precision", class_="label"),
                            _tag(
                                "span",
                                "–" if nothing_flagged else _pct(malware.get("precision")),
                                class_="big",
                            ),
                            _tag(
                                "span",
                                "no sample was flagged as malware"
                                if nothing_flagged
                                else "alarms that are malware",
                                class_="muted",
                            ),
                        ],
                        class_="stat",
                    ),
                ],
                class_="stats",
            ),
        ],
        class_="callout malware",
    )


def _operating_points_block(
    metrics: Mapping[str, Any], id_: str = "operating-points"
) -> list[_Html]:
    """Moriarty's detection rate at each chosen false-alarm rate; none for older runs."""
    points = operating_points_of(metrics)
    if not points:
        return []  # a run from before operating points were recorded
    malware = metrics["malware"]
    # The test rows measure thresholds the validation rows chose; they choose none.
    held_out = malware.get("thresholds_chosen_on") == "validation"

    def number(x: Any) -> float | None:  # a hand-edited file's text shows as missing
        return float(x) if is_number(x) else None

    def share(count: Any, total: int | None) -> str:
        if not is_number(count):
            return "–"
        return f"{int(count):,}" + (f" of {total:,}" if total is not None else "")

    support = malware.get("support") if is_number(malware.get("support")) else None
    n = metrics.get("n") if is_number(metrics.get("n")) else None
    benign = n - support if n is not None and support is not None else None
    rows, notes = [], []
    for point in points:
        if not isinstance(point, Mapping):
            continue
        target = number(point.get("false_alarm_target"))
        target = target if target is not None and 0 < target < 1 else None
        said = "–" if target is None else f"{_pct(target)} (1 in {round(1 / target):,})"
        header = _tag("th", said, scope="row")
        reason = point.get("reason")
        if number(point.get("detection_rate")) is None:
            cells = [_tag("td", reason or "not recorded", colspan=5, class_="muted")]
        else:
            threshold = number(point.get("threshold"))
            cells = [
                _tag("td", "–" if threshold is None else f"{threshold:.4g}"),
                _tag("td", _pct(number(point.get("detection_rate")))),
                _tag("td", _pct(number(point.get("false_alarm_rate")), 2)),
                _tag("td", share(point.get("detected"), support)),
                _tag("td", share(point.get("false_alarms"), benign)),
            ]
            if reason:
                notes.append(f"{_pct(target)}: {reason}.")
        rows.append(_tag("tr", [header, *cells]))
    headers = [
        "chosen for a false-alarm rate of" if held_out else "false-alarm rate at most",
        "threshold (score ≥)",
        "detection rate",
        "false-alarm rate",
        f"{MALWARE_APP} caught",
        "false alarms",
    ]
    table = _tag(
        "div",
        _tag(
            "table",
            [
                _tag(
                    "caption",
                    f"{MALWARE_APP} at the thresholds chosen on the validation rows"
                    if held_out
                    else f"{MALWARE_APP} at chosen false-alarm rates: P({MALWARE_APP}) at "
                    f"least the threshold raises an alarm",
                ),
                _tag("thead", _tag("tr", [_tag("th", h, scope="col") for h in headers])),
                _tag("tbody", rows),
            ],
            class_="numbers",
            id=id_,
        ),
        class_="scroll",
    )
    ranking = ""
    if number(malware.get("roc_auc")) is not None:
        ranking = (
            f"ROC AUC of P({MALWARE_APP}) {_num(malware['roc_auc'])}, average precision "
            f"{_num(number(malware.get('average_precision')))}. "
        )
    if held_out:
        return [
            table,
            *(_tag("p", note, class_="muted") for note in notes),
            _tag(
                "p",
                f"{ranking}These rows chose no threshold: their rates at the validation "
                f"rows' thresholds are the ones to quote.",
            ),
        ]
    split = metrics.get("split") if isinstance(metrics.get("split"), Mapping) else {}
    caution = (
        f"{ranking}Each threshold was chosen on these validation rows, so its numbers "
        f"flatter it; new data will raise more false alarms or catch less"
        + (
            ", and more so with this random split, whose validation rows have "
            "near-duplicates among the training rows"
            if split.get("kind") == "random"
            else ""
        )
        + ". Deploy one with appsleuth predict RUN DATA --alarm-false-rate 0.01, which "
        "applies the exact threshold metrics.json records (the table rounds it to 4 "
        "digits: typed into --alarm-threshold, a rounded-down one raises a few more alarms)."
    )
    return [table, *(_tag("p", note, class_="muted") for note in notes), _tag("p", caution)]


def _per_class_table(metrics: Mapping[str, Any], caption: str, id_: str = "per-class") -> _Html:
    per_class = metrics.get("per_class") or {}
    idle = idle_classes(metrics)
    undefined = undefined_rates(metrics)
    rows, classes = [], []
    for app, m in per_class.items():
        is_malware = app == MALWARE_APP
        name = _join([app, _tag("span", "malware", class_="badge failed")]) if is_malware else app
        # Neither present nor predicted: no precision or recall, and not in the macro average.
        rates = (
            ["–"] * 3
            if app in idle
            else [
                "–" if app in undefined.get(k, ()) else _num(m.get(k), 3)
                for k in ("precision", "recall", "f1")
            ]
        )
        rows.append([name, *rates, f"{m.get('support', 0):,}"])
        classes.append("malware" if is_malware else None)
    for label, key in (("macro average", "macro_avg"), ("weighted average", "weighted_avg")):
        avg = metrics.get(key) or {}
        rows.append(
            [
                _tag("em", label),
                _num(avg.get("precision"), 3),
                _num(avg.get("recall"), 3),
                _num(avg.get("f1"), 3),
                f"{metrics.get('n', 0):,}",
            ]
        )
        classes.append("average")
    table = _table(
        ["app", "precision", "recall", "F1", "support"],
        rows,
        caption=caption,
        row_classes=classes,
        cls="numbers",
        id_=id_,
    )
    notes = []
    if idle:
        notes.append(
            f"–: {len(idle)} app(s) neither among these rows nor predicted; the macro "
            f"average is over the other {len(per_class) - len(idle)}."
        )
    undefined_text = undefined_note(dict(metrics), idle)
    if undefined_text:
        notes.append(f"{undefined_text}.")
    if not notes:
        return table
    return _join([table, *(_tag("p", note, class_="muted") for note in notes)])


def _confusion_figure(metrics: Mapping[str, Any]) -> _Html | None:
    from appsleuth.plots import plot_confusion_matrix

    cm = metrics.get("confusion_matrix") or {}
    if not cm.get("counts") or not cm.get("labels"):
        return None
    fig = plot_confusion_matrix(cm["counts"], cm["labels"])
    return _figure(
        fig,
        "confusion matrix of the validation rows",
        "Confusion matrix on the validation rows: each row is a true app, shares of that "
        "app's samples; the diagonal is each app's recall.",
    )


def _roc_figure(curves: Sequence[tuple[str, Mapping[str, Any]]], caption: str) -> _Html | None:
    """ROC curves of the entries that recorded one (two-class tasks), or None if none did."""
    from appsleuth.plots import plot_roc_curves, roc_points

    drawn = {name: m for name, m in curves if roc_points(m) is not None}
    if not drawn:
        return None  # a many-class task: no curve, and no empty figure in its place
    labels = ((next(iter(drawn.values())).get("confusion_matrix") or {}).get("labels")) or []
    positive = str(labels[1]) if len(labels) == 2 else None
    return _figure(
        plot_roc_curves(drawn, positive=positive),
        "ROC curve" + ("s" if len(drawn) > 1 else "") + " with the area under each in the legend",
        caption,
    )


def _evaluation_sections(metrics: Mapping[str, Any], where: str, model: str) -> list[_Html]:
    """The evaluation of ``model`` (which epoch's weights, :func:`_saved_model_words`)."""
    parts: list[_Html] = [
        _tag(
            "p",
            f"Validation accuracy {_pct(metrics.get('accuracy'), 2)} on {metrics.get('n', 0):,} "
            f"rows, macro F1 {_num((metrics.get('macro_avg') or {}).get('f1'), 3)}"
            f"{_roc_auc_text(metrics)} ({where}).",
        ),
        _malware_block(metrics),
        *_operating_points_block(metrics),
    ]
    confusion = _confusion_figure(metrics)
    if confusion is not None:
        parts.append(confusion)
    roc = _roc_figure(
        [("network", metrics)],
        f"ROC curve on the {metrics.get('n', 0):,} validation rows, scored with {model}: "
        "each point is one threshold on the predicted probability; the legend gives the "
        "area under the curve (AUC).",
    )
    if roc is not None:
        parts.append(roc)
    parts.append(_tag("h3", "Per-app precision, recall and F1"))
    parts.append(
        _per_class_table(
            metrics,
            f"Precision, recall and F1 of each app on the {metrics.get('n', 0):,} validation "
            f"rows, scored with {model}; support: the app's rows among them.",
        )
    )
    test = metrics.get("test")
    if isinstance(test, Mapping) and test.get("n"):
        parts.append(_test_section(test, model))
    return parts


def _roc_auc_text(metrics: Mapping[str, Any]) -> str:
    """``, ROC AUC 0.9731`` for a two-class task (metrics.json and the terminal give it)."""
    auc = metrics.get("roc_auc")  # None when the rows hold one class only
    return f", ROC AUC {_num(auc)}" if is_number(auc) and math.isfinite(auc) else ""


def _test_section(test: Mapping[str, Any], model: str) -> _Html:
    """The held-out test rows: the numbers to quote, since nothing was chosen on them."""
    return _tag(
        "div",
        [
            _tag("h3", "Held-out test rows"),
            _tag(
                "p",
                f"Test accuracy {_pct(test.get('accuracy'), 2)} on {test.get('n', 0):,} rows, "
                f"macro F1 {_num((test.get('macro_avg') or {}).get('f1'), 3)}"
                f"{_roc_auc_text(test)}. These rows "
                "took no part in training, early stopping or choosing a run, so these are "
                "the numbers to quote; the validation numbers above steered those choices.",
            ),
            _malware_block(test),
            *_operating_points_block(test, id_="operating-points-test"),
            *filter(
                None,
                [
                    _roc_figure(
                        [("network", test)],
                        f"ROC curve on the {test.get('n', 0):,} held-out test rows, scored "
                        f"with {model}: each point is one threshold on the predicted "
                        "probability; the legend gives the area under the curve (AUC).",
                    )
                ],
            ),
            _per_class_table(
                test,
                f"Precision, recall and F1 of each app on the {test.get('n', 0):,} held-out "
                f"test rows, scored with {model}; support: the app's rows among them.",
                id_="per-class-test",
            ),
        ],
        id="test",
    )


def _restored_epoch(meta: Mapping[str, Any] | None) -> tuple[int, int] | None:
    """``(kept, run)`` when early stopping restored epoch ``kept`` of ``run`` epochs, else None."""
    meta = meta or {}
    kept, run = meta.get("results_epoch"), meta.get("epochs_run")
    if is_int(kept) and is_int(run) and 1 <= kept < run:
        return kept, run
    return None


def _saved_model_words(meta: Mapping[str, Any] | None) -> str:
    """Which epoch's weights the saved model (and metrics.json) holds, in words."""
    restored = _restored_epoch(meta)
    if restored is not None:
        return f"the saved model (epoch {restored[0]} of {restored[1]}, restored by early stopping)"
    run = (meta or {}).get("epochs_run")
    if is_int(run):
        return f"the saved model (epoch {run}, the last)"
    return "the saved model"


def _epochs_text(meta: Mapping[str, Any] | None) -> str:
    """``30 epochs``, or which epoch the results are when early stopping ended the run."""
    meta = meta or {}
    run, planned = meta.get("epochs_run"), meta.get("epochs")
    restored = _restored_epoch(meta)
    if restored is not None:
        kept, run = restored
        of = f" of {planned}" if is_int(planned) and planned > run else ""
        return f"{run}{of} epochs run, results from epoch {kept} (early stopping restored it)"
    if is_int(run) and is_int(planned) and run < planned:
        return f"{run} of {planned} epochs (stopped early)"
    count = run if is_int(run) else planned
    return f"{count} epochs" if is_int(count) else "epochs unknown"


def _evaluation_or_damage(
    metrics: Mapping[str, Any],
    path: Path,
    log: Callable[[str], None],
    meta: Mapping[str, Any] | None = None,
) -> list[_Html]:
    """A complete run's evaluation, or a warning that its metrics file is damaged."""
    if metrics:
        parts = [
            _fit_block(metrics.get("fit")),
            *_evaluation_sections(
                metrics, "validation rows of the split above", _saved_model_words(meta)
            ),
        ]
        restored = _restored_epoch(meta)
        if restored is not None:
            # The diagnosis quotes the last epoch, the evaluation the restored one.
            kept, run = restored
            parts.insert(
                0,
                _note(
                    f"Early stopping restored the weights of epoch {kept} after {run} epochs: "
                    f"the saved model and every number below except the fit diagnosis are "
                    f"epoch {kept}'s; the diagnosis reads the whole learning curve and quotes "
                    f"its last epoch ({run}).",
                    "muted",
                ),
            )
        return parts
    log(f"appsleuth: warning: {path} is damaged or unreadable; its evaluation is not shown")
    return [
        _note(
            f"{path.name} of {path.parent.name} is damaged or unreadable, so its evaluation "
            "(fit diagnosis, per-app results, Moriarty) cannot be shown; train this run "
            "again to restore it.",
            "warn",
        )
    ]


def _fit_block(fit: Mapping[str, Any] | None) -> _Html:
    fit = fit or {}
    diagnosis = fit.get("diagnosis") or "unknown"
    return _tag(
        "p",
        [
            _tag("strong", "Fit diagnosis: "),
            _tag("span", diagnosis, class_=f"diag {str(diagnosis).replace(' ', '-')}"),
            _tag("span", f" — {fit['reason']}" if fit.get("reason") else ""),
        ],
    )


def _slurm_jobs(metas: Any) -> str:
    """The SLURM jobs trials ran in: array jobs with their task ids, e.g. ``147 (tasks 0-3, 7)``."""
    arrays: dict[str, set[str]] = {}
    for m in metas:
        env = m.get("slurm") or {}
        array_id = env.get("SLURM_ARRAY_JOB_ID") if isinstance(env, dict) else None
        if array_id:
            arrays.setdefault(str(array_id), set()).add(str(env.get("SLURM_ARRAY_TASK_ID", "?")))
        elif m.get("SLURM_JOB_ID"):
            arrays.setdefault(str(m["SLURM_JOB_ID"]), set())
    from appsleuth.sweep.slurm import compress_indices

    parts = []
    for job in sorted(arrays, key=lambda j: (len(j), j)):
        # Ranges: a sweep of thousands of trials listed every task id of its arrays.
        # ASCII digits only: str.isdigit() takes '²' too, which int() refuses (a
        # hand-edited model_metadata.json made the report a traceback).
        numeric = {t for t in arrays[job] if t.isascii() and t.isdigit()}
        tasks = [compress_indices(map(int, numeric)).replace(",", ", ")] if numeric else []
        tasks += sorted(arrays[job] - numeric)
        parts.append(f"{job} (tasks {', '.join(tasks)})" if tasks else job)
    return ", ".join(parts)


def _say_if_baselines_missing(
    context: dict[str, Any], asked: bool, log: Callable[[str], None]
) -> None:
    """Baselines that were asked for but could not be computed are said on the terminal too."""
    if asked and not context.get("baselines"):
        log(
            f"appsleuth: warning: baselines {context.get('baselines_note') or 'not computed'} "
            f"(the report says so)"
        )


def _baselines_section(
    context: Mapping[str, Any],
    network: Mapping[str, Any] | None,
    network_label: str,
    network_model: str = "the saved model",
) -> _Html:
    baselines = context.get("baselines")
    if not baselines:
        return _section(
            "Baselines",
            _note(f"Baselines {context.get('baselines_note') or 'not computed'}.", "warn"),
            id_="baselines",
        )
    rows = []
    entries = [(network_label, network)] if network else []
    entries += [(name.replace("_", " "), m) for name, m in baselines.items()]
    # A two-class task's ROC AUC, which its threshold-free comparison needs, where recorded.
    auc = any(_roc_auc_text(m) for _, m in entries)
    # Moriarty's columns only where it is one of the classes (not, e.g., two other apps).
    malware_columns = any(m.get("malware") for _, m in entries)
    for name, m in entries:
        malware = m.get("malware") or {}
        rows.append(
            [
                name,
                _pct(m.get("accuracy"), 2),
                _num((m.get("macro_avg") or {}).get("f1"), 3),
                *([_roc_auc_text(m).removeprefix(", ROC AUC ") or "–"] if auc else []),
                *(
                    [_pct(malware.get("detection_rate")), _pct(malware.get("false_alarm_rate"), 2)]
                    if malware_columns
                    else []
                ),
                _duration(m.get("fit_seconds")) if "fit_seconds" in m else "–",
            ]
        )
    same = len({m.get("n") for _, m in entries}) == 1
    roc = _roc_figure(
        entries,
        (
            f"ROC curves on the same {_rows_text(entries)}validation rows"
            if same
            else "ROC curves, each on the validation rows its model was scored on (not the same)"
        )
        + ": each point is one threshold on a model's predicted probability; the legend "
        "gives the area under each curve (AUC).",
    )
    return _section(
        "Baselines on the same split",
        _tag(
            "p",
            "Logistic regression and a decision tree (scikit-learn) fitted on the same "
            "training rows and scored on the same validation rows: is the network worth it? "
            "Time: the network's whole run (training with per-epoch validation, evaluation "
            "and saving, from its metadata; for a run trained on its own rather than in a "
            "sweep, loading and preparing its data too), the baselines' fitting alone."
            + (
                " The baselines were fitted with the network's class weights."
                if context.get("baselines_weighted")
                else ""
            ),
        ),
        _note(
            f"Data of the baselines: {context.get('data_text') or 'unknown'}.",
            "warn" if context.get("unchecked") else "muted",
        ),
        _table(
            [
                "model",
                "accuracy",
                "macro F1",
                *(["ROC AUC"] if auc else []),
                *([f"{MALWARE_APP} detection", "false alarms"] if malware_columns else []),
                "time",
            ],
            rows,
            caption=_baselines_caption(entries, network_model if network else None),
            row_classes=["best" if network else None] + [None] * len(baselines),
            cls="numbers",
            id_="baselines-table",
        ),
        *(_baselines_operating_points(entries) if malware_columns else []),
        *([roc] if roc is not None else []),
        id_="baselines",
    )


def _baselines_operating_points(entries: Sequence[tuple[str, Mapping[str, Any]]]) -> list[_Html]:
    """Each model's Moriarty detection at the chosen false-alarm rates, one row per model.

    None where no model recorded operating points (a run from before they were).
    """

    def points_of(m: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        return [p for p in operating_points_of(m) or [] if isinstance(p, Mapping)]

    targets: list[float] = []
    for _, m in entries:
        for point in points_of(m):
            target = point.get("false_alarm_target")
            if is_number(target) and 0 < target < 1 and float(target) not in targets:
                targets.append(float(target))
    if not targets:
        return []
    targets.sort(reverse=True)
    said = {t: f"{100 * t:g} %" for t in targets}
    rows, coarse = [], []
    reasons: dict[tuple[float, str], list[str]] = {}
    for name, m in entries:
        points = points_of(m)
        malware = m.get("malware") if isinstance(m.get("malware"), Mapping) else {}
        support = malware.get("support")
        shared = same_threshold_as(points)
        by_target = {}
        for point, earlier in zip(points, shared, strict=True):
            target = point.get("false_alarm_target")
            if is_number(target):
                by_target[float(target)] = (point, earlier)
        cells: list[Any] = [name]
        for target in targets:
            point, earlier = by_target.get(target, ({}, None))
            cell, reason = _operating_point_cell(point, earlier, points, support)
            cells.append(cell)
            if reason:
                # One note per reason: the rows of every model share its benign count.
                reasons.setdefault((target, reason), []).append(name)
        rows.append(cells)
        distinct = malware.get("distinct_scores")
        if is_int(distinct) and distinct <= COARSE_SCORES:
            coarse.append(f"{name}: P({MALWARE_APP}) takes only {distinct} distinct value(s)")
    table = _table(
        ["model", *(f"detection at {said[t]} false alarms" for t in targets)],
        rows,
        caption=f"{MALWARE_APP} detection at {' / '.join(said[t] for t in targets)} false "
        f"alarms: for each model, the threshold on its P({MALWARE_APP}) with the most "
        f"detections within that false-alarm rate, chosen on the validation rows it was "
        "scored on above.",
        cls="numbers",
        id_="baselines-operating-points",
    )
    split = next((m["split"] for _, m in entries if isinstance(m.get("split"), Mapping)), {})
    caution = (
        "Each threshold was chosen on these validation rows, so its numbers flatter it; new "
        "data will raise more false alarms or catch less"
        + (
            ", and more so with this random split, whose validation rows have "
            "near-duplicates among the training rows"
            if split.get("kind") == "random"
            else ""
        )
        + "."
    )
    notes = [
        f"At {said[target]} false alarms, {_and(names)}: {reason}."
        for (target, reason), names in reasons.items()
    ]
    if coarse:
        notes.append(
            f"{'; '.join(coarse)} on these rows: too few thresholds to meet each false-alarm "
            f"rate closely, so a rate it cannot tell apart from a larger one shows that one's "
            f"threshold."
        )
    return [table, _tag("p", caution), *(_tag("p", n, class_="muted") for n in notes)]


def _and(names: Sequence[str]) -> str:
    """``"a, b and c"``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _operating_point_cell(
    point: Mapping[str, Any],
    earlier: int | None,
    points: Sequence[Mapping[str, Any]],
    support: Any,
) -> tuple[_Html, str | None]:
    """A detection rate with its counts, or a short word where there is none (never a
    made-up number); and the reason to note below the table, if any."""
    detection, false_alarms = point.get("detection_rate"), point.get("false_alarm_rate")
    reason = point.get("reason") if isinstance(point.get("reason"), str) else None
    if not is_number(detection) or not is_number(false_alarms):
        if not point:
            return _tag("span", "not recorded", class_="muted"), None
        short = "not measurable" if reason and reason.startswith("not measurable") else "none"
        return _tag("span", f"{short} (see below)", class_="muted"), reason or "not recorded"
    caught = (
        f"{int(point['detected']):,} of {int(support):,} caught"
        if is_number(point.get("detected")) and is_number(support)
        else "caught"
    )
    alarms = (
        f"{int(point['false_alarms']):,} false alarm(s), {_pct(false_alarms, 2)}"
        if is_number(point.get("false_alarms"))
        else f"false alarms {_pct(false_alarms, 2)}"
    )
    detail = f" ({caught}; {alarms})"
    target = points[earlier].get("false_alarm_target") if earlier is not None else None
    if is_number(target):
        detail += f"; the same threshold as at {100 * target:g} %"
    return _join([_pct(detection), _tag("span", detail, class_="muted")]), reason


def _baselines_caption(
    entries: Sequence[tuple[str, Mapping[str, Any]]], network_model: str | None
) -> str:
    """What the baselines table holds; rows counted apart where their numbers differ."""
    if network_model is None:
        return f"The baselines on the {_rows_text(entries)}validation rows of the split."
    counts = [m.get("n") for _, m in entries]
    if len(set(counts)) > 1 and all(is_int(n) for n in counts):
        # Only where the match of the data could not be checked (see _data_context).
        return (
            f"The network, scored with {network_model}, on its {counts[0]:,} validation rows "
            f"and the baselines on {counts[1]:,}: not the same rows; time as said above."
        )
    return (
        f"The network, scored with {network_model}, and the baselines on the same "
        f"{_rows_text(entries)}validation rows of the same split; time as said above."
    )


def _rows_text(entries: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """``"5,000 "``: the validation rows the entries were scored on, when they agree."""
    counts = {m.get("n") for _, m in entries}
    n = counts.pop() if len(counts) == 1 else None
    return f"{n:,} " if is_int(n) else ""


# --- sweep report ---------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    data = read_json_object(path) or {}
    if path.name == METRICS and not _metrics_well_formed(data):
        return {}  # damaged or hand-edited: shown as unavailable, never as numbers
    return data


def _metrics_well_formed(m: dict[str, Any]) -> bool:
    def rate(x: Any) -> bool:
        return x is None or (is_number(x) and 0 <= x <= 1)

    if not rate(m.get("accuracy")):
        return False
    for key in ("per_class", "macro_avg", "weighted_avg", "malware", "fit"):
        if key in m and not isinstance(m[key], dict):
            return False
    for row in (m.get("per_class") or {}).values():
        if not isinstance(row, dict) or not all(
            rate(row.get(k)) for k in ("precision", "recall", "f1")
        ):
            return False
    for key in ("macro_avg", "weighted_avg"):
        if not all(rate((m.get(key) or {}).get(k)) for k in ("precision", "recall", "f1")):
            return False
    matrix = m.get("confusion_matrix")
    if matrix is None:
        return True
    return isinstance(matrix, dict) and all(
        isinstance(matrix.get(k), list) and all(isinstance(r, list) for r in matrix[k])
        for k in ("counts", "normalized")
    )


def _sweep_report(
    sweep_dir: Path,
    *,
    baselines: bool,
    published: pd.DataFrame | None,
    log: Callable[[str], None],
) -> tuple[str, _Html]:
    from appsleuth.sweep.store import MANIFEST, read_plan

    manifest = _read_json(sweep_dir / MANIFEST)
    name = str(manifest.get("name") or sweep_dir.name)
    results = load_results(sweep_dir)
    plan = read_plan(sweep_dir)
    varied = list(results.attrs["varied"])
    if published is not None:
        param = published.attrs["param"]
        if param not in varied:
            raise DataError(
                f"the published results in {published.attrs['source']} vary {param}, but "
                f"sweep {name} varies {', '.join(varied) or 'nothing'}; compare a sweep "
                f"of the same hyperparameter"
            )
        check_one_setting_per_value(results, param)  # before the figures are drawn
    metas = {
        row["name"]: read_metadata(sweep_dir / row["name"]) or {}
        for _, row in results.iterrows()
        if row["status"] in ("complete", "failed")
    }
    complete = results.loc[results["status"] == "complete"]
    # Ranked by the rule predict uses too, so both name the same best trial.
    ranked = sorted(
        complete.index, key=lambda i: best_run_key(complete.loc[i], int(complete.loc[i, "index"]))
    )
    complete = complete.loc[ranked]
    restored = _any_restored(complete, metas)
    best = complete.iloc[0] if len(complete) else None
    spec = plan[int(best["index"])].spec if best is not None else (plan[0].spec if plan else None)
    counts = results["status"].value_counts().to_dict()
    best_meta = metas.get(best["name"]) if best is not None else None
    log(f"appsleuth: report on {len(results)} trial(s) of {sweep_dir}")

    context: dict[str, Any] = {"leakage": None, "note": "not measured: the sweep has no trials"}
    if spec is not None:
        log("appsleuth: measuring the split's leakage" + (" and baselines" if baselines else ""))
        context = _data_context(spec, best_meta, baselines=baselines and best is not None)
        if baselines and best is None:
            context["baselines_note"] = "not computed: no trial is complete yet"
    _say_if_baselines_missing(context, baselines, log)

    # --- header
    sweep_spec = _read_json_yaml(sweep_dir)
    executor = (sweep_spec.get("executor") or {}) if isinstance(sweep_spec, dict) else {}
    jobs = _slurm_jobs(metas.values())
    # How the trials ran (their metadata), not only what the spec asked for: a spec for
    # the local executor may have been submitted with --executor slurm, or --workers.
    if jobs:
        executor_text = f"slurm: job(s) {jobs}"
    else:
        executor_text = "local (trials ran outside SLURM)"
        threads = _value(executor.get("threads_per_trial") or 1)
        if executor.get("workers"):
            executor_text += (
                f"; the spec asks for {_value(executor['workers'])} worker(s) x {threads} thread(s)"
            )
        elif executor.get("threads_per_trial"):
            # It read "auto worker(s)": the number is sweep run's, one per core by default.
            executor_text += (
                f"; the spec asks for {threads} thread(s) per trial and leaves the number "
                f"of workers to sweep run (one per core / threads unless --workers)"
            )
    status_text = ", ".join(
        f"{counts[s]} {s}" for s in ("complete", "failed", "incomplete", "pending") if counts.get(s)
    )
    total = results["wall_time_s"].sum(min_count=1)
    split = (best_meta or {}).get("split") or (spec.data.split.to_dict() if spec else None)
    facts = [
        ("Dataset", _dataset_item(best_meta, spec) if spec else "–"),
        ("Split", _split_text(split)),
        ("Leakage", _leakage_item(context, (split or {}).get("kind"))),
        ("Trials", f"{len(results)} ({status_text or 'none planned'})"),
        ("Varied", ", ".join(varied) or "nothing (a single setting)"),
        ("Same for all trials", _fixed_text(results)),
        ("Executor", executor_text),
        ("Total compute time", f"{_duration(total)} (sum of the trials' wall times)"),
        ("Engine", _engines_text(list(metas.values()))),
        ("Hardware", _hardware_text(list(metas.values()))),
        ("Software", _software_text(list(metas.values()))),
    ]
    body: list[Any] = [
        _tag(
            "header",
            [
                _tag("h1", f"Sweep {name}"),
                _tag("p", f"{sweep_dir}", class_="muted path"),
                _dl(facts),
            ],
        )
    ]
    missing = results.loc[results["status"] != "complete"]
    if len(missing):
        states = ", ".join(f"{n} {s}" for s, n in missing["status"].value_counts().items())
        body.append(
            _note(
                f"{len(missing)} of {len(results)} trial(s) have no result yet ({states}): they "
                "are listed at the bottom of the leaderboard with their state or error, and "
                "left out of the plots. Run the sweep again to finish them (failed ones "
                "need --retry-failed).",
                "warn",
            )
        )

    tasks = {tuple(map(str, m.get("classes") or ())) for m in metas.values() if m.get("classes")}
    if len(tasks) > 1:
        # E.g. trials trained before and after a change of how a task is labelled.
        described = "; ".join(", ".join(t) for t in sorted(tasks))
        log(f"appsleuth: warning: the trials of {name} predict different classes ({described})")
        body.append(
            _note(
                f"The trials predict different sets of classes ({described}), so their "
                "accuracies do not compare directly; retrain the odd ones (--force on "
                "their run directories, or a fresh sweep).",
                "warn",
            )
        )

    # --- leaderboard
    body.append(_leaderboard(results, complete, best, varied, metas))
    seeds = summarize_seeds(results) if seeds_repeat(results) else None
    if seeds is not None:
        body.append(_seeds_section(seeds, varied, restored))

    # --- hyperparameter plots
    figures: list[Any] = []
    for param in varied:
        if len(complete):
            figures.append(
                _figure(
                    plot_metric_vs_param(results, param),
                    f"accuracy and loss against {param}",
                    f"Accuracy and loss {_epoch_words(restored)} against {param}: training "
                    "dashed with hollow markers (blue, or a light tint of a combination's "
                    "colour), validation solid (vermilion, or the combination's colour)"
                    + (
                        " (mean, std error bars and min–max band over seeds)"
                        if results.attrs.get("repeats")
                        else ""
                    )
                    + ".",
                )
            )
    if not varied:
        figures.append(_note("No hyperparameter varies in this sweep.", "muted"))
    elif not len(complete):
        figures.append(_note("No complete trial yet: nothing to plot.", "muted"))
    body.append(_section("Metrics against each hyperparameter", *figures, id_="params"))

    # --- learning curves
    histories = load_histories(sweep_dir)
    if histories:
        best_label = None
        if best is not None:
            # The label load_histories gives it: pairing trials with labels by position
            # framed the wrong panel when a complete trial's history could not be read.
            best_label = trial_label(best, varied, bool(results.attrs.get("repeats")))
        panels = _best_histories(histories, _MAX_PANELS, best_label)
        curves = [
            _figure(
                plot_learning_curves(histories),
                "learning curves of every trial",
                "Every complete trial: training dashed, validation solid.",
            ),
            _figure(
                plot_small_multiples(panels, highlight=best_label),
                "one learning curve panel per trial",
                "One panel per trial (validation accuracy solid, training dashed); the best "
                "trial is framed."
                + (
                    ""
                    if len(panels) == len(histories)
                    else f" Shown: the {len(panels)} of {len(histories)} complete trials with "
                    "the highest validation accuracy at their last epoch."
                ),
            ),
        ]
    else:
        curves = [_note("No complete trial yet: no learning curves.", "muted")]
    body.append(_section("Learning curves", *curves, id_="curves"))

    # --- best trial
    if best is not None:
        metrics = _read_json(sweep_dir / best["name"] / METRICS)
        evaluation = _evaluation_or_damage(
            metrics, sweep_dir / best["name"] / METRICS, log, best_meta
        )
        params = ", ".join(f"{p} = {_value(best[p])}" for p in varied) or "the only setting"
        body.append(
            _section(
                f"Best trial: {best['name']}",
                _tag(
                    "p",
                    f"Highest validation accuracy ({_pct(best['val_accuracy'], 2)}) with "
                    f"{params}; {_epochs_text(best_meta)}, "
                    f"{_duration(best['wall_time_s'])}.",
                ),
                *([_best_of_seeds_note(seeds, best, varied)] if seeds is not None else []),
                *(
                    [
                        _note(
                            "Each setting ran with one seed, so how much of this ranking "
                            "is seed-to-seed luck is not measured; repeats: 3 or more in "
                            "the sweep spec shows each setting's spread.",
                            "muted",
                        )
                    ]
                    if seeds is None and varied and len(complete) > 1
                    else []
                ),
                *evaluation,
                id_="best",
            )
        )
    else:
        body.append(_section("Best trial", _note("No complete trial yet.", "muted"), id_="best"))

    # --- baselines and comparison
    if baselines:
        network = None
        if best is not None:
            network = dict(_read_json(sweep_dir / best["name"] / METRICS))
            network["fit_seconds"] = best["wall_time_s"]
        body.append(
            _baselines_section(
                context,
                network,
                f"network ({best['name']})" if best is not None else "network",
                _saved_model_words(best_meta),
            )
        )
    if published is not None:
        body.append(_comparison_section(results, published, restored))
    return f"appsleuth report: sweep {name}", _join(body)


def _read_json_yaml(sweep_dir: Path) -> dict[str, Any]:
    """The sweep spec as written (``sweep.yaml``), or {} when unreadable."""
    import yaml

    from appsleuth.spec import SpecShapeError, strict_yaml_loader
    from appsleuth.sweep.store import SPEC_FILE

    try:
        text = read_record_text(sweep_dir / SPEC_FILE)
        # The loader of specs: a damaged or crafted file that expands without end or
        # nests too deep is then unreadable like any other, not a hang or a traceback.
        data = yaml.load(text, Loader=strict_yaml_loader())
    except (OSError, yaml.YAMLError, UnicodeDecodeError, SpecShapeError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


_SETTINGS = ("hidden_neurons", "learning_rate", "batch_size", "epochs", "seed")


def _shown_fixed(results: pd.DataFrame) -> list[str]:
    """Settings that are not varied but still differ between trials (e.g. repeated seeds)."""
    varied = results.attrs.get("varied") or []
    return [
        c
        for c in _SETTINGS
        if c not in varied and c in results and results[c].astype(str).nunique() > 1
    ]


def _fixed_text(results: pd.DataFrame) -> str:
    """The settings every trial shares, for the header."""
    varied = results.attrs.get("varied") or []
    shown = _shown_fixed(results)
    parts = [
        f"{c} {_value(results[c].iloc[0])}"
        for c in _SETTINGS
        if c not in varied and c not in shown and c in results and len(results)
    ]
    return ", ".join(parts) or "–"


def _leaderboard(
    results: pd.DataFrame,
    complete: pd.DataFrame,
    best: Any,
    varied: Sequence[str],
    metas: Mapping[str, Mapping[str, Any]],
) -> _Html:
    params = [*varied, *(c for c in _shown_fixed(results) if c not in varied)]
    # Early stopping that restored an earlier epoch's weights makes that epoch's numbers
    # the trial's: not the last row of its history, which a reader checks them against.
    restored = {
        name: _restored_epoch(metas.get(name)) for name in complete["name"] if metas.get(name)
    }
    epoch_column = any(r is not None for r in restored.values())
    # Runs from before operating points, and tasks without Moriarty, have none to show.
    alarm_column = (
        ALARM_POINT_COLUMNS[0] in complete and complete[ALARM_POINT_COLUMNS[0]].notna().any()
    )
    headers = [
        "#",
        "trial",
        "status",
        *params,
        *(["results epoch"] if epoch_column else []),
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "macro F1",
        f"{MALWARE_APP} recall",
        *([f"{MALWARE_APP} detection at 1 % false alarms"] if alarm_column else []),
        "fit",
        "duration",
    ]
    others = results.loc[results["status"] != "complete"]
    rows, classes, attrs = [], [], []
    for rank, (_, r) in enumerate(complete.iterrows(), start=1):
        is_best = best is not None and r["name"] == best["name"]
        rows.append(
            [
                _join([str(rank), _tag("span", " ★ best", class_="star")]) if is_best else rank,
                r["name"],
                _badge("complete"),
                *(_value(r[p]) for p in params),
                *([_results_epoch(restored.get(r["name"]), r)] if epoch_column else []),
                _num(r["loss"]),
                _num(r["accuracy"]),
                _num(r["val_loss"]),
                _tag("strong", _num(r["val_accuracy"])),
                _num(r["f1_macro"], 3),
                _pct(r["moriarty_detection_rate"]),
                *([_pct(r[ALARM_POINT_COLUMNS[0]])] if alarm_column else []),
                r["fit_diagnosis"] or "–",
                _duration(r["wall_time_s"]),
            ]
        )
        classes.append("trial best" if is_best else "trial")
        attrs.append({"data_status": "complete", "data_name": r["name"]})
    n_metric_cols = len(headers) - 3 - len(params) - int(epoch_column)
    for _, r in others.iterrows():
        state = str(r["status"])
        if state == "failed":
            detail = _join([_tag("strong", "error: "), _tag("code", r["error"] or "unknown error")])
            if not _missing(r["wall_time_s"]):
                detail = _join([detail, f" (after {_duration(r['wall_time_s'])})"])
        elif state == "incomplete":
            detail = "started but not finished: running now, or interrupted (run the sweep again)"
        else:
            detail = "not started yet"
        # The last cell (the state or error) spans the metric columns.
        rows.append(
            [
                "–",
                r["name"],
                _badge(state),
                *(_value(r[p]) for p in params),
                *(["–"] if epoch_column else []),
                detail,
            ]
        )
        classes.append(f"trial {state}")
        attrs.append({"data_status": state, "data_name": r["name"]})
    caption = (
        f"Every trial's loss and accuracy on the training and validation rows "
        f"{_epoch_words(epoch_column)}, best first, then the trials without a result."
    )
    table = _leaderboard_table(headers, rows, classes, attrs, n_metric_cols, caption)
    intro = (
        "Every trial, sorted by validation accuracy (ties: lower validation loss, "
        "then plan order), the rule that names the best trial, which is highlighted and "
        "is the one predict uses. Trials without a result follow with their state."
    )
    if alarm_column:
        intro += (
            f" {MALWARE_APP} detection at 1 % false alarms is at the threshold each trial "
            f"chose on its own validation rows, which flatters it; – where those rows could "
            f"not measure it or the run predates operating points."
        )
    if epoch_column:
        intro += (
            " Where early stopping restored an earlier epoch's weights (results epoch "
            "k of n), a trial's numbers are that epoch's, the model it saved, not the last "
            "row of its history."
        )
    return _section("Leaderboard", _tag("p", intro), table, id_="leaderboard")


def _epoch_words(restored: bool) -> str:
    """Which epoch a sweep's result columns are: "final" alone left it open."""
    if restored:
        return (
            "at each trial's results epoch (its last, or the earlier one whose weights "
            "early stopping restored)"
        )
    return "at each trial's last epoch"


def _any_restored(complete: pd.DataFrame, metas: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether early stopping restored an earlier epoch in any complete trial."""
    return any(_restored_epoch(metas.get(name)) is not None for name in complete["name"])


def _results_epoch(restored: tuple[int, int] | None, row: Any) -> str:
    """``3 of 10`` for a trial whose weights early stopping restored, else its epochs run."""
    if restored is not None:
        return f"{restored[0]} of {restored[1]}"
    return _value(row["epochs_run"])


def _seeds_section(seeds: pd.DataFrame, varied: Sequence[str], restored: bool) -> _Html:
    """Each setting's validation accuracy over its seeds: mean, spread, range."""
    rows = []
    for _, r in seeds.iterrows():
        rows.append(
            [
                *(_value(r[p]) for p in varied),
                f"{int(r['complete'])} of {int(r['trials'])}",
                _num(r["val_accuracy_mean"]),
                _num(r["val_accuracy_std"]),
                f"{_num(r['val_accuracy_min'])} – {_num(r['val_accuracy_max'])}"
                if not _missing(r["val_accuracy_min"])
                else "–",
                _num(r["val_loss_mean"]),
            ]
        )
    return _section(
        "Settings across seeds",
        _tag(
            "p",
            "Each setting's validation accuracy over its complete seeds, best mean "
            "first: the leaderboard's best trial is partly the luckiest seed, the mean and "
            "its spread (sample standard deviation) say how good a setting is.",
        ),
        _table(
            [
                *varied,
                "seeds complete",
                "val_accuracy mean",
                "std",
                "min – max",
                "val_loss mean",
            ],
            rows,
            caption=f"Each setting's validation accuracy and loss over its complete seeds "
            f"{_epoch_words(restored)}, best mean first; std: the sample standard deviation.",
            row_headers=len(varied),
            cls="numbers",
            id_="seeds-table",
        ),
        id_="seeds",
    )


def _best_of_seeds_note(seeds: pd.DataFrame, best: Any, varied: Sequence[str]) -> _Html:
    """Where the best single trial's setting stands among the settings' means."""

    def same_setting(row: Any) -> bool:
        return all(value_key(row[p]) == value_key(best[p]) for p in varied)

    ours = next(r for _, r in seeds.iterrows() if same_setting(r))
    text = (
        f"Seeds repeat in this sweep, so this trial is the best single seed; its setting "
        f"averages {_num(ours['val_accuracy_mean'])} (std {_num(ours['val_accuracy_std'])}) "
        f"over {int(ours['complete'])} seed(s)."
    )
    if not varied:
        return _note(text + " Quote that mean and spread, not this trial.", "muted")
    top = seeds.iloc[0]
    if same_setting(top):
        close = lead_within_spread(seeds)
        if close is None:
            return _note(text + " No other setting has a higher mean.", "muted")
        runner_up = ", ".join(f"{p} = {_value(seeds.iloc[1][p])}" for p in varied)
        return _note(
            text + f" Its lead over the runner-up, {runner_up} "
            f"({_num(seeds.iloc[1]['val_accuracy_mean'])}), is {_num(close[0])}: no more "
            f"than the seed-to-seed standard deviation ({_num(close[1])}), so the seeds do "
            "not tell these settings apart; run more seeds before choosing between them.",
            "warn",
        )
    setting = ", ".join(f"{p} = {_value(top[p])}" for p in varied)
    return _note(
        text + f" The best setting by mean is {setting} ({_num(top['val_accuracy_mean'])}, "
        f"std {_num(top['val_accuracy_std'])}); see Settings across seeds.",
        "warn",
    )


def _leaderboard_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    classes: Sequence[str],
    attrs: Sequence[Mapping[str, Any]],
    n_metric_cols: int,
    caption: str,
) -> _Html:
    head = _tag("thead", _tag("tr", [_column_header(h) for h in headers]))
    body = []
    for row, cls, attr in zip(rows, classes, attrs, strict=True):
        spanned = attr["data_status"] != "complete"
        # The trial's name is the row's header, which a screen reader reads with each cell.
        cells = [
            _tag("th", _breakable(c), scope="row", class_="name") if j == 1 else _tag("td", c)
            for j, c in enumerate(row[:-1] if spanned else row)
        ]
        if spanned:
            cells.append(_tag("td", row[-1], colspan=n_metric_cols, class_="detail"))
        body.append(_tag("tr", cells, class_=cls, **attr))
    return _tag(
        "div",
        _tag(
            "table",
            [_caption(caption), head, _tag("tbody", body)],
            class_="numbers",
            id="leaderboard-table",
        ),
        class_="scroll",
    )


def _column_header(header: Any) -> _Html:
    """A column's ``<th>``: on one line, but a name folds after its ``_`` and a phrase at
    its spaces (headers such as ``hidden_neurons`` and Moriarty's columns widened the
    leaderboard past the page); a long phrase keeps a readable width."""
    text = str(header)
    named = "_" in text
    # "long" for any long header, a name in it or not: "fold" alone has no minimum width.
    fold = (
        "long" if len(text) > 24 else "fold" if named or (" " in text and len(text) > 14) else None
    )
    return _tag("th", _breakable(text) if named else header, scope="col", class_=fold)


def _breakable(name: Any) -> _Html:
    """A run name the browser may fold after each ``_``, never inside a setting.

    Sweep trial names grow with every varied setting
    (``model_1H8N_lr0.003_bs64_e2_dropout0.2_activationtanh_enginefused``); unbroken,
    the name column pushed the metrics out of sight behind a horizontal scroll bar.
    """
    parts = str(name).split("_")
    return _join([_Html(_e(p + "_") + "<wbr>") for p in parts[:-1]] + [parts[-1]])


def _complete_rows(results: pd.DataFrame) -> pd.DataFrame:
    return results.loc[results["status"] == "complete"]


def _comparison_section(results: pd.DataFrame, published: pd.DataFrame, restored: bool) -> _Html:
    param = published.attrs["param"]
    table = comparison_table(results, published, param)
    epochs = ", ".join(sorted({_value(e) for e in _complete_rows(results)["epochs"]})) or "?"
    rows = []
    for _, r in table.iterrows():
        diff = r["val_accuracy_difference"]
        rows.append(
            [
                r[param],
                _num(r["ours_val_accuracy"]),
                _num(r["published_val_accuracy"]),
                "–" if _missing(diff) else f"{100 * diff:+.2f} pp",
                _num(r["ours_val_loss"]),
                _num(r["published_val_loss"]),
                int(r["n_ours"]),
                int(r["n_published"]),
            ]
        )
    return _section(
        "Comparison with published results",
        _tag(
            "p",
            f"This sweep against {published.attrs.get('source', 'the published results')} "
            f"(teaching results.csv layout), by {param}; repeated settings are averaged. "
            f"The trials of this sweep trained {epochs} epochs: compare like with like.",
        ),
        _figure(
            plot_comparison(results, published, param),
            f"validation accuracy and loss against {param}, this sweep and published",
            "This sweep solid with circles, published dashed with squares.",
        ),
        _table(
            [
                param,
                "val_accuracy (this sweep)",
                "val_accuracy (published)",
                "difference",
                "val_loss (this sweep)",
                "val_loss (published)",
                "trials",
                "published rows",
            ],
            rows,
            caption=f"Validation accuracy and loss by {param}: this sweep's trials "
            f"{_epoch_words(restored)} (a setting's seeds averaged) beside the published "
            f"results file's rows.",
            cls="numbers",
            id_="comparison-table",
        ),
        id_="comparison",
    )


# --- run report ------------------------------------------------------------------------------


def _run_report(run_dir: Path, *, baselines: bool, log: Callable[[str], None]) -> tuple[str, _Html]:
    from appsleuth.plots import plot_loss_accuracy

    status = run_status(run_dir)
    meta = read_metadata(run_dir) or {}
    spec: RunSpec | None = None
    try:
        if isinstance(meta.get("spec"), Mapping):
            spec = RunSpec.from_dict(meta["spec"])
        elif (run_dir / "spec.yaml").exists():
            from appsleuth.spec import load_run_spec

            spec = load_run_spec(run_dir / "spec.yaml")
    except AppSleuthError as exc:
        log(f"appsleuth: the run's spec cannot be read ({exc}); leakage not measured")
    context: dict[str, Any] = {"leakage": None, "note": "not measured: the run's spec is unknown"}
    if spec is not None:
        log("appsleuth: measuring the split's leakage" + (" and baselines" if baselines else ""))
        context = _data_context(spec, meta, baselines=baselines)
    _say_if_baselines_missing(context, baselines, log)
    # What the run was asked to do, where its metadata does not say: an interrupted run
    # has none, and a failed run's record leaves out the optimizer (it showed "adam").
    planned: dict[str, Any] = {}
    if spec is not None:
        planned = {
            "hidden_neurons": list(spec.model.hidden),
            "learning_rate": spec.train.learning_rate,
            "batch_size": spec.train.batch_size,
            "epochs": spec.train.epochs,
            "seed": spec.train.seed,
            "optimizer": spec.train.optimizer,
        }
    shown = {**planned, **{k: v for k, v in meta.items() if v is not None}}
    hidden = shown.get("hidden_neurons")
    epochs = _epochs_text(shown)
    if status != "complete" and not is_int(shown.get("epochs_run")) and is_int(shown.get("epochs")):
        epochs = f"{shown['epochs']} epochs planned"
    split = meta.get("split") or (spec.data.split.to_dict() if spec else None)
    facts = [
        ("Status", _badge(status)),
        ("Dataset", _dataset_item(meta, spec) if spec else meta.get("dataset", "–")),
        ("Split", _split_text(split)),
        ("Leakage", _leakage_item(context, (split or {}).get("kind"))),
        (
            "Model and training",
            f"hidden layers {hidden}, learning rate {_value(shown.get('learning_rate'))}, "
            f"batch size {_value(shown.get('batch_size'))}, {epochs}, "
            f"seed {_value(shown.get('seed'))}, {shown.get('optimizer', 'adam')} optimizer",
        ),
        (
            "Engine",
            f"{meta.get('engine', '–')} (Keras {meta.get('keras_version', '?')}, "
            f"{meta.get('backend', '?')} backend)",
        ),
        (
            "Time",
            f"{_duration(meta.get('wall_time_s'))} wall, "
            f"{_num(meta.get('seconds_per_epoch'), 3)} s per epoch",
        ),
        ("Hardware", _hardware_text([meta])),
        ("Software", software_text(meta) or "–"),
        ("SLURM job", meta.get("SLURM_JOB_ID") or "none (ran outside SLURM)"),
    ]
    body: list[Any] = [
        _tag(
            "header",
            [
                _tag("h1", f"Run {run_dir.name}"),
                _tag("p", str(run_dir), class_="muted path"),
                _dl(facts),
            ],
        )
    ]
    if status == "failed":
        body.append(
            _tag(
                "div",
                [_tag("strong", "This run failed: "), _tag("code", meta.get("error") or "unknown")],
                class_="callout failed",
            )
        )
    elif status != "complete":
        body.append(
            _note(
                "This run has not finished (no result yet): it is running, or was interrupted "
                "and is redone by running the same command again.",
                "warn",
            )
        )
    history = None
    try:
        history = read_record_table(run_dir / HISTORY)
    except (OSError, ValueError):
        history = None
    if history is not None and not history.empty and {"loss", "accuracy"} <= set(history):
        body.append(
            _section(
                "Learning curves",
                _figure(
                    plot_loss_accuracy(history),
                    "loss and accuracy against epoch",
                    "Training dashed, validation solid.",
                ),
                id_="curves",
            )
        )
    else:
        body.append(_section("Learning curves", _note("No training history.", "muted")))
    metrics = _read_json(run_dir / METRICS) if status == "complete" else {}
    if status == "complete":
        evaluation = _evaluation_or_damage(metrics, run_dir / METRICS, log, meta)
        body.append(_section("Evaluation", *evaluation, id_="evaluation"))
    if baselines:
        network = dict(metrics, fit_seconds=meta.get("wall_time_s")) if metrics else None
        body.append(
            _baselines_section(
                context, network, f"network ({run_dir.name})", _saved_model_words(meta)
            )
        )
    return f"appsleuth report: run {run_dir.name}", _join(body)


# --- page ---------------------------------------------------------------------------------------

_CSS = """
:root { --ink:#1f2933; --muted:#616e7c; --line:#d9e2ec; --bg:#ffffff; --soft:#f5f7fa;
        --accent:#2563eb; --best:#fef3c7; --bad:#b91c1c; --badbg:#fde8e8; --ok:#15803d; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--soft); color: var(--ink);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1280px; margin: 0 auto; padding: 24px 28px 48px; background: var(--bg);
       min-height: 100vh; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 10px; padding-bottom: 4px;
     border-bottom: 2px solid var(--line); }
h3 { font-size: 16px; margin: 20px 0 8px; }
/* A sweep or trial name has no spaces and may be long: fold it rather than widen the page. */
h1, h2, h3 { overflow-wrap: anywhere; }
.muted { color: var(--muted); }
.path { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 13px; margin: 0 0 14px;
        word-break: break-all; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; }
dl.facts dt { font-weight: 600; color: var(--muted); }
dl.facts dd { margin: 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { padding: 4px 7px; border-bottom: 1px solid var(--line); text-align: left;
         vertical-align: top; }
caption { caption-side: top; text-align: left; font-size: 13px; color: var(--muted);
          padding: 0 0 4px; }
/* A caption is as wide as its table: for a table wider than the page (it scrolls), the
   text ran past the scroll box's edge, cut off mid-sentence. The box's width holds it
   (a container query unit; the window's width less the margins where that is unknown). */
.scroll { container-type: inline-size; }
caption > span { display: inline-block; position: sticky; left: 0;
                 max-width: min(calc(100vw - 72px), 1224px); max-width: 100cqw; }
thead th { background: var(--soft); position: sticky; top: 0; white-space: nowrap; }
thead th.long { white-space: normal; min-width: 12ch; }
thead th.fold { white-space: normal; }
.nowrap { white-space: nowrap; }
/* A row header (the trial, app or model a row is about) reads as the row's other cells. */
tbody th { font-weight: inherit; }
table.numbers td { font-variant-numeric: tabular-nums; white-space: nowrap; }
table.numbers td.detail { white-space: normal; color: var(--muted); }
tbody tr:nth-child(even) { background: #fafbfc; }
tr.best, tr.best:nth-child(even) { background: var(--best); font-weight: 600; }
tr.best > :first-child { border-left: 4px solid #d97706; }
tr.failed > :first-child { border-left: 4px solid var(--bad); }
tr.malware, tr.malware:nth-child(even) { background: var(--badbg); font-weight: 600; }
tr.malware > :first-child { border-left: 4px solid var(--bad); }
tr.average > * { color: var(--muted); }
.name { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
table.numbers .name { white-space: normal; min-width: 24ch; }
.star { color: #b45309; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px;
       white-space: pre-wrap; word-break: break-word; }
.badge { display: inline-block; padding: 0 7px; margin-left: 6px; border-radius: 9px;
         font-size: 12px; font-weight: 600; background: var(--line); color: var(--ink); }
td > .badge:first-child { margin-left: 0; }
.badge.complete { background: #dcfce7; color: var(--ok); }
.badge.failed { background: var(--badbg); color: var(--bad); }
.badge.incomplete { background: #fef3c7; color: #92400e; }
.badge.pending, .badge.missing { background: #e5e7eb; color: #374151; }
.badge.synthetic { background: #ede9fe; color: #5b21b6; }
.callout { border-left: 4px solid var(--accent); background: #eff6ff; padding: 10px 14px;
           margin: 12px 0; border-radius: 4px; }
.callout.warn { border-color: #d97706; background: #fffbeb; }
.callout.failed, .callout.malware { border-color: var(--bad); background: var(--badbg); }
.callout.muted { border-color: var(--line); background: var(--soft); color: var(--muted); }
.callout h3 { margin: 0 0 6px; color: var(--bad); }
.stats { display: flex; flex-wrap: wrap; gap: 14px 36px; }
.stat { display: flex; flex-direction: column; }
.stat .label { font-size: 12px; text-transform: uppercase; letter-spacing: .04em;
               color: var(--muted); }
.stat .big { font-size: 26px; font-weight: 700; color: var(--bad); }
strong.warn { color: #b45309; }
.diag { font-weight: 600; }
.diag.good-fit { color: var(--ok); }
.diag.overfitting, .diag.underfitting { color: #b45309; }
figure { margin: 12px 0 20px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); background: #fff; }
figcaption { font-size: 13px; color: var(--muted); }
footer { margin-top: 40px; font-size: 12px; color: var(--muted); }
/* Paper does not scroll: a table wider than the page lost its right-hand columns
   (val_accuracy, macro F1, Moriarty's recall) to the scroll box's edge. */
@media print {
  body, main { background: #fff; }
  main { max-width: none; min-height: 0; padding: 0; }
  .scroll { overflow: visible; }
  table { font-size: 9.5px; width: 100%; }
  th, thead th { position: static; white-space: normal; overflow-wrap: anywhere; }
  th, td { padding: 2px 3px; }
  table.numbers td { white-space: normal; }
  table.numbers .name { min-width: 0; font-size: 9px; }
  tr, figure, .callout, .stats { break-inside: avoid; }
  h2, h3 { break-after: avoid; }
  /* The best trial and Moriarty keep their highlight, which browsers drop to save ink. */
  tr.best, tr.malware, .badge, .callout { print-color-adjust: exact;
                                         -webkit-print-color-adjust: exact; }
}
"""


def _page(title: str, body: _Html) -> str:
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    footer = _tag(
        "footer",
        f"Generated by appsleuth {__version__} on {generated}. Self-contained: figures are "
        "embedded, nothing is loaded from the network, and the page runs no scripts.",
    )
    # The policy forbids every script and any fetch: data URIs for images, inline CSS only.
    csp = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; "
        "form-action 'none'"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="{_GENERATOR}">\n'
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<main>\n{body}\n{footer}\n</main>\n</body>\n</html>\n"
    )


# --- entry points ----------------------------------------------------------------------------


def _kind(directory: Path) -> str:
    from appsleuth.sweep.store import MANIFEST

    if not directory.exists():
        raise DataError(f"{directory} does not exist; expected a sweep or a run directory")
    if not directory.is_dir():
        raise DataError(f"{directory} is a file; expected a sweep or a run directory")
    if (directory / MANIFEST).exists():
        return "sweep"
    if (directory / METADATA).exists() or (directory / HISTORY).exists():
        return "run"
    raise DataError(
        f"{directory} is neither a sweep directory (no {MANIFEST}) nor a run directory (no "
        f"{METADATA} or {HISTORY}); pass the directory 'appsleuth sweep run' or "
        f"'appsleuth train' created"
    )


def render_report(
    directory: str | os.PathLike[str],
    *,
    baselines: bool = False,
    compare: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> str:
    """The HTML text of the report on a sweep or run directory.

    Args:
        directory: A sweep directory (``manifest.json``) or a run directory.
        baselines: Also fit logistic regression and a decision tree on the best trial's
            split of the rows it was trained on (not computed, and the report says why,
            where those rows cannot be loaded). Defaults to False.
        compare: Published results in the teaching ``results.csv`` layout to compare a
            sweep with. Defaults to None.
        log: Where progress notes go. Defaults to stderr.

    Returns:
        One self-contained HTML document.

    Raises:
        DataError: The directory is neither a sweep nor a run, or the published results
            are unreadable or vary another hyperparameter.
        SpecError: ``compare`` given for a run directory.
    """
    from appsleuth.plots import off_screen

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    refuse_nul(directory, "directory")
    directory = Path(directory)
    kind = _kind(directory)
    published = read_published(compare) if compare is not None else None
    if kind != "sweep" and published is not None:
        raise SpecError(
            f"--compare needs a sweep directory (published results vary a "
            f"hyperparameter); {directory} is a single run"
        )
    with off_screen():  # the report's figures are embedded, never shown in a notebook
        if kind == "sweep":
            title, body = _sweep_report(
                directory, baselines=baselines, published=published, log=log
            )
        else:
            title, body = _run_report(directory, baselines=baselines, log=log)
    return _page(title, body)


_GENERATOR = "appsleuth report"


def _is_own_report(path: Path) -> bool:
    """Whether ``path`` is an HTML report appsleuth wrote (which may be replaced)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(2048)
            fh.seek(max(0, path.stat().st_size - 4096))
            tail = fh.read()
    except OSError:
        return False
    if f'<meta name="generator" content="{_GENERATOR}">'.encode() in head:
        return True
    # Reports from before the generator tag carry appsleuth's footer.
    return head.startswith(b"<!DOCTYPE html>") and b"Generated by appsleuth" in tail


def write_report(
    directory: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str] | None = None,
    baselines: bool = False,
    compare: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Write the report of a sweep or run directory (see :func:`render_report`).

    Args:
        directory: A sweep or run directory.
        out: The HTML file. Defaults to ``directory/report.html``.
        baselines: Add classical baselines. Defaults to False.
        compare: Published results to compare with. Defaults to None.
        log: Where progress notes go. Defaults to stderr.

    Returns:
        The path written (atomically: a reader never sees half a report).

    Raises:
        DataError: ``out`` is a directory, not an ``.html`` name, holds a NUL character,
            or is an existing file that is not an appsleuth report (checked before
            anything is computed).
    """
    from appsleuth._atomic import atomic_write_text

    refuse_nul(out, "out")
    path = Path(out) if out is not None else Path(directory) / REPORT
    if path.is_dir():
        raise DataError(f"--out {path} is a directory; pass a file name such as {path / REPORT}")
    if path.suffix.lower() not in (".html", ".htm"):
        raise DataError(f"--out must name an .html file; received {path.name!r}")
    if path.exists() and not _is_own_report(path):
        raise DataError(
            f"--out {path} exists and is not a report appsleuth wrote; refusing to overwrite "
            f"it (choose another file name)"
        )
    if Path(directory).is_dir():  # otherwise render_report says what is wrong with it
        _check_writable(path)  # before the minutes a report with baselines may take
    text = render_report(directory, baselines=baselines, compare=compare, log=log)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path


def _check_writable(path: Path) -> None:
    """Refuse an ``--out`` whose directory cannot take a new file, naming why."""
    import tempfile

    where = path.parent
    while not where.exists() and where != where.parent:
        where = where.parent  # the directories below it are made when the report is written
    if not where.is_dir():
        raise DataError(f"--out {path} cannot be written: {where} is not a directory")
    try:
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as exc:
        raise DataError(
            f"--out {path} cannot be written: {where} does not take new files "
            f"({exc.strerror or exc}); choose another place"
        ) from exc
