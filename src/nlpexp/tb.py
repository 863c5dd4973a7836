"""TensorBoard helpers (seed 000): `python -m nlpexp.tb list [ROOT]`, `python -m nlpexp.tb serve [DIR ...] --port N`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from nlpexp.cli import ArgumentParser, command, existing_dir, port
from nlpexp.config import default_paths
from nlpexp.logger.tensorboard import serve_command


def event_dirs(root: Path) -> list[Path]:
    """Every folder under `root` that holds TensorBoard event files."""
    return sorted({p.parent for p in root.rglob("events.out.tfevents.*")})


def read_tags(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalar tags of one event folder: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "histograms": 1})
    acc.Reload()
    tags = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    tags.update({tag: [] for tag in acc.Tags()["histograms"]})
    return tags


STUDY_DIR = "study_hparams"  # <sweep dir>/study_hparams: the study's HPARAMS config (a run of its own in TensorBoard)


def write_study_hparams(study, sweep_dir: Path, metric_names: list[str]) -> Path | None:
    """The HPARAMS view of a study (TensorBoard on the sweep dir): its columns the study's swept params and the
    metric(s) it optimises, as the trials recorded them (metrics.json's `val/<metric>`), not every setting of every
    run. Written by the sweep's summary where its trials wrote TensorBoard events (else None)."""
    sweep_dir = Path(sweep_dir)
    if not any(d != sweep_dir / STUDY_DIR for d in event_dirs(sweep_dir)):
        return None
    from tensorboard.plugins.hparams import summary_v2 as hp
    from torch.utils.tensorboard import SummaryWriter

    distributions = {name: dist for trial in study.get_trials(deepcopy=False)
                     for name, dist in trial.distributions.items()}
    params = [hp.HParam(name, _domain(dist)) for name, dist in sorted(distributions.items())]
    metrics = [hp.Metric(tag, display_name=f"{tag} (optimised)") for tag in metric_names]
    for old in (sweep_dir / STUDY_DIR).glob("events.out.tfevents.*"):  # a rebuilt summary replaces the config
        old.unlink()
    with SummaryWriter(str(sweep_dir / STUDY_DIR)) as writer:
        writer.file_writer.add_summary(hp.hparams_config_pb(params, metrics))
    return sweep_dir / STUDY_DIR


def _domain(distribution):
    """TensorBoard's domain of an Optuna distribution: the choices, or the interval."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from tensorboard.plugins.hparams import summary_v2 as hp

    if isinstance(distribution, CategoricalDistribution):
        kinds = {type(c) for c in distribution.choices}
        return hp.Discrete(list(distribution.choices)) if len(kinds) == 1 and kinds <= {bool, int, float, str} else None
    if isinstance(distribution, IntDistribution):
        return hp.IntInterval(distribution.low, distribution.high)
    if isinstance(distribution, FloatDistribution):
        return hp.RealInterval(float(distribution.low), float(distribution.high))
    return None


@command
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="nlpexp tb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="list runs with TensorBoard logs and their tags")
    listing.add_argument("root", nargs="?", type=existing_dir, help="default: paths.runs_dir (outputs/)")
    serve = sub.add_parser("serve", help="start TensorBoard on a run or a whole outputs tree")
    serve.add_argument("logdir", nargs="*", type=existing_dir,
                       help="default: paths.runs_dir and paths.sweeps_dir (outputs/, multirun/)")
    serve.add_argument("--port", type=port, default=6006)
    serve.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    if args.command == "list":
        for folder in event_dirs(Path(args.root or default_paths()["runs_dir"])):
            print(f"{folder}\n    {', '.join(sorted(read_tags(folder)))}")
        return 0
    logdirs = args.logdir or [default_paths()[key] for key in ("runs_dir", "sweeps_dir")]
    cmd = serve_command([Path(d) for d in logdirs], args.port, args.host)
    print(f"TensorBoard on http://{args.host}:{args.port} for {cmd[4]}")
    os.execv(sys.executable, cmd)  # become TensorBoard: stopping this process stops the server


if __name__ == "__main__":
    raise SystemExit(main())
