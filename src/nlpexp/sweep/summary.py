"""A study's summary in its sweep dir: trials table (CSV, markdown), best trial or Pareto front (JSON, YAML),
optimization_results.yaml (the official Optuna sweeper's result file) and plots (nlpexp.sweep.plots); written at
the end of every sweep and again by `python -m nlpexp.sweep summary <sweep dir | storage URL>`. At a sweep's end
too: the best trial's model becomes a version of `registry:<study>` (nlpexp.registry).
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import logging
import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from nlpexp import registry
from nlpexp.io import write_json_atomic, write_text_atomic
from nlpexp.metrics import start_of
from nlpexp.redaction import redact
from nlpexp.sweep.study import DEFINITION, ERROR, METRIC, PROGRAM, RUN_DIR, SKIPPED, default_metric_names, failed, note

log = logging.getLogger(__name__)
_SWEEPER_ATTRS = (RUN_DIR, ERROR, SKIPPED)
RESULTS_FILE = "optimization_results.yaml"
TIMING = ("run_s", "queue_s", "host")  # each trial's own run time, wait before it and machine (_timing)


def write_summary(study: optuna.Study, out_dir: Path, plots: bool = True, runs_within: Path | None = None) -> str:
    """Write the summary files and TensorBoard's HPARAMS view of the study into out_dir; lines for the log (the
    trials' run files read inside `runs_within` only, when given: see trial_table)."""
    from nlpexp.copies import refuse_links_on_the_way
    from nlpexp.tb import STUDY_DIR, write_study_hparams

    out_dir = Path(out_dir)
    for folder in ("plots", STUDY_DIR):  # a handed sweep dir's link would send what is written (or deleted) elsewhere
        refuse_links_on_the_way(out_dir / folder, "the sweep summary", below=out_dir)
    trials = study.get_trials(deepcopy=False)
    metrics = metric_names(study)
    header, rows = trial_table(trials, out_dir, metrics, runs_within)
    rows = redact(rows)  # trial notes hold error messages; params are what the config said
    buffer = io.StringIO()
    csv.writer(buffer).writerows([header, *rows])
    write_text_atomic(out_dir / "trials.csv", buffer.getvalue())
    write_text_atomic(out_dir / "trials.md", _markdown(study, trials, metrics, header, rows))
    best = redact(best_summary(study, trials, metrics))
    write_json_atomic(out_dir / "best.json", best)
    write_text_atomic(out_dir / "best.yaml", yaml.safe_dump(best, sort_keys=False, allow_unicode=True))
    lines = [f"study {study.study_name}: {_counts_line(trials)}; summary in {out_dir}"]
    if best.get("best_trial") is not None:
        lines.append(f"best: trial {best['best_trial']}, {metrics[0]} = {best['best_value']:.4f}")
        lines += _wrapped([f"{name}={_cell(value)}" for name, value in best["best_params"].items()])
    for point in best.get("pareto_front", []):
        lines.append(f"pareto front: trial {point['trial']} {point['values']} {point['params']}")
    if plots:
        from nlpexp.sweep.plots import write_plots

        skipped = write_plots(study, out_dir / "plots", metrics)
        lines += [f"plot {name} skipped: {why}" for name, why in skipped.items()]
    if write_study_hparams(study, out_dir, metrics):
        lines.append(f"TensorBoard HPARAMS of the study: nlpexp tb serve {out_dir}")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _wrapped(words: list[str], width: int = 100) -> list[str]:
    """`  a=1  b=2 ...` on lines of at most `width` columns (the console's)."""
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 2 + len(word) <= width:
            lines[-1] += "  " + word
        else:
            lines.append("  " + word)
    return lines


def write_optimization_results(study: optuna.Study, out_dir: Path) -> None:
    """The official sweeper's optimization_results.yaml: name, best_params and best_value, or with several
    objectives the Pareto front as solutions (params, values); nothing before a trial completed."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        log.info("no complete trial: no %s", RESULTS_FILE)
        return
    if len(study.directions) == 1:
        results: dict[str, Any] = {"name": "optuna", "best_params": study.best_params, "best_value": study.best_value}
    else:
        results = {"name": "optuna", "solutions": [{"params": t.params, "values": t.values} for t in study.best_trials]}
    write_text_atomic(Path(out_dir) / RESULTS_FILE, yaml.safe_dump(results, sort_keys=False, allow_unicode=True))


def metric_names(study: optuna.Study) -> list[str]:
    if study.metric_names:
        return list(study.metric_names)
    if study.user_attrs.get(METRIC):  # a study from before metric_names
        return [study.user_attrs[METRIC]]
    return default_metric_names(len(study.directions))


def trial_table(trials: list[FrozenTrial], out_dir: Path, metrics: list[str],
                runs_within: Path | None = None) -> tuple[list[str], list[list[Any]]]:
    """A row per trial; its run's files are read where its run dir lies inside `runs_within` (a handed sweep dir's
    storage names run dirs: none outside it is read)."""
    params = sorted({name for t in trials for name in t.params})
    value_columns = ["value"] if len(metrics) == 1 else metrics
    start_key = start_of(metrics[0]) if len(metrics) == 1 else None  # the starting model's score, beside the value
    header = ["number", "state", *value_columns, *(["start"] if start_key else []), "duration_s", *TIMING,
              *params, "run_dir", "note"]
    rows = []
    for t in trials:
        duration = round(t.duration.total_seconds(), 1) if t.duration else ""
        values = t.values if t.values is not None else [""] * len(value_columns)
        run_dir = t.user_attrs.get(RUN_DIR, "") if t.state != TrialState.WAITING else ""  # (a retry's is its origin's)
        read = run_dir if runs_within is None or Path(run_dir).resolve().is_relative_to(runs_within.resolve()) else ""
        start = [_run_file(read, "metrics.json").get(start_key, "")] if start_key else []
        timing = _timing(t, read)
        if run_dir and Path(run_dir).is_relative_to(out_dir.resolve()):
            run_dir = str(Path(run_dir).relative_to(out_dir.resolve()))
        rows.append([t.number, t.state.name, *values, *start, duration, *timing,
                     *(t.params.get(p, "") for p in params), run_dir, note(t)])
    return header, rows


def _timing(trial: FrozenTrial, run_dir: str) -> list[Any]:
    """run_s, queue_s, host of a trial from its run's provenance.json: duration_s is Optuna's, from the sweeper's
    ask to its tell, which on SLURM is the whole batch's wall time; run_s is the run's own (start to end), queue_s
    the wait from the ask to the run's start (queue, job start-up, the trials run before it in its process)."""
    facts = _run_file(run_dir, "provenance.json")
    timing = facts.get("timing") if isinstance(facts.get("timing"), dict) else {}
    try:
        start, end = datetime.fromisoformat(timing["start"]), datetime.fromisoformat(timing["end"])
    except (KeyError, TypeError, ValueError):  # a failed run's (none), or a file that is not nlpexp's
        return ["", "", facts.get("host", "")]
    asked = trial.datetime_start.astimezone(UTC) if trial.datetime_start else None
    queue = round(max((start - asked).total_seconds(), 0.0), 1) if asked else ""
    return [round((end - start).total_seconds(), 1), queue, facts.get("host", "")]


def _run_file(run_dir: str, name: str) -> dict:
    """A JSON file of a trial's run (metrics.json, provenance.json); {} where the run wrote none (failed, pruned)."""
    try:
        found = json.loads((Path(run_dir) / name).read_text()) if run_dir else {}
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def best_summary(study: optuna.Study, trials: list[FrozenTrial], metrics: list[str]) -> dict[str, Any]:
    """The best trial (one objective) or the Pareto front (several), how to rerun them, counts, failures."""
    directions = [d.name.lower() for d in study.directions]
    several = len(directions) > 1
    objectives = {"metrics": metrics, "directions": directions} if several else {
        "metric": metrics[0], "direction": directions[0]}
    summary: dict[str, Any] = {"study": study.study_name, **objectives, "trials": _counts(trials)}
    if any(t.state == TrialState.COMPLETE for t in trials):
        if several:
            summary["pareto_front"] = [
                {"trial": t.number, "values": dict(zip(metrics, t.values, strict=True)), "params": dict(t.params),
                 "run_dir": t.user_attrs.get(RUN_DIR), "rerun": rerun_command(study, t)} for t in study.best_trials]
        else:
            best = study.best_trial
            summary.update({"best_trial": best.number, "best_value": best.value, "best_params": dict(best.params),
                            "best_run_dir": best.user_attrs.get(RUN_DIR), "rerun": rerun_command(study, best)})
    summary["failures"] = [{"trial": t.number, "error": t.user_attrs[ERROR]} for t in failed(trials)]
    if definition := study.user_attrs.get(DEFINITION):
        summary["sweep_arguments"] = definition["arguments"]
    return summary


def rerun_command(study: optuna.Study, trial: FrozenTrial) -> str:
    """The command that runs one trial again: the sweep's program with its fixed overrides, the trial's params
    and the sweep's deletion overrides (~key)."""
    program = study.user_attrs.get(PROGRAM) or {"program": "<program>", "deletions": []}
    fixed = {k: v for k, v in trial.user_attrs.items() if k not in _SWEEPER_ATTRS}
    overrides = [f"{k}={v}" for k, v in {**fixed, **trial.params}.items()] + program["deletions"]
    return " ".join(["python", shlex.quote(program["program"]), *map(shlex.quote, overrides)])


def _counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """complete, pruned, failed (ran and failed), interrupted (failed without running to the end: run again)."""
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}
    counts["failed"] = len(failed(trials))
    counts["interrupted"] = counts.pop("fail") - counts["failed"]
    return {k: v for k, v in counts.items() if v or k in ("complete", "pruned", "failed")}


def _counts_line(trials: list[FrozenTrial]) -> str:
    return ", ".join(f"{n} {state}" for state, n in _counts(trials).items())


def _markdown(study: optuna.Study, trials: list[FrozenTrial], metrics: list[str], header: list[str],
              rows: list[list[Any]]) -> str:
    objectives = ", ".join(f"`{name}` ({d.name.lower()})" for name, d in zip(metrics, study.directions, strict=True))
    lines = [f"# Study {study.study_name}", "", f"Optimises {objectives}; trials: {_counts_line(trials)}.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
             *("| " + " | ".join(_cell(v).replace("|", "\\|") for v in row) + " |" for row in rows)]
    if failures := failed(trials):
        lines += ["", "## Failures", "", *(f"- trial {t.number}: {t.user_attrs[ERROR]}" for t in failures)]
    return "\n".join(lines) + "\n"


def promote_best(study: optuna.Study, root: str | Path | None = None, objective: int = 0) -> Path | None:
    """Register the best trial's run (best_trial) as the next version of the registry model named after the
    study, unless the newest version already is that run. Returns the version's folder, or None (no model)."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    best = best_trial(study, objective)
    run_dir = Path(best.user_attrs.get(RUN_DIR, "")).resolve()
    if not (run_dir / "best_model").is_dir():
        log.info("best trial %d has no best_model/ to promote (%s)", best.number, run_dir)
        return None
    root = Path(root) if root else registry.registry_dir()
    folder = registry.model_folder(study.study_name, root)  # a study name cannot lead out of the registry
    folder.mkdir(parents=True, exist_ok=True)
    # Sweep processes sharing the study finish at about the same time: one promotes, the others see it done.
    with open(folder / ".promote.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        known = registry.versions(study.study_name, root)
        newest = folder / f"v{known[-1]}" if known else None
        if newest and json.loads((newest / "source.json").read_text()).get("run_dir") == str(run_dir):
            return newest
        direction = study.directions[objective].name.lower()
        version = registry.register(run_dir, study.study_name, root, direction=direction)
    # where it lies: `nlpexp registry show <name>@latest`; the line stays within the console's 100 columns
    log.info("best model (trial %d): model.name_or_path=registry:%s@latest", best.number, study.study_name)
    return version


def best_trial(study: optuna.Study, objective: int = 0) -> optuna.trial.FrozenTrial:
    """study.best_trial; with several objectives, the Pareto-front trial best at `objective` (the lowest number
    among equals)."""
    if len(study.directions) == 1:
        return study.best_trial
    sign = -1 if study.directions[objective] == optuna.study.StudyDirection.MAXIMIZE else 1
    return min(study.best_trials, key=lambda t: (sign * t.values[objective], t.number))
