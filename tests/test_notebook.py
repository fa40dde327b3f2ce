"""The walkthrough notebook: it runs end to end (tiny profile), and the committed copy shows its
pictures without errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "walkthrough.ipynb"
#: Figures per run: data, predictions and IoU bars for each case.
MIN_IMAGES = 6


def _outputs(notebook, output_type: str | None = None) -> list:
    return [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output_type is None or output.output_type == output_type
    ]


def _images(notebook) -> int:
    return sum("image/png" in output.get("data", {}) for output in _outputs(notebook))


def _text(notebook) -> str:
    parts = []
    for output in _outputs(notebook):
        if output.output_type == "stream":
            parts.append(output.text)
        else:
            parts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def _errors(notebook) -> list[str]:
    return [f"{o.ename}: {o.evalue}" for o in _outputs(notebook, "error")]


@pytest.mark.slow
def test_notebook_runs_with_the_tiny_profile(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    env = {
        **os.environ,
        "WALKTHROUGH_PROFILE": "tiny",
        "WALKTHROUGH_OUTPUT": str(tmp_path / "outputs"),
        "WANDB_MODE": "disabled",
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        # The project importable whether or not it is installed.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    client = nbclient.NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute(env=env)  # raises CellExecutionError on the first failing cell

    assert not _errors(notebook)
    assert _images(notebook) >= MIN_IMAGES
    text = _text(notebook)
    assert "profile 'tiny'" in text
    for expected in ("test scores", "miou_all", "candidate-sets", "finetune", "bag", "sneaker"):
        assert expected in text, expected
    # Checkpoints and logs went to the output folder, nothing next to the notebook.
    assert any((tmp_path / "outputs").rglob("*.ckpt"))
    assert not list(tmp_path.glob("*.ckpt"))


def test_committed_notebook_shows_its_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code), "run every cell before committing"
    assert not _errors(notebook)
    assert _images(notebook) >= MIN_IMAGES
    text = _text(notebook)
    assert "profile 'small'" in text, "commit the outputs of the default (small) profile"
    assert "test scores" in text
    assert NOTEBOOK.stat().st_size < 2_000_000
