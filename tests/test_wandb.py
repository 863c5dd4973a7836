"""W&B: the project from WANDB_PROJECT, entity and run-name keys, one key per figure (no `train/train_...`)."""

from __future__ import annotations

from nlpexp.metrics import from_trainer_log_step as step_values
from nlpexp.pipeline import run

SMOKE = ["task=sbert_nli", "model=tiny_bert", "debug=smoke"]


def test_project_entity_and_name_come_from_the_environment_or_the_keys(compose_run, monkeypatch):
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    monkeypatch.delenv("WANDB_ENTITY", raising=False)
    wandb = compose_run("logger=wandb").logger.wandb
    assert (wandb.project, wandb.entity, wandb.name) == ("from-env", None, None)
    wandb = compose_run("logger=wandb", "logger.wandb.entity=my-team", "logger.wandb.name=lr-3e-5",
                        "logger.wandb.project=p").logger.wandb
    assert (wandb.project, wandb.entity, wandb.name) == ("p", "my-team", "lr-3e-5")


def test_trainer_logs_become_single_prefixed_keys():
    assert step_values({"loss": 1.2, "grad_norm": 3.0, "learning_rate": 2e-5, "train_accuracy": 0.5,
                        "epoch": 0.25}) == {"train/loss": 1.2, "train/grad_norm": 3.0, "train/learning_rate": 2e-5,
                                            "train/accuracy": 0.5, "train/epoch": 0.25}
    assert step_values({"eval_spearman_cosine": 0.7, "eval_runtime": 0.1, "epoch": 0.5}) == {
        "eval/spearman_cosine": 0.7}  # an evaluation's epoch is the training log's of the same step
    # the end-of-training dict: its figures reach the summary through the run's metrics instead
    assert step_values({"train_runtime": 1.0, "train_loss": 1.1, "total_flos": 5.0, "epoch": 1.0}) == {}


def test_an_offline_run_records_its_name_and_clean_keys(compose_run, monkeypatch):
    """A real offline W&B run; a spy on its Run records what nlpexp logged (offline runs keep no readable summary)."""
    from wandb.sdk.wandb_run import Run

    logged, seen = [], {}
    real_log, real_finish = Run.log, Run.finish

    def log(self, data, *args, **kwargs):
        logged.append(dict(data))
        return real_log(self, data, *args, **kwargs)

    def finish(self, *args, **kwargs):
        seen.update(name=self.name, project=self.project, summary=set(self.summary.keys()))
        return real_finish(self, *args, **kwargs)

    monkeypatch.setattr(Run, "log", log)
    monkeypatch.setattr(Run, "finish", finish)
    monkeypatch.setenv("WANDB_PROJECT", "newcomer")
    run(compose_run(*SMOKE, "logger=wandb", "logger.wandb.mode=offline", "logger.wandb.name=my-run"))
    keys = {k for entry in logged for k in entry}
    assert {"train/loss", "train/learning_rate", "eval/spearman_cosine"} <= keys
    assert not [k for k in keys | seen["summary"] if k.startswith("train/train_")]
    assert (seen["name"], seen["project"]) == ("my-run", "newcomer")
