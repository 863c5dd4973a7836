"""The ledger under a full disk, torn lines, and run attempts that fail before anything is built; run dirs that
are reused never mix two attempts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from nlpexp import NlpexpError
from nlpexp.io import append_to_ledger, read_ledger
from nlpexp.pipeline import run

SMOKE = ("task=sbert_nli", "model=tiny_bert", "debug=smoke", "logger=none")

# Appends records until the file size limit stops it: a real EFBIG from the kernel, after a short write.
FULL_DISK_WRITER = textwrap.dedent("""
    import resource, signal, sys
    from pathlib import Path
    from nlpexp.io import append_to_ledger, read_ledger
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer instead of failing write()
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
    path = Path(sys.argv[1])
    for i in range(1000):
        try:
            append_to_ledger(path, {"run_id": str(i), "status": "ok", "pad": "x" * (37 + i % 11)})
        except OSError as err:
            print(f"{i} {err.errno}")
            sys.exit(0)
    sys.exit("the limit never hit")
""")


def test_a_full_disk_leaves_only_whole_lines(tmp_path):
    import errno

    path = tmp_path / "ledger.jsonl"
    path.write_text('{"run_id": "before"}\n')
    done = subprocess.run([sys.executable, "-c", FULL_DISK_WRITER, str(path), "4000"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    failed_at, code = map(int, done.stdout.split())
    assert code == errno.EFBIG and failed_at > 10
    text = path.read_text()
    assert text.endswith("\n") and len(text.encode()) <= 4000
    records = [json.loads(line) for line in text.splitlines()]  # every line parses
    assert [r["run_id"] for r in records] == ["before", *map(str, range(failed_at))]
    # Room again (the limit was the writer's only): the next record is whole and readable.
    append_to_ledger(path, {"run_id": "after"})
    assert [r["run_id"] for r in read_ledger(path)][-1] == "after"


def test_a_torn_line_is_reported_and_the_record_glued_to_it_kept(tmp_path, caplog):
    path = tmp_path / "ledger.jsonl"
    whole = json.dumps({"run_id": "b", "status": "ok"})
    path.write_text(json.dumps({"run_id": "a"}) + "\n" + '{"run_id": "torn", "metr' + whole + "\n" + "null\n")
    records = read_ledger(path)
    assert [r["run_id"] for r in records] == ["a", "b"]
    assert f"{path}:2: torn line" in caplog.text and f"{path}:3: torn line" in caplog.text


def test_a_record_after_a_torn_last_line_starts_its_own(tmp_path):
    path = tmp_path / "ledger.jsonl"
    path.write_text('{"run_id": "a"}\n{"run_id": "torn", "st')
    append_to_ledger(path, {"run_id": "b"})
    assert path.read_text().splitlines()[-1] == '{"run_id": "b"}'
    assert [r["run_id"] for r in read_ledger(path)] == ["a", "b"]


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_run_failing_on_an_unresolvable_setting_gets_its_line(compose_run, tmp_path):
    cfg = compose_run(*SMOKE, "model.name_or_path=${oc.env:NLPEXP_SURELY_UNSET}")
    with pytest.raises(Exception, match="NLPEXP_SURELY_UNSET"):
        run(cfg)
    (line,) = _lines(tmp_path / "ledger.jsonl")
    assert line["status"] == "failed" and "NLPEXP_SURELY_UNSET" in line["error"] and line["model"] == "tiny_bert"


def test_a_run_dir_that_is_a_file_is_one_line_and_a_ledger_line(compose_run, tmp_path):
    (tmp_path / "taken").write_text("not a dir")
    with pytest.raises(NlpexpError, match="^paths.output_dir: cannot use .*taken"):
        run(compose_run(*SMOKE, run_dir=tmp_path / "taken"))
    assert _lines(tmp_path / "ledger.jsonl")[0]["status"] == "failed"


def test_an_unwritable_ledger_fails_a_good_run_with_one_line(compose_run, tmp_path):
    (tmp_path / "ledger.jsonl").mkdir()  # a directory where the ledger file should be
    # refused before training by the schema's path check; the line names the key
    with pytest.raises(NlpexpError, match="^paths.ledger_file: (cannot use|no ledger line written to)"):
        run(compose_run(*SMOKE))


def test_a_refused_config_is_recorded_once(compose_run, tmp_path):
    with pytest.raises(NlpexpError):
        run(compose_run(*SMOKE, "mode=nope"))
    assert [(r["status"], r["error"][:6]) for r in _lines(tmp_path / "ledger.jsonl")] == [("failed", "mode m")]


def test_an_observer_that_refuses_a_success_fails_the_run_for_the_observers_before_it():
    """nlpexp.observers: finished in reverse order; a refusal (a sweep trial given up) is what the rest record."""
    from nlpexp.observers import Observers

    seen = []

    class Records:
        def start(self, cfg):
            pass

        def finish(self, metrics, error):
            seen.append(error)

    class Refuses(Records):
        def finish(self, metrics, error):
            raise NlpexpError("given up")

    observers = Observers()
    for observer in (Records(), Refuses()):
        observers.start(observer, None)
    with pytest.raises(NlpexpError, match="given up"):
        observers.finish({}, None)
    assert [str(error) for error in seen] == ["given up"]
    observers.finish({}, KeyboardInterrupt())  # a recorder failing while a failure is recorded: logged, not raised


def test_a_rerun_into_a_used_run_dir_moves_the_earlier_attempt_aside(compose_run, tmp_path, monkeypatch):
    from nlpexp.task.sbert_nli import SbertNliTask

    run_dir = tmp_path / "run"
    first = run(compose_run(*SMOKE, run_dir=run_dir))
    monkeypatch.setattr(SbertNliTask, "train", lambda self: (_ for _ in ()).throw(RuntimeError("crash")))
    with pytest.raises(RuntimeError, match="crash"):
        run(compose_run(*SMOKE, "seed=7", run_dir=run_dir))
    assert not (run_dir / "metrics.json").exists()  # the failed attempt's dir holds no older success
    assert "seed: 7" in (run_dir / "config.yaml").read_text()
    (aside,) = (run_dir / "previous").iterdir()
    assert json.loads((aside / "metrics.json").read_text()) == first
    assert (aside / "checkpoints" / "checkpoint-4").is_dir() and (aside / "config.yaml").is_file()
