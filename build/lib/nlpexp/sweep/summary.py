"""A study's summary in its sweep dir: trials table (CSV, markdown), best params (JSON, YAML), plots (PNG, HTML).

Written by the sweeper at the end of every sweep, and again from the storage alone by
`python -m nlpexp.sweep summary <sweep dir | storage URL>`.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from nlpexp.errors import first_line
from nlpexp.io import write_json_atomic, write_text_atomic
from nlpexp.sweep.study import DEFINITION, ERROR, METRIC, RUN_DIR, SKIPPED, failed, note

log = logging.getLogger(__name__)
# plot name -> optuna.visualization function (the matplotlib twin has the same name)
PLOTS = {
    "optimization_history": "plot_optimization_history",
    "param_importances": "plot_param_importances",
    "parallel_coordinate": "plot_parallel_coordinate",
    "intermediate_values": "plot_intermediate_values",
}
_SWEEPER_ATTRS = (RUN_DIR, ERROR, SKIPPED)


def write_summary(study: optuna.Study, out_dir: Path) -> str:
    """Write the summary files into out_dir; returns a few lines for the log."""
    out_dir = Path(out_dir)
    trials = study.get_trials(deepcopy=False)
    metric = metric_name(study)
    header, rows = trial_table(trials, out_dir)
    write_text_atomic(out_dir / "trials.csv", _csv(header, rows))
    write_text_atomic(out_dir / "trials.md", _markdown(study, metric, header, rows))
    best = best_summary(study, trials, metric)
    write_json_atomic(out_dir / "best.json", best)
    write_text_atomic(out_dir / "best.yaml", yaml.safe_dump(best, sort_keys=False, allow_unicode=True))
    skipped = write_plots(study, out_dir / "plots", metric)
    lines = [f"study {study.study_name}: {_counts_line(trials)}; summary in {out_dir}"]
    if best.get("best_trial") is not None:
        lines.append(f"best: trial {best['best_trial']} {metric} = {best['best_value']:.4f} {best['best_params']}")
    lines += [f"plot {name} skipped: {why}" for name, why in skipped.items()]
    return "\n".join(lines)


def metric_name(study: optuna.Study) -> str:
    return study.user_attrs.get(METRIC) or (study.metric_names or ["value"])[0]


def trial_table(trials: list[FrozenTrial], out_dir: Path) -> tuple[list[str], list[list[Any]]]:
    params = sorted({name for t in trials for name in t.params})
    header = ["number", "state", "value", "duration_s", *params, "run_dir", "note"]
    rows = []
    for t in trials:
        duration = round(t.duration.total_seconds(), 1) if t.duration else ""
        value = t.value if t.value is not None else ""
        run_dir = t.user_attrs.get(RUN_DIR, "") if t.state != TrialState.WAITING else ""  # (a retry's is its origin's)
        if run_dir and Path(run_dir).is_relative_to(out_dir.resolve()):
            run_dir = str(Path(run_dir).relative_to(out_dir.resolve()))
        rows.append([t.number, t.state.name, value, duration, *(t.params.get(p, "") for p in params), run_dir,
                     note(t)])
    return header, rows


def best_summary(study: optuna.Study, trials: list[FrozenTrial], metric: str) -> dict[str, Any]:
    """The best trial and how to rerun it, the counts and the failures (like the old *_summary.json)."""
    summary: dict[str, Any] = {"study": study.study_name, "metric": metric,
                               "direction": study.direction.name.lower(), "trials": _counts(trials)}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        fixed = {k: v for k, v in best.user_attrs.items() if k not in _SWEEPER_ATTRS}
        summary.update({
            "best_trial": best.number,
            "best_value": best.value,
            "best_params": dict(best.params),
            "best_run_dir": best.user_attrs.get(RUN_DIR),
            "rerun": "python run.py " + " ".join(f"{k}={v}" for k, v in {**fixed, **best.params}.items()),
        })
    summary["failures"] = [{"trial": t.number, "error": t.user_attrs[ERROR]} for t in failed(trials)]
    definition = study.user_attrs.get(DEFINITION)
    if definition:
        summary["sweep_arguments"] = definition["arguments"]
    return summary


def write_plots(study: optuna.Study, plot_dir: Path, metric: str) -> dict[str, str]:
    """PNG (matplotlib) and HTML (plotly, when installed) of each plot; returns {plot: why skipped}."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return {"all": "no complete trial yet"}
    plot_dir.mkdir(parents=True, exist_ok=True)
    skipped: dict[str, str] = {}
    for name, function in PLOTS.items():
        if name == "intermediate_values" and not any(t.intermediate_values for t in study.get_trials()):
            continue
        kwargs = {} if name == "intermediate_values" else {"target_name": metric}
        try:
            _png(study, function, kwargs, plot_dir / f"{name}.png")
            _html(study, function, kwargs, plot_dir / f"{name}.html")
        except Exception as err:  # too few trials for this plot, or a degenerate search space
            skipped[name] = first_line(err)
    if not optuna.visualization.is_available():
        skipped["html"] = "plotly is not installed (pip install plotly)"
    return skipped


def _png(study: optuna.Study, function: str, kwargs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_mpl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna's matplotlib backend is "experimental"
        axes = getattr(optuna_mpl, function)(study, **kwargs)
    figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
    figure.set_size_inches(10, 6)
    figure.tight_layout()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.png")
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    os.replace(tmp, path)


def _html(study: optuna.Study, function: str, kwargs: dict, path: Path) -> None:
    if not optuna.visualization.is_available():
        return
    figure = getattr(optuna.visualization, function)(study, **kwargs)
    # plotly.js goes once into the plot dir (offline, no CDN) instead of 4 MB into every page.
    buffer = io.StringIO()
    figure.write_html(buffer, include_plotlyjs="directory", full_html=True)
    if not (path.parent / "plotly.min.js").is_file():
        from plotly.offline import get_plotlyjs

        write_text_atomic(path.parent / "plotly.min.js", get_plotlyjs())
    write_text_atomic(path, buffer.getvalue())


def _counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """complete, pruned, failed (ran and failed), interrupted (failed without running to the end: run again)."""
    counts = {state.name.lower(): 0 for state in TrialState}
    for t in trials:
        counts[t.state.name.lower()] += 1
    counts["failed"] = len(failed(trials))
    counts["interrupted"] = counts.pop("fail") - counts["failed"]
    return {k: v for k, v in counts.items() if v or k in ("complete", "pruned", "failed")}


def _counts_line(trials: list[FrozenTrial]) -> str:
    return ", ".join(f"{n} {state}" for state, n in _counts(trials).items())


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _markdown(study: optuna.Study, metric: str, header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return text.replace("|", "\\|")

    trials = study.get_trials(deepcopy=False)
    lines = [f"# Study {study.study_name}", "",
             f"Optimises `{metric}` ({study.direction.name.lower()}); trials: {_counts_line(trials)}.", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    failures = failed(trials)
    if failures:
        lines += ["", "## Failures", ""]
        lines += [f"- trial {t.number}: {t.user_attrs[ERROR]}" for t in failures]
    return "\n".join(lines) + "\n"
