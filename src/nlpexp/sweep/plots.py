"""A study's plots in its sweep dir: PNG (matplotlib) and HTML (plotly, when installed), one per optuna plot."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from nlpexp import first_line
from nlpexp.io import write_text_atomic

# optuna.visualization.plot_<name> (and its matplotlib twin of the same name)
PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "intermediate_values")
# With several objectives optuna's single-value plots need a target: the front is the plot that says most.
MULTI_OBJECTIVE_PLOTS = ("pareto_front",)


def write_plots(study: optuna.Study, plot_dir: Path, metrics: list[str]) -> dict[str, str]:
    """Write the plots; returns {plot: why skipped}."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return {"all": "no complete trial yet"}
    plot_dir.mkdir(parents=True, exist_ok=True)
    several = len(metrics) > 1
    skipped: dict[str, str] = {}
    for name in MULTI_OBJECTIVE_PLOTS if several else PLOTS:
        if name == "intermediate_values" and not any(t.intermediate_values for t in study.get_trials()):
            continue
        kwargs = {} if name == "intermediate_values" else (
            {"target_names": metrics} if several else {"target_name": metrics[0]})
        try:
            _png(study, f"plot_{name}", kwargs, plot_dir / f"{name}.png")
            _html(study, f"plot_{name}", kwargs, plot_dir / f"{name}.html")
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


