"""Run ledger, `nlpexp runs`, model registry, provenance."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from nlpexp import NlpexpError, registry, runs
from nlpexp.io import read_ledger
from nlpexp.pipeline import run

SMOKE = ("task=sbert_nli", "model=tiny_bert", "debug=smoke", "logger=none")


# A bare interpreter per writer (importing only nlpexp.io), so that four start in well under a second.
APPEND_MANY = """
import sys
from pathlib import Path
from nlpexp.io import append_to_ledger, read_ledger
path, worker = Path(sys.argv[1]), sys.argv[2]
for i in range(200):
    append_to_ledger(path, {"run_id": f"{worker}-{i}", "metrics": {"val/x": i}, "pad": "x" * 5000})
"""


def test_ledger_survives_concurrent_writers(tmp_path):
    path = tmp_path / "ledger.jsonl"
    writers = [subprocess.Popen([sys.executable, "-c", APPEND_MANY, str(path), str(w)]) for w in range(4)]
    assert [w.wait(timeout=120) for w in writers] == [0] * 4
    records = read_ledger(path)
    assert len(records) == 800 == len(path.read_text().splitlines())
    assert len({r["run_id"] for r in records}) == 800


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, data_root):
    """Two finished smoke runs (different lr) recorded in one ledger."""
    from nlpexp.config import compose

    root = tmp_path_factory.mktemp("tracked")
    out = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NLPEXP_DATA_DIR", str(data_root))
        for i, lr in enumerate(("1e-5", "1e-3")):
            run_dir = root / f"run{i}"
            cfg = compose([f"paths.output_dir={run_dir}", f"paths.ledger_file={root / 'ledger.jsonl'}", *SMOKE,
                           f"optimizer.lr={lr}"])
            out.append((run_dir, run(cfg)))
    return root, out


def test_every_run_appends_one_complete_record(two_runs):
    root, out = two_runs
    records = read_ledger(root / "ledger.jsonl")
    assert [r["run_dir"] for r in records] == [str(d) for d, _ in out]
    for record, (_, metrics) in zip(records, out, strict=True):
        assert record["status"] == "ok" and record["metrics"] == metrics
        assert record["task"] == "SbertNliTask" and record["model"] == "tiny_bert" and record["data"] == "allnli"
        assert {"run_id", "start", "end", "git", "overrides", "seed"} <= set(record)
        assert set(record["git"]) == {"commit", "dirty"}


def test_runs_cli_sorts_by_metric(two_runs, capsys):
    root, out = two_runs
    runs.main(["--ledger", str(root / "ledger.jsonl"), "--sort", "val/spearman_cosine", "--format", "csv"])
    lines = capsys.readouterr().out.strip().splitlines()
    column = lines[0].split(",").index("val/spearman_cosine")
    values = [float(line.split(",")[column]) for line in lines[1:]]
    assert values == sorted(values, reverse=True) and len(values) == 2
    runs.main(["--ledger", str(root / "ledger.jsonl"), "--model", "nope"])
    assert len(capsys.readouterr().out.strip().splitlines()) == 1  # header only


def test_provenance_names_code_versions_data_and_device(two_runs):
    run_dir, _ = two_runs[1][0]
    facts = json.loads((run_dir / "provenance.json").read_text())
    assert {"commit", "dirty"} <= set(facts["git"]) and facts["seed"] == 42
    for package in ("python", "torch", "transformers", "sentence-transformers", "datasets", "hydra-core", "optuna"):
        assert facts["versions"][package]
    assert facts["device"]["cpu_count"] >= 1
    for path, digest in facts["data_files"].items():
        assert hashlib.sha256(open(path, "rb").read()).hexdigest() == digest
    assert any(p.endswith("snli/test.jsonl.gz") for p in facts["data_files"])


def test_registry_round_trip_and_alias_in_a_later_run(two_runs, tmp_path, compose_run):
    root, out = two_runs
    reg = tmp_path / "registry"
    first = registry.register(out[0][0], "sbert", reg)
    second = registry.register(out[1][0], "sbert", reg)
    assert (first.name, second.name) == ("v1", "v2") and registry.versions("sbert", reg) == [1, 2]
    assert (second / "model" / "nli_head.safetensors").is_file() and (second / "metrics.json").is_file()
    assert registry.resolve("registry:sbert", reg) == second / "model"
    best = 0 if out[0][1]["val/spearman_cosine"] >= out[1][1]["val/spearman_cosine"] else 1
    assert registry.resolve("registry:sbert@best", reg).parent.name == f"v{best + 1}"
    with pytest.raises(NlpexpError, match="no alias 'v9'"):
        registry.resolve("registry:sbert@v9", reg)

    again = run(compose_run(*SMOKE, "mode=eval", "model.name_or_path=registry:sbert@best",
                            "model.random_init=null", "model.tokenizer=null"))
    assert again["val/spearman_cosine"] == pytest.approx(out[best][1]["val/spearman_cosine"], abs=1e-5)
    assert again["val/accuracy"] == pytest.approx(out[best][1]["val/accuracy"], abs=1e-5)


def test_registry_refuses_an_unfinished_run(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(NlpexpError, match="no metrics.json: it is not the run dir of a finished run"):
        registry.register(tmp_path / "run", "x", tmp_path / "registry")
    assert not (tmp_path / "registry" / "x" / "v1").exists()


def test_runs_cli_shows_the_starting_value_beside_the_metric(two_runs, capsys):
    root, out = two_runs
    runs.main(["--ledger", str(root / "ledger.jsonl"), "--metrics", "val/spearman_cosine,start/spearman_cosine",
               "--format", "csv"])
    header, *rows = capsys.readouterr().out.strip().splitlines()
    columns = header.split(",")
    assert columns[columns.index("val/spearman_cosine") + 1] == "start/spearman_cosine"
    at = columns.index("start/spearman_cosine")
    assert [float(r.split(",")[at]) for r in rows] == pytest.approx([m["start/spearman_cosine"] for _, m in out],
                                                                    abs=5e-5)  # printed with 4 decimals
