"""The ``appsleuth`` command line.

Errors caused by the user (an :class:`~appsleuth.errors.AppSleuthError`) are printed as
one paragraph on stderr with exit code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import math
import os
import shlex
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from appsleuth._fields import MAX_SEED, MIN_EMBEDDED_ROWS
from appsleuth._interrupt import raise_if_dropped, sigterm_interrupts
from appsleuth._version import __version__
from appsleuth.data.layouts import LABEL_COLUMN
from appsleuth.errors import AppSleuthError, AppSleuthWarning, DataError, SpecError

__all__ = ["cli", "main"]

_SPLITS = ("random", "blocked", "group")


def _csv_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",")]
    if not all(items):
        raise click.BadParameter(
            f"expected a comma-separated list without empty items; received {value!r}"
        )
    return items


def _split_options(f: Any) -> Any:
    options = [
        click.option(
            "--split",
            "split_kind",
            type=click.Choice(_SPLITS),
            default="random",
            show_default=True,
            help="How validation rows are chosen.",
        ),
        click.option(
            "--val-fraction",
            type=float,
            default=0.2,
            show_default=True,
            help="Share of rows for validation.",
        ),
        click.option(
            "--test-fraction",
            type=float,
            default=0.0,
            show_default=True,
            help="Share of rows held out for a final test.",
        ),
        click.option(
            "--split-seed",
            # The range here, so that the error names --split-seed rather than "seed" (the
            # field), which reads as train's --seed.
            type=click.IntRange(0, MAX_SEED),
            default=34,
            show_default=True,
            help="Seed of the split (34 is the teaching material's).",
        ),
        click.option(
            "--group-column",
            default="UserId",
            show_default=True,
            help="Column whose groups stay together in a group split.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _data_options(f: Any) -> Any:
    options = [
        click.option(
            "--label", default="ApplicationName", show_default=True, help="The label column."
        ),
        click.option(
            "--features",
            callback=_csv_list,
            default=None,
            metavar="A,B,...",
            help="Feature columns to use (default: the layout's features).",
        ),
        click.option(
            "--encoding", default="utf-8", show_default=True, help="Text encoding of a CSV file."
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _split_spec(
    kind: str, val_fraction: float, test_fraction: float, seed: int, group_column: str
) -> Any:
    from appsleuth.data.split import SplitSpec

    return SplitSpec(
        kind=kind,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
        group_column=group_column,
    )


def _load(
    path: str | None,
    *,
    label: str,
    features: list[str] | None,
    encoding: str,
    rows: int | None = None,
    require_label: bool = True,
    single_class: bool = False,
) -> Any:
    from appsleuth.data.load import load_sherlock
    from appsleuth.data.tables import embedded_data

    if path is None:
        df = embedded_data(rows)
        if features:
            from appsleuth.data.prepare import select_features

            df = select_features(df, features)
        return df
    return load_sherlock(
        path,
        label=label,
        features=features,
        encoding=encoding,
        require_label=require_label,
        single_class=single_class,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="appsleuth")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Identify smartphone apps, and the malware among them, from SherLock telemetry."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


@cli.group()
def data() -> None:
    """Inspect, clean and generate data: check, clean, synth."""


@data.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--rows",
    type=click.IntRange(min=1),
    default=None,
    help="Rows of embedded data when FILE is omitted (default: 273,129).",
)
@_data_options
@_split_options
def data_check(
    file: Path | None,
    as_json: bool,
    rows: int | None,
    label: str,
    features: list[str] | None,
    encoding: str,
    split_kind: str,
    val_fraction: float,
    test_fraction: float,
    split_seed: int,
    group_column: str,
) -> None:
    """Report on the quality of FILE (default: the embedded synthetic data).

    Rows, classes and imbalance (Moriarty called out), missing, empty and constant
    columns, negative counters, duplicates, near-duplicate time structure and the
    leakage rate of the chosen split, each with a recommendation.
    """
    from appsleuth.data.quality import check_data

    ctx = click.get_current_context()
    if (
        split_kind != "group"
        and ctx.get_parameter_source("group_column") is not click.core.ParameterSource.DEFAULT
    ):
        # As train says: the leakage reported would be a random or blocked split's.
        raise SpecError(
            f"--group-column applies to the group split; received --group-column "
            f"{group_column} with --split {split_kind} (add --split group)"
        )
    split = _split_spec(split_kind, val_fraction, test_fraction, split_seed, group_column)
    # A report is most useful where training would refuse the file (one class, no label),
    # but a label column named on purpose must exist (a typo is not "no label").
    source = ctx.get_parameter_source("label")
    # Each of these options applies to one data source only: ignoring it would report on
    # other data than the user asked for, as train refuses the same mix.
    if file is not None and rows is not None:
        raise SpecError(
            f"--rows sets the size of the embedded data; a data file is used whole: "
            f"received FILE {file} with --rows {rows} (leave one out)"
        )
    if file is None and label != _EMBEDDED_LABEL:
        raise SpecError(_label_without_file(label, "--label"))
    if (
        file is None
        and ctx.get_parameter_source("encoding") is not click.core.ParameterSource.DEFAULT
    ):
        raise SpecError(
            f"--encoding is the text encoding of a CSV FILE, and no FILE was given: received "
            f"--encoding {encoding} for the embedded data (add the file, or leave it out)"
        )
    if file is not None:
        _progress_note(f"reading {file} ({_size_text(file)})")
    df = _load(
        str(file) if file else None,
        label=label,
        features=features,
        encoding=encoding,
        rows=rows,
        require_label=source is not click.core.ParameterSource.DEFAULT,
        single_class=True,
    )
    if file is not None and label not in df.columns:
        click.echo(
            f"note: {file} has no label column {label!r} (--label names another); the "
            f"report covers the features only",
            err=True,
        )
    # Tens of seconds on a file of millions of rows: say what is going on meanwhile.
    _progress_note(f"checking {len(df):,} rows x {len(df.columns):,} columns")
    report = check_data(df, split=split)
    if as_json:
        click.echo(report.to_json())
    else:
        report.render()


def _progress_note(message: str) -> None:
    """A progress line on stderr, for a person at a terminal (logs and pipes stay clean)."""
    if sys.stderr.isatty():
        click.echo(f"appsleuth: {message} ...", err=True)


def _size_text(path: Path) -> str:
    try:
        size = path.stat().st_size
    except OSError:
        return "size unknown"
    return f"{size / 2**20:,.1f} MB" if size >= 2**20 else f"{size:,} bytes"


@data.command("synth")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output file: .csv, .csv.gz or .parquet.",
)
@click.option(
    "--rows", type=click.IntRange(min=1), default=273_129, show_default=True, help="Number of rows."
)
@click.option(
    "--apps",
    callback=_csv_list,
    default=None,
    metavar="A,B,...",
    help="Only these apps (e.g. Facebook,WhatsApp).",
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Generator seed."
)
@click.option("--with-ids", is_flag=True, help="Add the raw-layout UserId and UUID columns.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def data_synth(
    out: Path, rows: int, apps: list[str] | None, seed: int, with_ids: bool, force: bool
) -> None:
    """Generate synthetic SherLock-like data (the embedded default data) into a file."""
    from appsleuth.data.layouts import APPS_18
    from appsleuth.data.synth import check_row_count, generate_sherlock
    from appsleuth.data.tables import write_table

    if out.exists() and not force:
        raise AppSleuthError(f"output file {out} already exists; pass --force to overwrite it")
    check_row_count("--rows", rows)
    chosen = list(dict.fromkeys(apps)) if apps else list(APPS_18)
    # Unknown names are the generator's to report, with the valid ones.
    known = all(a in APPS_18 for a in chosen)
    if known and len(chosen) < 2:
        times = f", given {len(apps)} times" if apps and len(apps) > 1 else ""
        raise SpecError(
            f"--apps names one app ({chosen[0]}{times}); a file of one app teaches a "
            f"classifier nothing: name at least two"
        )
    if known and rows < len(chosen):
        raise SpecError(
            f"--rows {rows} is fewer than the {len(chosen)} apps asked for, so some apps "
            f"would have no row; use --rows {len(chosen)} or more"
        )
    df = generate_sherlock(rows, apps=apps, seed=seed, with_ids=with_ids)
    path = write_table(df, out, force=force)
    counts = df["ApplicationName"].value_counts()
    click.echo(f"wrote {len(df):,} synthetic rows ({len(counts)} apps, seed {seed}) to {path}")


_IMPUTE_NOTE = (
    "missing values are filled from the whole table (there is no split here), validation "
    "rows included; train imputes from its training rows only (data: {missing: impute} in "
    "a --config spec, on the uncleaned file), which keeps validation rows out of the fill "
    "values"
)


@data.command("clean")
@click.argument("input_file", metavar="INPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("output", metavar="OUTPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--missing",
    type=click.Choice(["drop", "impute"]),
    default="drop",
    show_default=True,
    help="Rows with a missing (or infinite) feature value: drop them, or impute them with "
    "each feature's median (most frequent value for categories) over the whole table "
    "(train imputes from its training rows only).",
)
@click.option(
    "--drop-duplicates",
    is_flag=True,
    help="Also drop exact duplicate rows (label and features); kept by default, since "
    "SherLock's duplicates are real repeated samples.",
)
@click.option("--keep-empty-columns", is_flag=True, help="Keep features with no value at all.")
@click.option("--keep-constant-columns", is_flag=True, help="Keep features with a single value.")
@_data_options
@click.option("--json", "as_json", is_flag=True, help="Print the cleaning report as JSON.")
@click.option("--force", is_flag=True, help="Overwrite an existing OUTPUT (never INPUT).")
def data_clean(
    input_file: Path,
    output: Path,
    missing: str,
    drop_duplicates: bool,
    keep_empty_columns: bool,
    keep_constant_columns: bool,
    label: str,
    features: list[str] | None,
    encoding: str,
    as_json: bool,
    force: bool,
) -> None:
    """Clean INPUT as training does and write the table to OUTPUT (.csv, .csv.gz, .parquet).

    Drops all-missing and constant feature columns, then rows with a missing or infinite
    feature value (or imputes them: --missing impute), and optionally exact duplicate
    rows; prints each step. OUTPUT keeps the label, id and kept feature columns, and is
    written under a temporary name, then renamed.

    --missing impute fills from the whole table here, as there is no split yet; train
    (data: {missing: impute} in a spec) fills from the training rows only, so for honest
    validation numbers train on the uncleaned file instead.
    """
    import json

    from appsleuth.data.clean import clean_sherlock
    from appsleuth.data.load import load_sherlock
    from appsleuth.data.tables import check_table_output, write_table

    if _same_file(input_file, output):
        raise AppSleuthError(
            f"OUTPUT {output} is INPUT {input_file}; cleaning never overwrites its input: "
            f"name another output file"
        )
    # Before reading: a large file is not cleaned only for its output to be refused.
    check_table_output(output, force=force)
    _progress_note(f"reading {input_file} ({_size_text(input_file)})")
    df = load_sherlock(
        input_file, label=label, features=features, encoding=encoding, single_class=True
    )
    cleaned, report = clean_sherlock(
        df,
        drop_empty_columns=not keep_empty_columns,
        drop_constant_columns=not keep_constant_columns,
        missing=missing,  # type: ignore[arg-type]
        drop_duplicates=drop_duplicates,
    )
    path = write_table(cleaned, output, force=force)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "input": str(input_file),
                    "output": str(path),
                    "missing": missing,
                    **report.to_dict(),
                    "note": _IMPUTE_NOTE if missing == "impute" else None,
                },
                indent=2,
            )
        )
        return
    click.echo(
        f"cleaned {input_file}: {report.rows_before:,} -> {report.rows_after:,} rows, "
        f"{len(report.features_before)} -> {len(report.features_after)} features"
    )
    for step in report.steps:
        detail = step.detail
        if step.action == "one-hot encode":
            # The file keeps the categories as text: the encoding is the training's.
            detail += f" (at training; {output.name} keeps {step.columns[0]} as text)"
        click.echo(f"  {step.action}: {detail}")
    if missing == "impute":
        click.echo(f"note: {_IMPUTE_NOTE}")
    click.echo(f"wrote {len(cleaned):,} rows x {len(cleaned.columns)} columns to {path}")


def _same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (through links too, where both exist)."""
    try:
        return a.samefile(b)
    except OSError:  # one of them does not exist (yet)
        return a.resolve() == b.resolve()


def _int_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is not None and not value.strip():
        return []  # as an empty list in a spec (model.hidden: [], no hidden layer)
    items = _csv_list(ctx, param, value)
    if items is None:
        return None
    try:
        return [int(v) for v in items]
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated integers such as 18 or 18,18; received {value!r}"
        ) from None


# The label column of the embedded data (a spec without a data file reads that data).
_EMBEDDED_LABEL: str = LABEL_COLUMN  # DataSpec's default label


def _label_without_file(label: str, where: str) -> str:
    """The message for a label column named without a data file to take it from."""
    return (
        f"{where} names the label column of a data file, and no data file was given: "
        f"received label {label!r} for the embedded data, whose label column is "
        f"{_EMBEDDED_LABEL} (add the data file, or leave the label out)"
    )


def _check_not_a_frame_run(config: Path, spec: Any) -> Any:
    """Refuse a run's spec.yaml whose run was trained in Python on a data frame that the
    spec cannot name.

    Such a spec records no data file (``path: null``), which reads as the embedded
    synthetic data at the size the spec names: retraining from it would silently swap the
    run's real rows for generated ones, or its generated rows (``embedded_data(60000)``)
    for others (the default 273,129). A frame that is the spec's own embedded data (the
    demo's) passes: its data fingerprint is the run's.

    Returns:
        The spec's data, prepared, where telling the frame apart took preparing it (for
        the command to train on, instead of preparing it again); else None.
    """
    from appsleuth.run import read_metadata

    # None: not a run's spec (or an unreadable record), and the spec says what to read.
    metadata = read_metadata(config.parent)
    if metadata is None:
        return None
    source = metadata.get("data_source")
    # Runs written before data_source was recorded: only a real frame is known as one.
    from_frame = source.get("kind") == "data frame" if isinstance(source, dict) else None
    # Real rows are never the embedded data, whatever data_source says: train(spec,
    # prepared=prepare_data(frame)) records no frame (it is given none), only its rows.
    if metadata.get("synthetic") is False:
        raise SpecError(
            f"{config} is the spec of a run trained in Python on a data frame "
            f"({metadata.get('dataset')!s}), so it names no data file and would train on the "
            f"embedded synthetic data instead: add --data FILE (or --rows N for the "
            f"embedded data)"
        )
    if not from_frame:
        return None
    from appsleuth.run import data_fingerprint, load_data, prepare_run_data

    there = metadata.get("data_fingerprint")
    prepared = prepare_run_data(spec, load_data(spec), from_spec=True)
    here = data_fingerprint(prepared)
    if here == there:
        return prepared
    rows = source.get("rows")
    held = f"{rows:,} rows of " if isinstance(rows, int) and not isinstance(rows, bool) else ""
    size = f"{spec.data.rows:,} rows" if spec.data.rows is not None else "its default size"
    raise SpecError(
        f"{config} is the spec of a run trained in Python on a data frame ({held}"
        f"{metadata.get('dataset')!s}) that is not the data the spec names (the embedded "
        f"data at {size}: data fingerprint {here}, the run's {there}), so retraining from it "
        f"would train on other rows: add --rows N (e.g. --rows {rows} for "
        f"embedded_data({rows})) or --data FILE (the frame written with write_table)"
    )


def _check_run_data_file(config: Path, path: str) -> None:
    """Name the file a run read when its spec.yaml's relative data path reads another here.

    A relative path is read from the directory the command runs in, and the run may have
    run in another: its metadata records the file it read. Missing here, that file is
    named in the error; another file of that name here is trained on, with a warning.
    """
    from appsleuth.run import read_metadata

    if Path(path).is_absolute():
        return
    source = (read_metadata(config.parent) or {}).get("data_source")
    there = source.get("path") if isinstance(source, dict) else None
    if not isinstance(there, str):
        return
    if Path(path).exists():
        here = os.path.abspath(path)
        if here != there:
            warnings.warn(
                AppSleuthWarning(
                    f"data file {path} is {here} here, but the run of {config} read {there} "
                    f"(a relative path is read from the directory the command runs in); "
                    f"training on {here}: add --data {shlex.quote(there)} to train on the "
                    f"run's file"
                ),
                stacklevel=2,
            )
        return
    if not Path(there).is_file():
        return
    raise DataError(
        f"data file {path} does not exist in {Path.cwd()}: {config} gives it relative to "
        f"the directory its run was trained from, where it was {there}; run from there, or "
        f"add --data {shlex.quote(there)}"
    )


def _run_spec_from_options(config: Path | None, overrides: dict[str, dict[str, Any]]) -> Any:
    return _run_spec_and_data(config, overrides)[0]


def _run_spec_and_data(
    config: Path | None, overrides: dict[str, dict[str, Any]]
) -> tuple[Any, Any]:
    """The run spec of ``--config`` and the options, and its data if checking it took
    preparing it (a run's spec.yaml of a data frame; see _check_not_a_frame_run), else
    None."""
    from appsleuth.spec import RunSpec, load_run_spec

    base = load_run_spec(config).to_dict() if config else RunSpec().to_dict()
    # --data and --rows each choose the data source: the one given replaces the config's
    # other (a run's spec.yaml records rows of embedded data, which a file cannot take).
    given = overrides.get("data", {})
    if given.get("path") is not None and given.get("rows") is None:
        base["data"]["rows"] = None
    if given.get("rows") is not None and given.get("path") is None:
        base["data"]["path"] = None
    for section, values in overrides.items():
        for key, value in values.items():
            if value is None:
                continue
            if section == "split":
                base["data"]["split"][key] = value
            elif isinstance(value, dict) and isinstance(base[section].get(key), dict):
                # e.g. --early-stopping sets the patience, keeping the config's monitor
                base[section][key] = {**base[section][key], **value}
            else:
                base[section][key] = value
    spec = RunSpec.from_dict(base)
    prepared = None
    if config is not None and spec.data.path is None and given.get("rows") is None:
        prepared = _check_not_a_frame_run(config, spec)
    if config is not None and spec.data.path is not None and given.get("path") is None:
        _check_run_data_file(config, spec.data.path)
    if spec.data.path is None and spec.data.label != _EMBEDDED_LABEL:
        # The embedded data always has its own label column: the label would be ignored.
        where = "--label" if overrides.get("data", {}).get("label") else "the config's data.label"
        raise SpecError(_label_without_file(spec.data.label, where))
    group_column = overrides.get("split", {}).get("group_column")
    if group_column is not None and spec.data.split.kind != "group":
        raise SpecError(
            f"--group-column applies to the group split; received --group-column "
            f"{group_column} with split {spec.data.split.kind!r} (add --split group)"
        )
    return spec, prepared


def _backend_options(f: Any) -> Any:
    options = [
        click.option(
            "--threads",
            type=click.IntRange(min=1),
            default=None,
            help="Cores to use (default: all available: SLURM_CPUS_PER_TASK in a job, the CPU "
            "quota in a container).",
        ),
        click.option(
            "--device",
            type=click.Choice(["auto", "cpu", "gpu"]),
            default="auto",
            show_default=True,
            help="Where the model runs.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _configure_backend(threads: int | None, device: str) -> None:
    # Must run before Keras is imported: thread pools and devices are fixed at start-up.
    from appsleuth.hardware import configure_backend

    configure_backend(threads=threads, device=device)


def _task_options(f: Any) -> Any:
    options = [
        click.option(
            "--data",
            "data_path",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Data file (default: the embedded synthetic data).",
        ),
        click.option(
            "--label",
            default=None,
            help="The label column of --data (default: ApplicationName).",
        ),
        click.option(
            "--rows",
            type=click.IntRange(min=MIN_EMBEDDED_ROWS),
            default=None,
            help="Rows of embedded data (default: 273,129).",
        ),
        click.option(
            "--features",
            callback=_csv_list,
            default=None,
            metavar="A,B,...",
            help="Train on these feature columns only.",
        ),
        click.option(
            "--apps",
            callback=_csv_list,
            default=None,
            metavar="A,B,...",
            help="Only these apps (two make a binary task).",
        ),
        click.option(
            "--positive",
            default=None,
            metavar="APP",
            help="One app against all others, e.g. Moriarty.",
        ),
        click.option(
            "--split",
            "split_kind",
            type=click.Choice(_SPLITS),
            default=None,
            help="How validation rows are chosen (default: random).",
        ),
        click.option(
            "--val-fraction",
            type=float,
            default=None,
            help="Share of rows for validation (default: 0.2).",
        ),
        click.option(
            "--test-fraction",
            type=float,
            default=None,
            help="Share of rows held out for a final test (default: 0).",
        ),
        click.option(
            "--group-column",
            default=None,
            help="Column whose groups stay together in a group split (default: UserId).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _data_overrides(
    data_path: Path | None,
    label: str | None,
    rows: int | None,
    features: list[str] | None,
    apps: list[str] | None,
    positive: str | None,
    split_kind: str | None,
    val_fraction: float | None,
    test_fraction: float | None,
    group_column: str | None,
) -> dict[str, dict[str, Any]]:
    return {
        "data": {
            "path": str(data_path) if data_path else None,
            "label": label,
            "rows": rows,
            "features": features,
            "apps": apps,
            "positive": positive,
        },
        "split": {
            "kind": split_kind,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "group_column": group_column,
        },
    }


@cli.command()
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A run spec in YAML or JSON (sections data, model, train); options override it.",
)
@click.option(
    "--hidden",
    callback=_int_list,
    default=None,
    metavar="N[,N...]",
    help="Hidden layer widths: 18, or 18,18 for two layers; '' for none, as hidden: [] "
    "in a spec (default: 18).",
)
@click.option(
    "--lr", "learning_rate", type=float, default=None, help="Learning rate (default: 0.0003)."
)
@click.option("--batch-size", type=int, default=None, help="Batch size (default: 32).")
@click.option("--epochs", type=int, default=None, help="Epochs (default: 30; at most 1,000,000).")
@click.option("--seed", type=int, default=None, help="Seed (default: 0).")
@click.option(
    "--optimizer",
    type=click.Choice(["adam", "sgd", "rmsprop", "adamw"]),
    default=None,
    help="Optimizer (default: adam).",
)
@click.option(
    "--dropout", type=float, default=None, help="Dropout after each hidden layer (default: 0)."
)
@click.option(
    "--class-weight",
    type=click.Choice(["none", "balanced"]),
    default=None,
    help="Weight classes by inverse frequency (default: none).",
)
@click.option(
    "--early-stopping",
    "patience",
    type=click.IntRange(min=0),
    default=None,
    metavar="PATIENCE",
    help="Stop after PATIENCE epochs without improvement (of val_loss, or of the "
    "config's early_stopping.monitor; default: no early stopping).",
)
@click.option(
    "--engine",
    type=click.Choice(["auto", "fused", "fit"]),
    default=None,
    help="Training engine (default: fused on JAX, else fit).",
)
@_backend_options
@_task_options
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Experiment directory; the run directory goes inside.",
)
@click.option("--name", default=None, help="Run directory name (default: from the spec).")
@click.option("--force", is_flag=True, help="Retrain over a complete run.")
@click.option("--quiet", is_flag=True, help="No per-epoch lines and no table.")
def train(
    config: Path | None,
    hidden: list[int] | None,
    learning_rate: float | None,
    batch_size: int | None,
    epochs: int | None,
    seed: int | None,
    optimizer: str | None,
    dropout: float | None,
    class_weight: str | None,
    patience: int | None,
    engine: str | None,
    data_path: Path | None,
    label: str | None,
    rows: int | None,
    features: list[str] | None,
    apps: list[str] | None,
    positive: str | None,
    split_kind: str | None,
    val_fraction: float | None,
    test_fraction: float | None,
    group_column: str | None,
    out: Path,
    name: str | None,
    force: bool,
    quiet: bool,
    threads: int | None,
    device: str,
) -> None:
    """Train one model and write its run directory.

    The teaching material's four hyperparameters are options
    (--hidden 18 --lr 0.0003 --batch-size 32 --epochs 30); everything else can come
    from --config run.yaml.
    """
    _configure_backend(threads, device)
    from appsleuth.run import train as train_run

    overrides = _data_overrides(
        data_path,
        label,
        rows,
        features,
        apps,
        positive,
        split_kind,
        val_fraction,
        test_fraction,
        group_column,
    )
    overrides["model"] = {"hidden": hidden, "dropout": dropout}
    overrides["train"] = {
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "epochs": epochs,
        "seed": seed,
        "optimizer": optimizer,
        "class_weight": class_weight,
        "engine": engine,
        "early_stopping": {"patience": patience} if patience is not None else None,
    }
    spec, prepared = _run_spec_and_data(config, overrides)
    result = train_run(
        spec, out=out, name=name, force=force, verbose=False if quiet else None, prepared=prepared
    )
    if not quiet:
        _print_metrics(result.metrics, title=f"validation metrics of {result.run_dir.name}")


def _print_metrics(metrics: dict[str, Any], *, title: str) -> None:
    from appsleuth.display import print_metrics

    print_metrics(metrics, title=title)


@cli.command()
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A run spec in YAML or JSON, as train takes: its data section (file, label, apps, "
    "split, missing) is used; options override it.",
)
@_task_options
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def baselines(
    config: Path | None,
    data_path: Path | None,
    label: str | None,
    rows: int | None,
    features: list[str] | None,
    apps: list[str] | None,
    positive: str | None,
    split_kind: str | None,
    val_fraction: float | None,
    test_fraction: float | None,
    group_column: str | None,
    as_json: bool,
) -> None:
    """Logistic regression and a decision tree on the same split, for comparison.

    With --config run.yaml they use the data and split that train --config run.yaml
    uses (the spec's model and train sections do not apply).
    """
    import json

    from appsleuth.baselines import BASELINES, run_baselines
    from appsleuth.run import load_data, prepare_run_data

    overrides = _data_overrides(
        data_path,
        label,
        rows,
        features,
        apps,
        positive,
        split_kind,
        val_fraction,
        test_fraction,
        group_column,
    )
    spec, prepared = _run_spec_and_data(config, overrides)
    if prepared is None:
        prepared = prepare_run_data(spec, load_data(spec))
    results: dict[str, Any] = {}
    for name in BASELINES:
        # Logistic regression takes over a minute on the full table, which looked stuck.
        _progress_note(f"fitting {name} on {len(prepared.x_train):,} training rows")
        results.update(run_baselines(prepared, which=name))
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    from appsleuth.display import operating_point_lines

    for name, metrics in results.items():
        _print_metrics(
            metrics,
            title=f"{name} ({spec.data.split.kind} split, fitted in "
            f"{metrics['fit_seconds']:.1f} s)",
        )
        for line in operating_point_lines(metrics):
            click.echo(line)


@cli.command()
@_backend_options
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("data", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Predictions CSV (default: <DATA name>.predictions.csv here).",
)
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="How many most likely apps to list per row.",
)
@click.option(
    "--chunk-rows",
    type=click.IntRange(min=1),
    default=200_000,
    show_default=True,
    help="Rows read and predicted at a time.",
)
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of a CSV file.")
@click.option("--force", is_flag=True, help="Overwrite an existing predictions file.")
@click.option(
    "--alarm-threshold",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="Flag a row as Moriarty (moriarty_alarm) when its moriarty_score is at least this "
    "(default: none, no alarm column).",
)
@click.option(
    "--alarm-false-rate",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="Flag rows at the threshold the run chose for this false-alarm rate on its "
    "validation rows (one its metrics.json records: 0.1, 0.01 or 0.001; default: none).",
)
def predict(
    run_dir: Path,
    data: Path,
    out: Path | None,
    top_k: int,
    chunk_rows: int,
    encoding: str,
    force: bool,
    alarm_threshold: float | None,
    alarm_false_rate: float | None,
    threads: int | None,
    device: str,
) -> None:
    """Classify DATA with the model of RUN_DIR (or the best run of a sweep directory).

    Writes one row per predicted input row: row id, predicted app, its probability, the
    top-k apps, Moriarty's probability (moriarty_score) when the model knows it, and, when
    DATA has labels, whether the prediction was right (accuracy and the per-class table
    are printed then). With --alarm-threshold or --alarm-false-rate, moriarty_alarm flags
    the rows whose score reaches the threshold, and with labels the detection and
    false-alarm rates at it are printed. Rows with missing or infinite values are
    filled with the run's fill values if it was trained with missing: impute; otherwise
    they are skipped, counted and their row ids listed beside the predictions (--out
    preds.csv: preds.skipped.csv).
    """
    import sys

    _configure_backend(threads, device)
    from appsleuth.predict import predict_file

    out = out or Path(f"{_data_stem(data.name)}.predictions.csv")
    summary = predict_file(
        run_dir,
        data,
        out,
        top_k=top_k,
        chunk_rows=chunk_rows,
        force=force,
        progress=sys.stderr.isatty(),
        encoding=encoding,
        alarm_threshold=alarm_threshold,
        alarm_false_rate=alarm_false_rate,
    )
    click.echo(
        f"predicted {summary.predicted:,} of {summary.rows:,} rows with "
        f"{summary.run_dir} -> {summary.out}"
    )
    if summary.skipped:
        click.echo(
            f"skipped {summary.skipped:,} rows with missing, infinite or out-of-range feature "
            f"values; their row ids are in {summary.skipped_file}"
        )
    if summary.filled:
        click.echo(
            f"filled missing or infinite feature values in {summary.filled:,} predicted rows "
            f"with the run's fill values (it was trained with missing='impute')"
        )
    if summary.unknown_label_rows:
        scored = "left out of the metrics" if summary.metrics else "so no metrics are shown"
        click.echo(
            f"{summary.unknown_label_rows:,} predicted rows are labelled with apps the model "
            f"was not trained on ({', '.join(summary.unknown_labels)}"
            f"{', ...' if len(summary.unknown_labels) == 10 else ''}); {scored}"
        )
    if summary.unlabelled_rows:
        scored = "left out of the metrics" if summary.metrics else "so no metrics are shown"
        click.echo(f"{summary.unlabelled_rows:,} predicted rows have no label; {scored}")
    if summary.metrics is not None:
        if summary.metrics["n"] < summary.rows:
            # Accuracy over fewer rows than the file holds must say which rows it covers.
            click.echo(
                f"metrics over {summary.metrics['n']:,} of the {summary.rows:,} rows: the "
                f"predicted rows labelled with an app the model knows"
            )
        _print_metrics(summary.metrics, title=f"metrics on {data.name}")
    if summary.alarm is not None:
        from appsleuth.display import alarm_line

        click.echo(alarm_line(summary.alarm))


def _data_stem(name: str) -> str:
    """A data file's name without its format suffixes (``m.2016.csv.gz`` -> ``m.2016``)."""
    for suffix in (".csv.gz", ".csv", ".parquet", ".gz"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


@cli.group()
def sweep() -> None:
    """Hyperparameter sweeps: plan, run, status, cancel, collect, worker, examples."""


@sweep.command("examples")
@click.argument(
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("examples") / "sweeps",
    required=False,
)
def sweep_examples(directory: Path) -> None:
    """Write the teaching material's four studies as sweep specs into DIRECTORY.

    The specs the README runs as examples/sweeps/<study>.yaml, for an installed appsleuth
    (a source checkout has them already). DIRECTORY defaults to examples/sweeps; a file
    there that exists already is kept as it is.
    """
    from appsleuth.demo import write_teaching_studies

    for path, written in write_teaching_studies(directory):
        click.echo(f"{path}" + ("" if written else " (exists; kept as it is)"))


@sweep.command("plan")
@click.argument("spec_file", type=click.Path(dir_okay=False, path_type=Path))
def sweep_plan(spec_file: Path) -> None:
    """List the trials SPEC_FILE plans, in order (index = SLURM array index, plus the
    array's offset in a sweep past MaxArraySize)."""
    from rich.console import Console
    from rich.table import Table

    from appsleuth.sweep.space import load_sweep_spec
    from appsleuth.sweep.store import check_data_names

    spec = load_sweep_spec(spec_file)
    plan = spec.plan()
    # Planning is how a spec is checked before it is run: a label, feature or app the data
    # lacks is named now. A data file missing here is not an error (it may be where the
    # sweep runs); 'sweep run' names it.
    here = all(t.spec.data.path is None or Path(t.spec.data.path).is_file() for t in plan)
    check_data_names(plan, files=here)
    what = f"{len(plan)} trials" if len(plan) != 1 else "1 trial"
    if not spec.varied():
        what += " (no search: the base settings)"
    from appsleuth.display import plain_text

    table = Table(title=f"sweep {spec.name}: {what}", title_justify="left")
    table.add_column("index", justify="right")
    # Whole names, folded onto more lines (as in the trials table): cut short, the names
    # of a sweep varying several settings all read "model_1H18N_lr0.0003_bs32_e30_…".
    table.add_column("run directory", overflow="fold")
    for name in spec.varied():
        table.add_column(name)
    for t in plan:
        params = (plain_text(t.params.get(n)) for n in spec.varied())
        table.add_row(str(t.index), t.name, *params)
    Console().print(table)


def _slurm_int(value: str | None) -> int | str | None:
    # Digits become an int; anything else reaches SlurmOptions as is, whose SpecError
    # names the field and the value received.
    text = value.strip() if value is not None else ""
    return int(text) if text.isascii() and text.isdigit() else value


def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    # FloatRange lets nan through (no comparison holds) and inf (above any minimum).
    if not math.isfinite(value):
        raise click.BadParameter(f"expected a finite number of seconds; received {value}")
    return value


@sweep.command("run")
@click.argument("spec_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Parent of the sweep directory (DIR/<name>).",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "slurm"]),
    default=None,
    help="Where trials run (default: the spec's executor.kind).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="local: worker processes (default: one per core / threads per trial).",
)
@click.option(
    "--threads-per-trial",
    type=click.IntRange(min=1),
    default=None,
    help="Cores each trial uses (default: the spec's, else 1).",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "gpu"]),
    default=None,
    help="Where each trial trains (default: the spec's executor.device, else auto).",
)
@click.option("--retry-failed", is_flag=True, help="Redo trials that failed before.")
# The SLURM options default to the spec's executor settings, else to SlurmOptions' defaults.
@click.option(
    "--partition", default=None, help="slurm: partition (default: the spec's, else the cluster's)."
)
@click.option("--account", default=None, help="slurm: account (default: the spec's, else none).")
@click.option(
    "--qos", default=None, help="slurm: quality of service (default: the spec's, else none)."
)
@click.option(
    "--time-min",
    default=None,
    help="slurm: time limit per trial, minutes (default: the spec's, else 60).",
)
@click.option(
    "--mem-gb",
    type=float,
    default=None,
    help="slurm: memory per trial, GB (default: the spec's, else the cluster's).",
)
@click.option("--gpus", default=None, help="slurm: GPUs per trial (default: the spec's, else 0).")
@click.option(
    "--array-parallelism",
    default=None,
    help="slurm: at most this many trials at once (default: the spec's, else no limit).",
)
@click.option("--dry-run", is_flag=True, help="slurm: write and print the job script only.")
@click.option(
    "--wait", is_flag=True, help="slurm: follow the jobs to the end, then collect results."
)
@click.option(
    "--poll-seconds",
    type=click.FloatRange(min=0.1),
    callback=_finite,
    default=5.0,
    show_default=True,
    help="slurm: seconds between two squeue calls with --wait.",
)
@click.pass_context
def sweep_run(
    ctx: click.Context,
    spec_file: Path,
    out: Path,
    executor: str | None,
    workers: int | None,
    threads_per_trial: int | None,
    device: str | None,
    retry_failed: bool,
    partition: str | None,
    account: str | None,
    qos: str | None,
    time_min: str | None,
    mem_gb: float | None,
    gpus: str | None,
    array_parallelism: str | None,
    dry_run: bool,
    wait: bool,
    poll_seconds: float,
) -> None:
    """Run every trial of SPEC_FILE that is not complete yet (safe to re-run).

    With the slurm executor: submit one job array of the trials neither complete nor
    queued/running (several, where their numbers pass the cluster's MaxArraySize), and
    return (or follow them with --wait).
    """
    from appsleuth.sweep.local import SweepInterrupted, run_local
    from appsleuth.sweep.space import load_sweep_spec
    from appsleuth.sweep.store import collect_results, prepare_sweep_dir, read_plan, trial_states
    from appsleuth.sweep.worker import RUNNING_ELSEWHERE

    spec = load_sweep_spec(spec_file)
    kind = executor or spec.executor.kind
    slurm_flags = {
        "partition": partition,
        "account": account,
        "qos": qos,
        "time_min": _slurm_int(time_min),
        "mem_gb": mem_gb,
        "gpus": _slurm_int(gpus),
        "array_parallelism": _slurm_int(array_parallelism),
    }
    polling = ctx.get_parameter_source("poll_seconds") is not click.core.ParameterSource.DEFAULT
    if kind == "slurm":
        if dry_run and wait:
            raise SpecError(
                "--wait follows the submitted jobs, and --dry-run submits none: received "
                "both (leave one out)"
            )
        if polling and not wait:
            raise SpecError(
                f"--poll-seconds sets how often --wait asks squeue; received --poll-seconds "
                f"{poll_seconds:g} without --wait (add --wait, or leave it out)"
            )
        if workers is not None:
            raise SpecError(
                f"--workers applies to the local executor only; received --workers {workers} "
                f"with the slurm executor, which runs one array task per trial "
                f"(--array-parallelism limits how many run at once)"
            )
        if spec.executor.workers is not None:
            click.echo(
                f"note: the spec's executor workers={spec.executor.workers} applies to the "
                f"local executor only; on SLURM each trial is an array task "
                f"(array_parallelism limits how many run at once)",
                err=True,
            )
        _sweep_run_slurm(
            ctx,
            spec,
            out,
            {k: v for k, v in slurm_flags.items() if v is not None},
            threads_per_trial=threads_per_trial,
            device=device or spec.executor.device,
            retry_failed=retry_failed,
            dry_run=dry_run,
            wait=wait,
            poll_seconds=poll_seconds,
        )
        return
    given = [k for k, v in slurm_flags.items() if v is not None]
    given += [k for k, v in (("dry_run", dry_run), ("wait", wait), ("poll_seconds", polling)) if v]
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        verb = "applies" if len(given) == 1 else "apply"
        raise SpecError(f"{flags} {verb} to the slurm executor only; add --executor slurm")
    sweep_dir = prepare_sweep_dir(spec, out)
    try:
        summary = run_local(
            sweep_dir,
            workers=workers or spec.executor.workers,
            threads_per_trial=threads_per_trial or spec.executor.threads_per_trial,
            retry_failed=retry_failed,
            device=device or spec.executor.device,
        )
    except SweepInterrupted as exc:
        summary = exc.summary  # collected and shown below, then exit 130
    plan = read_plan(sweep_dir)
    states = trial_states(sweep_dir, plan=plan)
    collect_results(sweep_dir, states=states)
    _print_sweep_table(sweep_dir, plan, states)
    elsewhere = summary.count(RUNNING_ELSEWHERE)
    click.echo(
        f"sweep {spec.name}: {summary.count('complete')} trained, {summary.count('skipped')} "
        f"already complete, {summary.failed} failed, "
        + (f"{elsewhere} being trained by another process, " if elsewhere else "")
        + f"in {summary.wall_s:.1f} s "
        + (
            f"with {summary.workers} worker(s) x {summary.threads_per_trial} thread(s) "
            if summary.workers
            else ""
        )
        + f"-> {sweep_dir}"
    )
    held_back = summary.count("failed-before")
    if held_back:
        # A re-run does not redo failed trials by itself: say so, or the user re-runs
        # again and again wondering why the failure stays.
        click.echo(
            f"{held_back} trial(s) that failed before were not run again; add --retry-failed "
            f"to redo them",
            err=True,
        )
    if elsewhere:
        click.echo(
            f"{elsewhere} trial(s) were being trained by another process (another sweep run "
            f"on this directory); 'appsleuth sweep status {_shell_quote(str(sweep_dir))}' shows "
            f"when they finish",
            err=True,
        )
    if summary.interrupted:
        click.echo(
            "interrupted: run the same command again to finish the remaining trials", err=True
        )
        ctx.exit(130)
    if summary.failed:
        ctx.exit(1)


def _sweep_run_slurm(
    ctx: click.Context,
    spec: Any,
    out: Path,
    overrides: dict[str, Any],
    *,
    threads_per_trial: int | None,
    device: str,
    retry_failed: bool,
    dry_run: bool,
    wait: bool,
    poll_seconds: float,
) -> None:
    from appsleuth.sweep.slurm import (
        ACTIVE,
        SlurmOptions,
        check_submission,
        compress_indices,
        submit_slurm,
        wait_slurm,
    )
    from appsleuth.sweep.store import collect_results, prepare_sweep_dir

    options = SlurmOptions.from_options(
        {**spec.executor.options, **overrides},
        threads_per_trial=threads_per_trial or spec.executor.threads_per_trial,
    )
    # Before the directory is written: a submission refused now leaves nothing behind.
    check_submission(Path(out) / spec.name, options, device)
    sweep_dir = prepare_sweep_dir(spec, out).absolute()
    sub = submit_slurm(
        sweep_dir, options, retry_failed=retry_failed, dry_run=dry_run, device=device
    )
    held_back = sum(1 for s in sub.states if s.status == "failed" and s.index not in sub.indices)
    if held_back:
        nothing = (
            f"nothing to submit: {held_back} failed trial(s) not resubmitted (add "
            f"--retry-failed to redo them); the others are complete or queued"
        )
    else:
        nothing = "nothing to submit (every trial is complete or queued)"
    if dry_run:
        click.echo(sub.script_text, nl=False)
        if not sub.indices:
            click.echo(f"dry run: wrote {sub.script}; {nothing}", err=True)
            return
        # Ranges: a list of thousands of trial numbers would bury the command.
        if len(sub.arrays) == 1:
            click.echo(
                f"dry run: wrote {sub.script}; would submit {len(sub.indices)} trial(s) "
                f"({compress_indices(sub.indices)}) with: "
                f"{' '.join(map(_shell_quote, sub.command))}",
                err=True,
            )
            return
        click.echo(
            f"dry run: wrote {sub.script}; would submit {len(sub.indices)} trial(s) as "
            f"{len(sub.arrays)} job arrays ({_array_limit(sub.max_array_size)}) with:",
            err=True,
        )
        for array in sub.arrays:
            click.echo(
                f"  {' '.join(map(_shell_quote, array.command))}   "
                f"# trials {compress_indices(array.indices)}",
                err=True,
            )
        return
    if sub.job_ids:
        n = len(sub.job_ids)
        if n == 1:
            jobs = f"SLURM job {sub.job_id}"
        else:
            jobs = "SLURM jobs " + ", ".join(
                f"{a.job_id} (trials {compress_indices(a.indices)})" for a in sub.arrays
            )
            jobs += f": {_array_limit(sub.max_array_size)}"
        click.echo(
            f"sweep {spec.name}: submitted {len(sub.indices)} trial(s) as {jobs} ({sub.script})"
        )
        busy = sorted(
            {s.job_id.split("_")[0] for s in sub.states if s.status in ACTIVE and s.job_id},
            key=int,
        )
        if options.array_parallelism and (busy or n > 1):
            # %K throttles one job array; SLURM has no limit across arrays.
            k = options.array_parallelism
            ours = f"job {sub.job_id}" if n == 1 else f"these {n} job arrays"
            beside = (
                f"job(s) {', '.join(busy)} of this sweep still have trials queued or running; "
                if busy
                else ""
            )
            click.echo(
                f"note: {beside}array_parallelism={k} limits each job array on its own, so up "
                f"to {k * n} trials of {ours} may run {'beside them' if busy else 'at once'}",
                err=True,
            )
    else:
        click.echo(f"sweep {spec.name}: {nothing}")
    if wait:
        try:
            wait_slurm(sweep_dir, poll_s=poll_seconds)
        except KeyboardInterrupt:
            click.echo(
                "stopped waiting; the jobs go on in SLURM ('appsleuth sweep status' follows "
                "them, 'appsleuth sweep cancel' stops them)",
                err=True,
            )
            ctx.exit(130)
        collect_results(sweep_dir)
    states = _print_slurm_table(sweep_dir)
    if any(s.status in ("failed", "cancelled") for s in states) and (
        wait or any(s.status == "failed" and s.ran and s.index not in sub.indices for s in states)
    ):
        ctx.exit(1)


def _array_limit(max_array_size: int | None) -> str:
    """Why a submission is several job arrays: the cluster's limit on array indices."""
    return (
        f"this cluster's job arrays take indices 0..{(max_array_size or 0) - 1} only "
        f"(MaxArraySize={max_array_size}); task i of an array with offset k runs trial k + i"
    )


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


_RESULT_COLUMNS = ("val_accuracy", "val_loss", "time")
# Shown only where some trial's metrics.json recorded Moriarty's operating points.
_ALARM_COLUMN = "Moriarty detection at 1 % false alarms"


def _trials_table(sweep_dir: Path, columns: tuple[str, ...]) -> Any:
    """An empty rich table of a sweep's trials with these columns (numbers right-aligned)."""
    from rich.table import Table

    from appsleuth.display import plain_text

    # The path as it is: "[...]" in a directory name is no markup.
    table = Table(title=plain_text(f"trials of {sweep_dir}"), title_justify="left")
    for col in columns:
        table.add_column(
            col,
            justify="right" if col in ("#", *_RESULT_COLUMNS, _ALARM_COLUMN) else "left",
            # Whole names, folded onto more lines: their ends tell the trials apart.
            overflow="fold" if col == "run" else "ellipsis",
        )
    return table


def _result_cells(st: Any) -> tuple[str, str, str]:
    """A trial's cells under _RESULT_COLUMNS (empty where it has no result yet)."""
    acc, loss = st.last("val_accuracy"), st.last("val_loss")
    return (
        f"{acc:.4f}" if acc is not None else "",
        f"{loss:.4f}" if loss is not None else "",
        f"{st.duration_s:.1f} s" if st.duration_s else "",
    )


def _alarm_points(sweep_dir: Path, states: Sequence[Any]) -> dict[str, dict[str, float | None]]:
    """Each complete trial's detection rate and threshold at 1 % false alarms (metrics.json)."""
    from appsleuth.evaluate import alarm_point_columns
    from appsleuth.run import METRICS, read_json_object

    return {
        st.name: alarm_point_columns(read_json_object(sweep_dir / st.name / METRICS) or {})
        for st in states
        if st.status == "complete"
    }


def _alarm_fields(sweep_dir: Path, st: Any) -> dict[str, float | None]:
    """The 1 % false-alarm columns of one trial for --json (None until it is complete)."""
    from appsleuth.evaluate import ALARM_POINT_COLUMNS

    found = _alarm_points(sweep_dir, [st]).get(st.name)
    return dict(found) if found else dict.fromkeys(ALARM_POINT_COLUMNS)


def _alarm_column(alarms: dict[str, dict[str, float | None]]) -> tuple[str, ...]:
    """(_ALARM_COLUMN,) where some trial recorded it, else () (older runs, no Moriarty)."""
    from appsleuth.evaluate import ALARM_POINT_COLUMNS

    recorded = any(v[ALARM_POINT_COLUMNS[0]] is not None for v in alarms.values())
    return (_ALARM_COLUMN,) if recorded else ()


def _alarm_cells(
    alarms: dict[str, dict[str, float | None]], name: str, column: tuple[str, ...]
) -> tuple[str, ...]:
    """A trial's cell under ``column`` (:func:`_alarm_column`; none where that is empty)."""
    from appsleuth.evaluate import ALARM_POINT_COLUMNS

    if not column:
        return ()
    detection = (alarms.get(name) or {}).get(ALARM_POINT_COLUMNS[0])
    return (f"{detection:.3f}" if detection is not None else "",)


def _print_slurm_table(sweep_dir: Path) -> list[Any]:
    from rich.console import Console

    from appsleuth.sweep.slurm import count_states, slurm_states
    from appsleuth.sweep.store import read_plan

    plan = read_plan(sweep_dir)
    states = slurm_states(sweep_dir, on_error=_warn, plan=plan)
    alarms = _alarm_points(sweep_dir, states)
    alarm_column = _alarm_column(alarms)
    table = _trials_table(sweep_dir, ("#", "run", "state", "job", *_RESULT_COLUMNS, *alarm_column))
    colours = {
        "complete": "green",
        "failed": "red",
        "cancelled": "magenta",
        "running": "yellow",
        "pending": "cyan",
        "unsubmitted": "dim",
        "unknown": "yellow",
    }
    for st in states:
        table.add_row(
            str(st.index),
            st.name,
            f"[{colours[st.status]}]{st.status}[/]",
            st.job_id or "",
            *_result_cells(st),
            *_alarm_cells(alarms, st.name, alarm_column),
        )
    Console().print(table)
    counts = count_states(states)
    click.echo(", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    for st in states:
        if st.status == "failed":
            # An error from the job itself already says which output file to read.
            shown = st.log and str(st.log) not in (st.error or "")
            log = f" (SLURM output: {st.log})" if shown else ""
            click.echo(f"  {st.name} failed: {st.error}{log}", err=True)
    _print_seed_summary(sweep_dir, plan)
    return states


def _print_seed_summary(
    sweep_dir: Path, plan: Any = None, states: Sequence[Any] | None = None
) -> None:
    """Each setting's validation accuracy over its seeds, where a sweep repeats seeds.

    The best trial of such a sweep is partly its luckiest seed: the spread over seeds
    says whether one setting's lead over another means anything. ``plan`` and
    ``states`` (:func:`~appsleuth.sweep.store.trial_states`) are the caller's, where it
    has read them: reading them again doubled the time of ``sweep status``.
    """
    from rich.console import Console
    from rich.table import Table

    from appsleuth.analysis import (
        format_value,
        lead_within_spread,
        load_results,
        seeds_repeat,
        summarize_seeds,
    )
    from appsleuth.display import plain_text
    from appsleuth.sweep.store import read_plan

    if plan is None:
        plan = read_plan(sweep_dir)
    if len({trial.spec.train.seed for trial in plan}) < 2:
        return  # one seed throughout: nothing repeats (and no run directory need be read)
    results = load_results(sweep_dir, plan=plan, states=states)
    varied = list(results.attrs.get("varied") or [])
    if not seeds_repeat(results):
        return
    seeds = summarize_seeds(results)
    if seeds["val_accuracy_mean"].isna().all():
        return  # no complete trial yet
    table = Table(
        title=plain_text("settings across seeds (validation accuracy, best mean first)"),
        title_justify="left",
    )
    for col in (*varied, "seeds", "mean ± sd", "min – max"):
        table.add_column(col, justify="left" if col in varied else "right")

    def num(x: Any) -> str:
        return "" if x != x else f"{x:.4f}"

    for _, r in seeds.iterrows():
        sd = (
            ""
            if r["val_accuracy_std"] != r["val_accuracy_std"]
            else f" ± {num(r['val_accuracy_std'])}"
        )
        table.add_row(
            *(plain_text(format_value(r[p])) for p in varied),
            f"{int(r['complete'])} of {int(r['trials'])}",
            num(r["val_accuracy_mean"]) + sd if r["complete"] else "",
            f"{num(r['val_accuracy_min'])} – {num(r['val_accuracy_max'])}" if r["complete"] else "",
        )
    Console().print(table)
    close = lead_within_spread(seeds)
    if close is not None:
        first, second = (
            ", ".join(f"{p}={format_value(seeds.iloc[i][p])}" for p in varied) for i in (0, 1)
        )
        _warn(
            f"the best setting ({first}) leads the runner-up ({second}) by {close[0]:.4f} "
            f"in mean validation accuracy, no more than the seed-to-seed standard deviation "
            f"({close[1]:.4f}): the seeds do not tell them apart; run more seeds before "
            f"choosing"
        )


def _warn(message: str) -> None:
    click.echo(f"appsleuth: warning: {message}", err=True)


def _print_sweep_table(
    sweep_dir: Path, plan: Any = None, states: Sequence[Any] | None = None
) -> list[Any]:
    from rich.console import Console

    from appsleuth.sweep.store import read_plan, trial_states

    if plan is None or states is None:
        plan = read_plan(sweep_dir)
        states = trial_states(sweep_dir, plan=plan)
    alarms = _alarm_points(sweep_dir, states)
    alarm_column = _alarm_column(alarms)
    table = _trials_table(sweep_dir, ("#", "run", "state", *_RESULT_COLUMNS, *alarm_column))
    colours = {
        "complete": "green",
        "failed": "red",
        "running": "yellow",
        "incomplete": "yellow",
        "pending": "dim",
    }
    for st in states:
        # Incomplete is either being trained now or interrupted: the run's lock tells.
        shown = "running" if st.running else st.status
        table.add_row(
            str(st.index),
            st.name,
            f"[{colours[shown]}]{shown}[/]",
            *_result_cells(st),
            *_alarm_cells(alarms, st.name, alarm_column),
        )
    Console().print(table)
    for st in states:
        if st.status == "failed":
            click.echo(f"  {st.name} failed: {st.error}", err=True)
    _print_seed_summary(sweep_dir, plan, states)
    return states


@sweep.command("status")
@click.argument("sweep_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the states as JSON.")
def sweep_status(sweep_dir: Path, as_json: bool) -> None:
    """Show the state of every trial of SWEEP_DIR (SLURM sweeps: with their jobs)."""
    import json

    from appsleuth.sweep.slurm import is_slurm_sweep, slurm_states
    from appsleuth.sweep.store import trial_states

    if is_slurm_sweep(sweep_dir):
        if not as_json:
            # SLURM's states say "complete" as trial_states does: no need to read them again.
            _say_if_results_behind(sweep_dir, _print_slurm_table(sweep_dir))
            return
        rows = [
            {
                "index": s.index,
                "name": s.name,
                "status": s.status,
                "params": s.params,
                "last_results": (s.metadata or {}).get("last_results"),
                "wall_time_s": s.duration_s,
                "error": s.error,
                "job_id": s.job_id,
                "log": str(s.log) if s.log else None,
                **_alarm_fields(sweep_dir, s),
            }
            for s in slurm_states(sweep_dir, on_error=_warn)
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    if as_json:
        rows = [
            {
                "index": s.index,
                "name": s.name,
                "status": s.status,
                "running": s.running,
                "params": s.params,
                "last_results": (s.metadata or {}).get("last_results"),
                "wall_time_s": s.duration_s,
                "error": s.error,
                **_alarm_fields(sweep_dir, s),
            }
            for s in trial_states(sweep_dir)
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    _say_if_results_behind(sweep_dir, _print_sweep_table(sweep_dir))


def _say_if_results_behind(sweep_dir: Path, states: Sequence[Any] | None = None) -> None:
    from appsleuth.sweep.store import results_behind

    behind = results_behind(sweep_dir, states)
    if behind:
        click.echo(
            f"results.csv does not include {behind} complete trial(s) yet: run "
            f"'appsleuth sweep collect {_shell_quote(str(sweep_dir))}' to bring it up to date",
            err=True,
        )


@sweep.command("cancel")
@click.argument("sweep_dir", type=click.Path(file_okay=False, path_type=Path))
def sweep_cancel(sweep_dir: Path) -> None:
    """Cancel the queued and running SLURM jobs of SWEEP_DIR (scancel)."""
    from appsleuth.sweep.slurm import cancel_slurm, is_slurm_sweep
    from appsleuth.sweep.store import read_plan

    read_plan(sweep_dir)  # a clear error when this is not a sweep directory
    if not is_slurm_sweep(sweep_dir):
        raise AppSleuthError(
            f"{sweep_dir} has no SLURM submissions to cancel (a local sweep stops with Ctrl-C)"
        )
    job_ids = cancel_slurm(sweep_dir)
    if job_ids:
        click.echo(f"cancelled SLURM job(s) {', '.join(job_ids)}")
    else:
        click.echo("nothing to cancel: no trial of this sweep is queued or running")


@sweep.command("collect")
@click.argument("sweep_dir", type=click.Path(file_okay=False, path_type=Path))
def sweep_collect(sweep_dir: Path) -> None:
    """Write results.csv (teaching layout) and results_full.csv in SWEEP_DIR."""
    from appsleuth.sweep.store import collect_results, read_plan, trial_states

    plan = read_plan(sweep_dir)
    states = trial_states(sweep_dir, plan=plan)
    results, full = collect_results(sweep_dir, states=states)
    click.echo(f"wrote {results} and {full}")
    _print_seed_summary(sweep_dir, plan, states)


@sweep.command("worker")
@_backend_options
@click.argument("sweep_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--index",
    type=int,
    required=True,
    help="The array task id: the trial's index, less --index-offset where one is given.",
)
@click.option(
    "--index-offset",
    type=int,
    default=0,
    help="Added to --index: the offset of a job array of a sweep past MaxArraySize (default: 0).",
)
@click.option("--retry-failed", is_flag=True, help="Redo the trial if it failed before.")
@click.pass_context
def sweep_worker(
    ctx: click.Context,
    sweep_dir: Path,
    index: int,
    index_offset: int,
    retry_failed: bool,
    threads: int | None,
    device: str,
) -> None:
    """Run trial INDEX (+ INDEX_OFFSET) of SWEEP_DIR (what each SLURM array task runs)."""
    if index_offset:
        # Before the backend starts: a wrong offset is known without it.
        index = _offset_trial(sweep_dir, index, index_offset)
    _configure_backend(threads, device)  # in a job: its SLURM_CPUS_PER_TASK by default
    from appsleuth.sweep.worker import run_trial

    outcome = run_trial(sweep_dir, index, retry_failed=retry_failed)
    click.echo(
        f"trial {outcome.index} {outcome.name}: {outcome.status}"
        + (f" ({outcome.error})" if outcome.error else "")
    )
    if outcome.status in ("failed", "failed-before"):
        ctx.exit(1)


def _offset_trial(sweep_dir: Path, index: int, offset: int) -> int:
    """The trial that array task ``index`` of an array with ``offset`` runs, checked."""
    from appsleuth.sweep.store import plan_size

    if offset < 0:
        raise SpecError(
            f"--index-offset must be a non-negative integer; received --index-offset={offset}"
        )
    n = plan_size(sweep_dir)
    if index < 0 or index + offset >= n:
        valid = f"; --index must be in 0..{n - 1 - offset} for this offset" if offset < n else ""
        raise AppSleuthError(
            f"--index {index} with --index-offset {offset} is trial {index + offset}, but "
            f"the plan of {sweep_dir} has trials 0..{n - 1}{valid} (a task of another "
            f"sweep's job array, or a plan changed since it was submitted?)"
        )
    return index + offset


@cli.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Output directory.",
)
@click.option(
    "--full", is_flag=True, help="Run the four complete teaching studies (22 trials x 30 epochs)."
)
@click.option(
    "--rows",
    type=click.IntRange(min=500),
    default=None,
    help="Rows of embedded data (default: 273,129).",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Epochs of the baseline and the short scan.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes of the scan (default: one per core).",
)
def demo(out: Path, full: bool, rows: int | None, epochs: int, workers: int | None) -> None:
    """Show the whole workflow on the embedded synthetic data.

    Data check and the leakage lesson, the baseline trained with the fused engine and
    evaluated, a short hidden-neuron scan, the HTML report, and a mystery sample
    classified. Re-running reuses what is already complete.
    """
    from appsleuth.demo import run_demo

    run_demo(out, full=full, rows=rows, epochs=epochs, workers=workers)


@cli.command("report")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The HTML file to write.  [default: DIRECTORY/report.html]",
)
@click.option(
    "--baselines",
    is_flag=True,
    help="Also fit logistic regression and a decision tree on the best trial's split.",
)
@click.option(
    "--compare",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Published results (teaching results.csv layout) to compare the sweep with.",
)
def report_command(
    directory: Path, out: Path | None, baselines: bool, compare: Path | None
) -> None:
    """Write a self-contained HTML report on a sweep or run DIRECTORY and print its path.

    The report has the data and split (with its leakage rate), a leaderboard of every
    trial (failed and unfinished ones included), metric-vs-hyperparameter plots,
    learning curves, and the best trial's confusion matrix and per-app table with
    Moriarty's detection and false-alarm rates. It embeds its figures and runs no
    scripts: open it in any browser, offline.
    """
    from appsleuth.report import write_report

    path = write_report(
        directory,
        out=out,
        baselines=baselines,
        compare=compare,
        log=lambda msg: click.echo(msg, err=True),
    )
    click.echo(str(path))


def _register_commands() -> None:
    # Commands that live next to what they drive; their modules import nothing heavy, so
    # that --help and every other command start fast (a test checks what they import).
    from appsleuth.bench import bench_command
    from appsleuth.info import info_command

    for command in (info_command, bench_command):
        cli.add_command(command)


_register_commands()


def _os_error_text(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return f"{reason}; check the paths and the free space of the output location"
    where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "")
    hint = ""
    if isinstance(exc, NotADirectoryError | FileExistsError):
        hint = " (a part of this path is an existing file, not a directory)"
    return f"cannot use {where}: {reason}{hint}"


def _out_of_memory(exc: BaseException) -> str | None:
    """The first line of an out-of-memory error, or None for other errors.

    NumPy's ``MemoryError``, XLA's RESOURCE_EXHAUSTED (JAX), TensorFlow's
    ``ResourceExhaustedError`` and PyTorch's ``OutOfMemoryError`` (a GPU) or the
    ``RuntimeError`` of its CPU allocator; matched by name, as neither backend is
    imported here unless it is the one in use.
    """
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    name = type(exc).__name__
    if isinstance(exc, MemoryError) or name in ("ResourceExhaustedError", "OutOfMemoryError"):
        return text
    if name in ("JaxRuntimeError", "XlaRuntimeError") and "RESOURCE_EXHAUSTED" in text:
        return text
    if isinstance(exc, RuntimeError) and "DefaultCPUAllocator: can't allocate memory" in text:
        # torch's text starts with the C++ check that failed; the rest says it plainly.
        return text[text.index("DefaultCPUAllocator") :]
    return None


def _show_warning(message: Any, category: type, filename: str, lineno: int, *rest: Any) -> None:
    """appsleuth's own warnings as one line for people; others as Python prints them."""
    if issubclass(category, AppSleuthWarning):
        click.echo(f"appsleuth: warning: {message}", err=True)
    else:
        _python_show_warning(message, category, filename, lineno, *rest)


_python_show_warning = warnings.showwarning


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 success, 1 failure, 2 user error, 130 interrupted)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    previous_show = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        # SIGTERM's default ends the process at once: a train --force would leave the
        # complete run it replaces set aside. As an interrupt, Ctrl-C's clean-up runs.
        with sigterm_interrupts():
            return _main(args, debug)
    finally:
        warnings.showwarning = previous_show


def _main(args: list[str], debug: bool) -> int:
    try:
        # Outside standalone mode click returns ctx.exit()'s code instead of exiting.
        code = cli.main(args=args, prog_name="appsleuth", standalone_mode=False)
        if code in (0, None):
            # A SIGTERM or Ctrl-C that Python dropped after the command's last check (say
            # after a local sweep's last poll) still ends it as interrupted, not as done.
            raise_if_dropped()
    except click.exceptions.Abort:
        click.echo("appsleuth: interrupted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except AppSleuthError as exc:
        if debug:
            raise
        kind = "invalid setting" if isinstance(exc, SpecError) else "error"
        click.echo(f"appsleuth: {kind}: {exc}", err=True)
        return 2
    except OSError as exc:
        # A path that cannot be read or written (a file where a directory should be, no
        # permission, a full disk): say which, without a traceback.
        if debug:
            raise
        click.echo(f"appsleuth: error: {_os_error_text(exc)}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("appsleuth: interrupted", err=True)
        return 130
    except Exception as exc:
        # Sizes beyond this machine's memory (a huge layer, --rows, a batch on the GPU)
        # surface as NumPy's or the backend's out-of-memory error: say so plainly.
        detail = _out_of_memory(exc)
        if detail is None or debug:
            raise
        click.echo(
            f"appsleuth: error: out of memory: {detail}; use smaller sizes (--rows, "
            "hidden layer widths, --batch-size) or a machine with more memory",
            err=True,
        )
        return 2
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
