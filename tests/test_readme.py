"""What the README shows can be typed as it is: its commands, its API snippet, its SLURM spec.

Cheap checks only (parsing and signatures, no training): the commands' options exist, the
snippet's names and keywords are appsleuth's, and the executor section is a valid spec.
"""

from __future__ import annotations

import ast
import inspect
import re
import shlex
from pathlib import Path

import pytest

import appsleuth
from appsleuth.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.M | re.S)


def _commands() -> list[list[str]]:
    commands = []
    for block in _blocks("bash"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["appsleuth"]:
                commands.append(words[1:])
    return commands


def test_the_first_two_commands_set_up_and_run_the_demo_and_the_tests() -> None:
    first = _blocks("bash")[0].splitlines()
    assert [shlex.split(line, comments=True) for line in first[:2]] == [
        ["python3", "tasks.py", "demo"],
        ["python3", "tasks.py", "test"],
    ]


# Options the README's prose names, outside its command blocks.
_IN_PROSE = [
    ["data", "check", "--split", "group", "--group-column", "UserId"],
    ["train", "--threads", "1", "--device", "cpu", "--label", "app"],
    ["predict", "RUN", "DATA", "--threads", "1", "--device", "gpu"],
    ["sweep", "run", "s.yaml", "--threads-per-trial", "1", "--device", "auto", "--retry-failed"],
    ["sweep", "collect", "runs/study"],
    ["--debug", "info"],
    ["demo", "--full"],
]


@pytest.mark.parametrize("args", _commands() + _IN_PROSE, ids=" ".join)
def test_every_readme_command_names_real_options(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # click parses every option before it acts on --help: an unknown one fails here.
    assert main([*args, "--help"]) == 0, capsys.readouterr().err
    assert "Usage: appsleuth" in capsys.readouterr().out


def test_the_api_snippet_uses_real_names_and_keywords() -> None:
    (snippet,) = _blocks("python")
    calls = 0
    for node in ast.walk(ast.parse(snippet)):
        if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) == "aps":
            assert node.attr in appsleuth.__all__, node.attr
        if isinstance(node, ast.Call) and getattr(node.func, "value", None) is not None:
            if getattr(node.func.value, "id", None) != "aps":
                continue
            params = inspect.signature(getattr(appsleuth, node.func.attr)).parameters
            for keyword in node.keywords:
                assert keyword.arg in params, f"aps.{node.func.attr}({keyword.arg}=...)"
            calls += 1
    assert calls >= 8


def test_the_slurm_executor_section_is_a_valid_spec(tmp_path: Path) -> None:
    (section,) = [b for b in _blocks("yaml") if b.startswith("executor:")]
    spec_file = tmp_path / "study.yaml"
    spec_file.write_text(f"name: study\ngrid: {{hidden_neurons: [1, 4]}}\n{section}")
    spec = appsleuth.load_sweep_spec(spec_file)
    assert spec.executor.kind == "slurm"
    assert spec.executor.options["partition"] == "short"
    assert spec.executor.options["array_parallelism"] == 20


def test_links_inside_the_readme_point_at_its_headings() -> None:
    headings = re.findall(r"^#+ (.+)$", README, flags=re.M)
    anchors = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
    links = re.findall(r"\]\(#([^)]+)\)", README)
    assert "the-data" in links  # where the command list sends a reader for FILE's layouts
    assert sorted(set(links) - anchors) == []
