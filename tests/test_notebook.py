"""docs/python_api.md as a notebook: its runnable Python blocks, one cell each, executed in order by a real
headless Jupyter kernel (nbclient + ipykernel, from the dev extras), as a user's notebook would run them.

A kernel differs from `python -c`: transformers draws its progress as notebook widgets there (the Trainer's
HTML progress table, tqdm widgets), and Python's warnings and logging reach the cell through the kernel's
streams. The cells must run without an error and show none of the libraries' widgets (verbose is off)."""

from __future__ import annotations

import json
import os

import pytest

from nlpexp.config import PROJECT_ROOT
from tests.test_docs_commands import runnable_blocks

nbformat = pytest.importorskip("nbformat", reason="the dev extras install nbformat, nbclient and ipykernel")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

PAGE = PROJECT_ROOT / "docs" / "python_api.md"
# What transformers and huggingface_hub draw in a notebook when their progress bars are on.
# (nlpexp's own train/eval bars are tqdm.auto ones: text here, a widget where ipywidgets is installed.)
WIDGETS = ("Writing model shards", "<progress", "Loading weights")


def test_the_python_api_page_runs_in_a_jupyter_kernel(tmp_path, data_root, monkeypatch):
    blocks = [code.replace("/tmp/", f"{tmp_path}/") for language, code in runnable_blocks(PAGE)
              if language == "python"]
    assert len(blocks) >= 2, "docs/python_api.md should show its examples as ```python runnable``` blocks"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code) for code in blocks])
    monkeypatch.setenv("NLPEXP_DATA_DIR", str(data_root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("NLPEXP_LEDGER_DIR", str(tmp_path / "ledger"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(PROJECT_ROOT / "src"),
                                                                    os.environ.get("PYTHONPATH")])))
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if a cell fails

    outputs = [output for cell in notebook.cells for output in cell.outputs]
    shown = json.dumps(outputs)
    for widget in WIDGETS:
        assert widget not in shown, f"a library widget reached the notebook: {widget}\n{shown[:3000]}"
    printed = "".join(o.get("text", "") for o in outputs if o.get("name") == "stdout")
    assert "RunResult(run_dir=" in printed and "metrics:" in printed
    # nlpexp's own progress reaches the cells: one line per evaluation during training
    assert "val/accuracy" in shown
    ledger = [json.loads(line) for line in (tmp_path / "ledger" / "ledger.jsonl").read_text().splitlines()]
    assert [r["status"] for r in ledger] == ["ok"] * len(ledger) and len(ledger) >= 3
    assert {"T5ForConditionalGeneration", "BertForSequenceClassification"} <= {r["model"] for r in ledger}
