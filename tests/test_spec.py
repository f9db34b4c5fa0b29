"""Spec validation (every error names the field and the value) and round trips."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appsleuth.data.split import SplitSpec
from appsleuth.errors import SpecError
from appsleuth.spec import (
    DataSpec,
    EarlyStoppingSpec,
    ModelSpec,
    RunSpec,
    TrainSpec,
    format_learning_rate,
    load_run_spec,
)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden": [0]}, r"hidden must be a list of positive layer widths .*hidden=\[0\]"),
        ({"hidden": "18"}, r"hidden must be a list .*received hidden='18'"),
        ({"hidden": [18.5]}, r"received hidden=\[18.5\]"),
        ({"activation": "relu6"}, r"activation must be one of relu, .*received activation='relu6'"),
        ({"dropout": 1.0}, r"dropout must be a number in \[0, 1\); received dropout=1.0"),
        ({"dropout": [0.1, 0.2]}, r"dropout must be one rate or one per hidden layer \(1\)"),
        ({"batch_norm": "yes"}, r"batch_norm must be true or false; received batch_norm='yes'"),
        ({"kernel_initializer": ""}, r"kernel_initializer must be a Keras initializer name"),
        (
            {"hidden": [10**17]},
            r"hidden layer widths must keep each layer under 1,099,511,627,776 weights \(4 TiB "
            r"as float32, .*a layer of 100,000,000,000,000,000 after at least 1 input",
        ),
        (
            {"hidden": [2**21, 2**20]},
            r"a layer of 1,048,576 after a layer of 2,097,152 would hold 2,199,023,255,552; "
            r"received hidden=\[2097152, 1048576\]",
        ),
    ],
)
def test_model_spec_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        ModelSpec(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"learning_rate": "fast"},
            r"learning_rate must be a positive number; received "
            r"learning_rate='fast'",
        ),
        ({"learning_rate": 0}, r"received learning_rate=0"),
        (
            {"learning_rate": "3e-4"},
            r"received learning_rate='3e-4' \(it is text: YAML reads a number like 3e-4 "
            r"without a decimal point as a string; write 0.0003 instead\)",
        ),
        # The suggested spelling must be one YAML reads as a number (1e-12 is text there).
        (
            {"learning_rate": "1e-12"},
            r"received learning_rate='1e-12' \(it is text: .*; write 1\.0e-12 instead\)",
        ),
        ({"learning_rate": "2e+20"}, r"; write 2\.0e\+20 instead\)"),
        ({"learning_rate": "1.5e-5"}, r"; write 1\.5e-05 instead\)"),
        ({"seed": 2**32}, r"an integer from 0 to 4294967295; received seed=4294967296"),
        ({"learning_rate": float("nan")}, r"received learning_rate=nan"),
        (
            {"optimizer": "lbfgs"},
            r"optimizer must be one of adam, sgd, rmsprop, adamw; "
            r"received optimizer='lbfgs'",
        ),
        ({"batch_size": 0}, r"batch_size must be a positive integer; received batch_size=0"),
        ({"batch_size": True}, r"received batch_size=True"),
        ({"epochs": 2.5}, r"epochs must be a positive integer; received epochs=2.5$"),
        # 10**20 trained, then overflowed results_full.csv's integer columns (a traceback).
        (
            {"epochs": 10**12},
            r"epochs must be at most 1,000,000 \(to train until early stopping ends the run, "
            r"that is as good as more\); received epochs=1000000000000$",
        ),
        (
            {"batch_size": 10**20},
            r"batch_size must be at most 2,147,483,647 \(a batch larger than the training "
            r"rows takes them all\); received batch_size=100000000000000000000$",
        ),
        # Whole numbers in the wrong form get a hint that names the accepted form.
        (
            {"epochs": "1"},
            r"received epochs='1' \(it is text; write 1, without quotes or a decimal point\)",
        ),
        ({"epochs": 1.0}, r"received epochs=1.0 \(write 1, without a decimal point\)"),
        ({"batch_size": "1e3"}, r"received batch_size='1e3' \(it is text; write 1000, "),
        ({"epochs": "1e400"}, r"received epochs='1e400' \(it is text, and not a finite number\)"),
        ({"learning_rate": "1e999"}, r"learning_rate='1e999' \(it is text, and not a finite"),
        ({"seed": -3}, r"seed must be an integer from 0 to 4294967295; received seed=-3"),
        ({"momentum": 1.5}, r"momentum must be a number in \[0, 1\)"),
        ({"weight_decay": 0.1}, r"weight_decay applies to optimizer adamw only"),
        ({"optimizer": "adamw", "weight_decay": -1}, r"weight_decay must be a non-negative"),
        ({"loss": "mse"}, r"loss must be one of auto, .*received loss='mse'"),
        ({"metrics": ["auc"]}, r"metrics must include accuracy"),
        ({"metrics": ["f2"]}, r"metrics must be one of accuracy, .*received metrics='f2'"),
        ({"class_weight": "inverse"}, r"class_weight must be 'none', 'balanced' or a mapping"),
        ({"class_weight": {"Gmail": 0}}, r"received class_weight\['Gmail'\]=0"),
        ({"class_weight": {"Gmail": 1e39}}, r"up to 1,000,000 .*class_weight\['Gmail'\]=1e\+39"),
        ({"class_weight": {"Gmail": float("nan")}}, r"class_weight\['Gmail'\]=nan"),
        ({"engine": "fast"}, r"engine must be one of auto, fused, fit; received engine='fast'"),
        ({"early_stopping": 5}, r"early_stopping must be a mapping of fields or null"),
        (
            {"early_stopping": {"patience": -1}},
            r"early_stopping.patience must be a "
            r"non-negative integer",
        ),
        ({"early_stopping": {"monitor": "f1"}}, r"early_stopping.monitor must be one of"),
        ({"metrics": ("accuracy", "accuracy")}, r"metrics must name each metric once"),
    ],
)
def test_train_spec_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        TrainSpec(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rows": 0}, r"rows must be an integer of at least 50 .*; received rows=0"),
        ({"rows": 49}, r"rows must be an integer of at least 50 .*; received rows=49"),
        ({"path": "x.csv", "rows": 100}, r"a data file is used whole: received path='x.csv' with"),
        (
            {"apps": ["Facebook", "WhatsApp"], "positive": "Moriarty"},
            r"positive must be one of apps \(Facebook, WhatsApp\); received positive='Moriarty'",
        ),
        ({"rows": "1e5"}, r"received rows='1e5' \(it is text"),
        ({"rows": 10**23}, r"rows must be at most 1,000,000,000,000 .*; received rows=10{23}$"),
        ({"synth_seed": 99999999999}, r"synth_seed must be an integer from 0 to 4294967295"),
        ({"apps": ["Gmail"]}, r"apps must name at least two different apps"),
        ({"apps": []}, r"apps must be a non-empty list of names"),
        ({"missing": "mean"}, r"missing must be one of drop, impute; received missing='mean'"),
        ({"split": {"kind": "kfold"}}, r"split kind must be one of"),
        ({"split": 3}, r"split must be a mapping of fields \(or a SplitSpec\); received split=3"),
        ({"positive": ""}, r"positive must be an app name"),
        (
            {"features": ["rss", "vsize", "rss"]},
            r"features must name each one once; received \['rss'\] more than once in features=",
        ),
        ({"apps": "Gmail, Chrome, Gmail"}, r"apps must name each one once; received \['Gmail'\]"),
    ],
)
def test_data_spec_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        DataSpec(**kwargs)


def test_unknown_fields() -> None:
    with pytest.raises(SpecError, match=r"unknown train field\(s\) colour; valid fields: "):
        TrainSpec.from_dict({"colour": 0.1})
    # A near miss is named, in sections and in values alike.
    with pytest.raises(
        SpecError,
        match=r"unknown train field\(s\) colour, learnig_rate \(did you mean "
        r"learning_rate\?\); valid fields: batch_size, ",
    ):
        TrainSpec.from_dict({"learnig_rate": 0.1, "colour": 3})
    with pytest.raises(SpecError, match=r"unknown run field\(s\) trian \(did you mean train\?\)"):
        RunSpec.from_dict({"trian": {}})
    with pytest.raises(SpecError, match=r"received optimizer='Adam' \(did you mean adam\?\)$"):
        TrainSpec(optimizer="Adam")
    with pytest.raises(SpecError, match=r"monitor='val_acc' \(did you mean val_accuracy\?\)$"):
        EarlyStoppingSpec(monitor="val_acc")
    with pytest.raises(SpecError, match=r"received kind='block' \(did you mean blocked\?\)$"):
        SplitSpec(kind="block")
    with pytest.raises(SpecError, match=r"unknown run field\(s\) optimiser"):
        RunSpec.from_dict({"optimiser": {}})
    with pytest.raises(SpecError, match=r"model must be a mapping of fields \(or a ModelSpec\); "):
        RunSpec(model=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (
            lambda: RunSpec(model=TrainSpec()),
            r"model must be a mapping of fields \(or a ModelSpec\)",
        ),
        (
            lambda: RunSpec(train=ModelSpec()),
            r"train must be a mapping of fields \(or a TrainSpec\)",
        ),
        (
            lambda: DataSpec(split=DataSpec()),
            r"split must be a mapping of fields \(or a SplitSpec\)",
        ),
        (
            lambda: TrainSpec(early_stopping=ModelSpec()),
            r"early_stopping must be a mapping of fields or null \(or an EarlyStoppingSpec\)",
        ),
    ],
)
def test_a_spec_of_the_wrong_kind_is_told_which_kind_fits(make, said) -> None:
    # "model must be a mapping of fields" for model=TrainSpec(...) read as if specs were
    # not taken at all.
    with pytest.raises(SpecError, match=said):
        make()


def test_round_trips() -> None:
    spec = RunSpec(
        data=DataSpec(path="x.csv", apps=("Facebook", "WhatsApp"), split=SplitSpec(kind="blocked")),
        model=ModelSpec(hidden=(18, 18), dropout=(0.1, 0.2), batch_norm=True),
        train=TrainSpec(
            optimizer="adamw",
            weight_decay=0.01,
            learning_rate=0.001,
            early_stopping=EarlyStoppingSpec(patience=3),
            class_weight={"Facebook": 2.0},
            engine="fit",
        ),
    )
    assert RunSpec.from_dict(spec.to_dict()) == spec
    for part in (spec.data, spec.model, spec.train):
        assert type(part).from_dict(part.to_dict()) == part


def test_specs_are_frozen_and_keyword_only() -> None:
    spec = ModelSpec()
    with pytest.raises(AttributeError):
        spec.hidden = (3,)  # type: ignore[misc]
    with pytest.raises(TypeError):
        ModelSpec((18,))  # type: ignore[misc]


@pytest.mark.parametrize(
    ("hidden", "lr", "bs", "epochs", "expected"),
    [
        ((18,), 0.0003, 32, 30, "model_1H18N_lr0.0003_bs32_e30"),
        ((18, 18), 0.1, 1024, 10, "model_2H18N18N_lr0.1_bs1024_e10"),
        ((80,), 1e-05, 16, 5, "model_1H80N_lr0.00001_bs16_e5"),
        ((4,), 1.0, 64, 1, "model_1H4N_lr1_bs64_e1"),
        ((4,), 0.123456789123, 64, 1, "model_1H4N_lr0.123456789_bs64_e1"),
    ],
)
def test_run_names_follow_the_teaching_convention(hidden, lr, bs, epochs, expected) -> None:
    spec = RunSpec(
        model=ModelSpec(hidden=hidden),
        train=TrainSpec(learning_rate=lr, batch_size=bs, epochs=epochs),
    )
    assert spec.run_name() == expected
    assert spec.run_name(seed_suffix=True) == expected + "_seed0"


def test_tiny_learning_rate_cannot_name_a_directory() -> None:
    with pytest.raises(SpecError, match=r"below 1e-9 .*; use 1e-9 or more, or name the run"):
        format_learning_rate(1e-12)


def test_yaml_config(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(
        "model:\n  hidden: [40, 20]\ntrain:\n  learning_rate: 0.001\n  epochs: 5\n"
        "data:\n  apps: [Facebook, WhatsApp]\n  split: {kind: blocked}\n"
    )
    spec = load_run_spec(path)
    assert spec.model.hidden == (40, 20)
    assert spec.train.epochs == 5 and spec.train.batch_size == 32
    assert spec.data.split.kind == "blocked"
    path.write_text("train:\n  learning_rate: fast\n")
    with pytest.raises(
        SpecError,
        match=r"config file .*run\.yaml: learning_rate must be a "
        r"positive number; received learning_rate='fast'",
    ):
        load_run_spec(path)
    path.write_text("train: [unclosed\n")
    with pytest.raises(SpecError, match="is not valid YAML"):
        load_run_spec(path)
    with pytest.raises(SpecError, match="does not exist"):
        load_run_spec(tmp_path / "none.yaml")


def test_a_missing_example_spec_points_at_the_checkout(tmp_path: Path, monkeypatch) -> None:
    # The README's `sweep run examples/sweeps/...` run from another folder only said
    # "does not exist".
    from appsleuth.sweep import load_sweep_spec

    monkeypatch.chdir(tmp_path)
    example = Path(__file__).resolve().parents[1] / "examples" / "sweeps" / "scan-layers.yaml"
    assert example.is_file()
    with pytest.raises(
        SpecError,
        match=rf"scan-layers\.yaml does not exist; did you mean {re.escape(str(example))} "
        r"\(in the appsleuth checkout\)\?$",
    ):
        load_sweep_spec("examples/sweeps/scan-layers.yaml")
    with pytest.raises(SpecError, match=r"nothing\.yaml does not exist$"):
        load_sweep_spec("nothing.yaml")


def test_a_missing_example_spec_without_a_checkout_says_how_to_write_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # From a wheel (no examples folder anywhere) the README's command only said "does not
    # exist".
    import appsleuth.spec
    from appsleuth.sweep import load_sweep_spec

    installed = tmp_path / "site-packages" / "appsleuth" / "spec.py"
    monkeypatch.setattr(appsleuth.spec, "__file__", str(installed))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        SpecError,
        match=r"scan-layers\.yaml does not exist; the teaching studies are not installed as "
        r"files: 'appsleuth sweep examples examples/sweeps' writes them there$",
    ):
        load_sweep_spec("examples/sweeps/scan-layers.yaml")
    with pytest.raises(SpecError, match=r"my study\.yaml does not exist$"):
        load_sweep_spec("examples/sweeps/my study.yaml")


@pytest.mark.parametrize("text", ["", "# data: {path: sherlock.csv}\n", "null\n"])
def test_a_config_without_settings_is_refused(tmp_path: Path, text: str) -> None:
    # Read as every default, an empty or truncated file trained on the embedded data.
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=r"config file .*run\.yaml holds no settings"):
        load_run_spec(path)
    path.write_text("{}\n")  # every default, asked for explicitly
    assert load_run_spec(path).train.epochs == 30


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "model: {hidden_neurons: [4]}\n",
            r"unknown model field\(s\) hidden_neurons \(did you mean hidden\?\)",
        ),
        ("train: {lr: 0.1}\n", r"unknown train field\(s\) lr \(did you mean learning_rate\?\)"),
        ("train: {bs: 64}\n", r"unknown train field\(s\) bs \(did you mean batch_size\?\)"),
    ],
)
def test_names_from_the_teaching_material_and_the_cli_are_pointed_to_the_field(
    tmp_path: Path, text: str, message: str
) -> None:
    # Spelling alone does not lead from hidden_neurons (the results.csv column, a grid
    # name) or lr (train --lr) to the field.
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=message):
        load_run_spec(path)


def test_a_sweep_spec_given_as_a_config_names_the_command_it_is_for(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text("name: study\nbase: {train: {epochs: 2}}\ngrid: {learning_rate: [0.1]}\n")
    with pytest.raises(
        SpecError,
        match=r"config file .*study\.yaml: this is a sweep spec \(it has name, base, grid\), "
        r"not a run spec: run it with 'appsleuth sweep run .*study\.yaml'",
    ):
        load_run_spec(path)


def test_non_text_keys_are_refused() -> None:
    with pytest.raises(SpecError, match=r"the keys of train must be field names \(text\); "
                       r"received the key 1 \(int\) in train"):  # fmt: skip
        TrainSpec.from_dict({1: "a", "epochs": 2})


def test_numpy_numbers_become_plain_python_numbers() -> None:
    import numpy as np
    import yaml

    spec = RunSpec(
        model=ModelSpec(hidden=(np.int64(8), np.int32(4)), dropout=np.float32(0.25)),
        train=TrainSpec(
            learning_rate=np.float64(1e-3),
            batch_size=np.int64(64),
            class_weight={"Moriarty": np.float64(2.0)},
        ),
        data=DataSpec(split={"seed": np.int64(3), "val_fraction": np.float64(0.25)}),
    )
    assert spec.model.hidden == (8, 4) and type(spec.model.hidden[0]) is int
    assert type(spec.train.learning_rate) is float and type(spec.train.batch_size) is int
    assert type(spec.data.split.seed) is int
    text = yaml.safe_dump(spec.to_dict())  # NumPy scalars would make safe_dump fail
    assert RunSpec.from_dict(yaml.safe_load(text)) == spec


def test_specs_do_not_share_the_callers_containers() -> None:
    weights = {"Moriarty": 2.0}
    spec = TrainSpec(class_weight=weights)
    weights["Moriarty"] = 9.0
    assert spec.class_weight == {"Moriarty": 2.0}


def test_specs_with_class_weights_are_hashable() -> None:
    a = RunSpec(train=TrainSpec(class_weight={"Moriarty": 2.0}))
    b = RunSpec(train=TrainSpec(class_weight={"Moriarty": 2.0}))
    c = RunSpec(train=TrainSpec(class_weight={"Moriarty": 3.0}))
    assert hash(a) == hash(b) and len({a, b, c}) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "train: {learning_rate: 0.1, learning_rate: 0.5}\n",
            r"line 1, column 29: the key 'learning_rate' appears twice in one mapping",
        ),
        ("model: {}\nmodel: {hidden: [4]}\n", r"line 2, column 1: the key 'model' appears twice"),
        ("train:\n\tlearning_rate: 0.1\n", r"line 2, column 1: found character '\\t'"),
    ],
)
def test_yaml_problems_are_one_line_with_their_place(tmp_path: Path, text, message) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=rf"config file {re.escape(str(path))} is not valid YAML: "):
        load_run_spec(path)
    with pytest.raises(SpecError, match=message) as caught:
        load_run_spec(path)
    assert "\n" not in str(caught.value)


def test_yaml_merge_keys_still_work(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model: {hidden: [4]}\ntrain: {<<: {epochs: 2, batch_size: 64}, epochs: 5}\n")
    spec = load_run_spec(path)  # a merged key overridden explicitly is not a duplicate
    assert (spec.train.epochs, spec.train.batch_size) == (5, 64)


def test_zero_dimensional_arrays_are_numbers() -> None:
    import numpy as np

    assert TrainSpec(learning_rate=np.array(3e-4)).learning_rate == pytest.approx(3e-4)


@pytest.mark.parametrize("text", ["1e-12", "2e+20", "1.5e-5", "3e-4", "7E-3"])
def test_the_hint_for_numbers_read_as_text_is_yaml_that_reads_as_a_number(text: str) -> None:
    import yaml

    from appsleuth._fields import quoted_number_hint

    hint = quoted_number_hint(text)
    suggested = re.search(r"; write (\S+) instead\)$", hint)
    assert suggested, hint
    assert yaml.safe_load(f"x: {suggested.group(1)}")["x"] == float(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{\n  "model": {"hidden": [6]}\n  "train": {}\n}\n', r"line 3, column 3: Expecting ','"),
        ('{"train": {"epochs": 2,}}', r"line 1, column 24: Expecting property name"),
        ('{"train": {"epochs": 2, "epochs": 3}}', r"the key 'epochs' appears twice"),
    ],
)
def test_json_config_mistakes_are_named_as_json_with_their_place(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "x.json"
    path.write_text(text)
    with pytest.raises(SpecError, match=rf"config file {re.escape(str(path))} is not valid JSON: "):
        load_run_spec(path)
    with pytest.raises(SpecError, match=message):
        load_run_spec(path)


@pytest.mark.parametrize("name", ["x.json", "x.conf"])
def test_json_that_yaml_misreads_is_read_as_json(tmp_path: Path, name: str) -> None:
    # Tab indentation is refused by YAML; 1e-3 is text to YAML but a number in JSON.
    path = tmp_path / name
    path.write_text('{\n\t"train": {"learning_rate": 1.5e-3, "epochs": 2}\n}\n')
    spec = load_run_spec(path)
    assert spec.train.learning_rate == pytest.approx(1.5e-3) and spec.train.epochs == 2


def _laughs(levels: int) -> str:
    """YAML whose last list stands for 9**levels ones, in a few hundred bytes."""
    lines = ["  - &l0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for i in range(1, levels):
        lines.append(f"  - &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # A "billion laughs": 9**8 values, which every step that walks the spec expands.
        ("model:\n hidden:\n" + _laughs(8), r"more than 100,000 values once its YAML aliases"),
        ("model: {hidden: &a [*a]}\n", r"a YAML alias \(\*name\) refers to a list or mapping"),
        ("model: {hidden: " + "[" * 70 + "4" + "]" * 70 + "}\n", r"more than 64 levels deep"),
        # Past Python's recursion limit in YAML's own reader.
        ("model: {hidden: " + "[" * 500 + "]" * 500 + "}\n", r"it nests too deeply to read"),
    ],
)
def test_specs_that_expand_without_end_are_refused(tmp_path: Path, text: str, message) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=rf"config file {re.escape(str(path))} cannot be used: "):
        load_run_spec(path)
    with pytest.raises(SpecError, match=message):
        load_run_spec(path)


@pytest.mark.parametrize("depth", [70, 3000])
def test_json_specs_nested_too_deep_are_refused(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "run.json"
    path.write_text('{"model": {"hidden": ' + "[" * depth + "]" * depth + "}}")
    with pytest.raises(SpecError, match=r"run.json cannot be used: it nests"):
        load_run_spec(path)


def test_yaml_aliases_within_the_limits_still_work(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model: {hidden: &h [8, 8]}\ntrain: {class_weight: {Moriarty: 2.0}}\n")
    assert load_run_spec(path).model.hidden == (8, 8)


def test_the_most_epochs_are_accepted() -> None:
    assert TrainSpec(epochs=1_000_000).epochs == 1_000_000
