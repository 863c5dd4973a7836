"""Dialogue summarisation on DialogSum: a short BERT2BERT (MiniLM warm start) run next to a lead baseline.

The lead baseline takes the first turn of the dialogue as its summary, scored with the same ROUGE (test: the
best of the three references). The model run is `experiment=summarization_dialogsum` through run.py: 300 steps
of batch 16 and a greedy evaluation of the 500 validation and 500 test dialogues, most of an hour on 2 CPU cores.

    python benchmarks/bench_summarization.py           # the full benchmark (scheduled by the lead)
    python benchmarks/bench_summarization.py --quick   # a small slice, to check the script in a few minutes
"""

from __future__ import annotations

import time

from common import bench_parser, publish, run_job

NAME = "summarization"
ROLES = {"validation": "val", "test": "test"}
METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum", "rouge_sum")
QUICK = ("data.max_train_samples=200", "data.max_eval_samples=20", "trainer.max_steps=10",
         "trainer.eval_every_steps=10", "trainer.batch_size=8", "generation.max_new_tokens=30")


def lead_baseline(quick: bool) -> dict:
    """ROUGE of the first dialogue turn as the summary, on the splits the model run is scored on."""
    from nlpexp.config import compose, instantiate
    from nlpexp.task.rouge import Rouge
    from nlpexp.task.summarization import load_examples

    cfg = compose(["experiment=summarization_dialogsum", "paths.output_dir=unused",
                   *(["data.max_eval_samples=20"] if quick else [])])
    data = instantiate(cfg.data)
    rouge = Rouge(cfg.task.multi_reference, cfg.task.use_stemmer)
    started = time.perf_counter()
    figures = {}
    for role, split in ROLES.items():
        examples = load_examples(data, role, cfg.task.reference_columns)
        leads = [dialogue.strip().splitlines()[0] for dialogue in examples.dialogues]
        scores = rouge.corpus(leads, examples.references)
        figures.update({f"{split}/{k}": v for k, v in scores.items()})
    figures["wall_s"] = round(time.perf_counter() - started, 1)
    return figures


def main(argv: list[str] | None = None) -> int:
    quick = bench_parser(__doc__).parse_args(argv).quick
    overrides = ("experiment=summarization_dialogsum", *(QUICK if quick else ()))
    model = run_job(*overrides)
    baseline = lead_baseline(quick)
    figures = {"quick": quick, "overrides": list(overrides), "lead_first_turn": baseline, "bert2bert_minilm": model}
    publish(NAME, figures, _table(figures), quick)
    return 0


def _table(figures: dict) -> str:
    slice_note = " (--quick: a small slice, not comparable)" if figures["quick"] else ""
    lines = [
        f"### Dialogue summarisation: DialogSum{slice_note}",
        "",
        "ROUGE F1 (0-1), test scored against the best of its 3 references; `rouge_sum` = R1 + R2 + RL.",
        f"Model run: `python run.py {' '.join(figures['overrides'])}`.",
        "",
        "| summary | " + " | ".join(f"{s}/{m}" for s in ROLES.values() for m in ("rouge1", "rouge2", "rougeL",
                                                                                  "rouge_sum"))
        + " | wall time |",
        "|---|" + "---|" * (4 * len(ROLES) + 1),
    ]
    for label, key in (("lead: first turn", "lead_first_turn"), ("BERT2BERT (MiniLM), trained", "bert2bert_minilm")):
        row = figures[key]
        cells = [f"{row[f'{s}/{m}']:.4f}" for s in ROLES.values() for m in ("rouge1", "rouge2", "rougeL", "rouge_sum")]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {row['wall_s']:.0f} s |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
