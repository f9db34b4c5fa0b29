"""The tutorial notebook runs from top to bottom (small settings), and is kept without outputs."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "tutorial.ipynb"


def test_outputs_are_stripped_in_the_repository() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.slow
@pytest.mark.parametrize("own_file", [False, True])
def test_tutorial_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own_file) -> None:
    if own_file:  # DATA set to a file: every section reads it, the sweep included
        from appsleuth.data.synth import generate_sherlock

        generate_sherlock(3000, seed=5).to_csv(tmp_path / "mine.csv")
        monkeypatch.setenv("APPSLEUTH_TUTORIAL_DATA", str(tmp_path / "mine.csv"))
    monkeypatch.setenv("APPSLEUTH_TUTORIAL_ROWS", "3000")
    monkeypatch.setenv("APPSLEUTH_TUTORIAL_EPOCHS", "2")
    monkeypatch.setenv("APPSLEUTH_TUTORIAL_OUT", str(tmp_path / "runs"))
    monkeypatch.setenv("APPSLEUTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    texts = [
        o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    ]
    joined = "\n".join(texts)
    assert "of validation rows have an exact copy in training" in joined
    assert "accuracy on the mystery sample" in joined
    assert (tmp_path / "runs" / "tutorial-neurons" / "results.csv").exists()
    assert (tmp_path / "runs" / "tutorial-neurons" / "report.html").exists()
    manifest = json.loads((tmp_path / "runs" / "tutorial-neurons" / "manifest.json").read_text())
    data = manifest["trials"][0]["spec"]["data"]
    assert (data["path"] == str(tmp_path / "mine.csv")) if own_file else data["path"] is None
