"""The bad-settings catalogue (with tests/test_bad_inputs.py, the bad-input one): every setting outside the schema
(nlpexp.schema) is refused before anything is built, as one NlpexpError line that names the key and what it allows.

In-process (compose + validate, ~0.1 s a case); the command line's side is in test_bad_inputs.py.
"""

from __future__ import annotations

import re

import pytest

from nlpexp import NlpexpError
from nlpexp.config import compose
from nlpexp.schema import validate

SUMMARIZE = "task=summarization model=tiny_t5 data=dialogsum"
CLASSIFY = "task=classification data=imdb"
SWEEP = "hparams_search=sbert_nli"  # composed with Hydra's node, as the study sweeper validates it
# overrides (space-separated; a preset prefix from above) | the key the line must name | what it must say is allowed
SETTINGS = """
trainer.max_steps=abc | trainer.max_steps | an integer >= -1
trainer.max_steps=-2 | trainer.max_steps | an integer >= -1
trainer.max_steps=1.5 | trainer.max_steps | an integer >= -1
trainer.max_epochs=0 trainer.max_steps=-1 | trainer.max_epochs | must be > 0 when trainer.max_steps is not
trainer.max_epochs=-1 | trainer.max_epochs | a number >= 0
trainer.max_epochs=abc | trainer.max_epochs | a number >= 0
trainer.eval_every_steps=abc | trainer.eval_every_steps | a positive integer or null
trainer.eval_every_steps=-5 | trainer.eval_every_steps | a positive integer or null
trainer.eval_every_steps=true | trainer.eval_every_steps | a positive integer or null
trainer.dataloader_workers=-1 | trainer.dataloader_workers | an integer in \\[0, 256\\]
trainer.dataloader_workers=abc | trainer.dataloader_workers | an integer in \\[0, 256\\]
trainer.dataloader_workers=100000 | trainer.dataloader_workers | an integer in \\[0, 256\\]
trainer.batch_size=true | trainer.batch_size | a positive integer, got true
trainer.batch_size=false | trainer.batch_size | a positive integer, got false
trainer.batch_size=-3 | trainer.batch_size | a positive integer
trainer.batch_size=2.5 | trainer.batch_size | a positive integer
trainer.batch_size=null | trainer.batch_size | a positive integer, got null
trainer.batch_size=[8,16] | trainer.batch_size | a positive integer
trainer.eval_batch_size=0 | trainer.eval_batch_size | a positive integer
trainer.eval_batch_size=abc | trainer.eval_batch_size | a positive integer
trainer.gradient_accumulation_steps=-1 | trainer.gradient_accumulation_steps | a positive integer
trainer.gradient_accumulation_steps=true | trainer.gradient_accumulation_steps | a positive integer
trainer.logging_steps=0 | trainer.logging_steps | a positive integer
trainer.logging_steps=abc | trainer.logging_steps | a positive integer
trainer.save_total_limit=-1 | trainer.save_total_limit | a positive integer or null
trainer.save_total_limit=0 | trainer.save_total_limit | a positive integer or null
trainer.save_total_limit=abc | trainer.save_total_limit | a positive integer or null
trainer.early_stopping_patience=-1 | trainer.early_stopping_patience | a positive integer or null
trainer.early_stopping_patience=0 | trainer.early_stopping_patience | a positive integer or null
trainer.early_stopping_patience=abc | trainer.early_stopping_patience | a positive integer or null
trainer.precision=16 | trainer.precision | one of 32, bf16, fp16
trainer.precision=true | trainer.precision | one of 32, bf16, fp16
trainer.precision=fp64 | trainer.precision | one of 32, bf16, fp16
trainer.tf32=maybe | trainer.tf32 | true or false or null
trainer.tf32=1 | trainer.tf32 | true or false or null
trainer.group_by_length=yes | trainer.group_by_length | true or false
trainer.group_by_length=1 | trainer.group_by_length | true or false
trainer.group_by_length=sometimes | trainer.group_by_length | auto
trainer.auto_find_batch_size=2 | trainer.auto_find_batch_size | true or false
trainer.resume=3 | trainer.resume | true or false or a checkpoint folder
trainer.resume=null | trainer.resume | true or false or a checkpoint folder
trainer.resume='' | trainer.resume | true or false or a checkpoint folder
+trainer.fp16=true | trainer.fp16 | not a setting; known: max_epochs
+trainer.batchsize=4 | trainer.batchsize | did you mean trainer.batch_size
+trainer.learning_rate=0.1 | trainer.learning_rate | not a setting
~trainer.batch_size +trainer.batch_sizes=4 | trainer.batch_sizes | did you mean trainer.batch_size
seed=abc | seed | an integer in \\[0, 4294967295\\]
seed=-1 | seed | an integer in \\[0, 4294967295\\]
seed=4294967296 | seed | an integer in \\[0, 4294967295\\]
seed=1.5 | seed | an integer in \\[0, 4294967295\\]
seed=true | seed | an integer in \\[0, 4294967295\\], got true
seed=null | seed | an integer in \\[0, 4294967295\\], got null
mode=predict | mode | one of train, eval, test
mode=1 | mode | one of train, eval, test
+paths.logs_dir=/tmp | paths.logs_dir | not a setting; .*known: root_dir, data_dir
optimized_metric=null | optimized_metric | a non-empty string
model.pooling=foo | model.pooling | one of mean, cls, max, mean_sqrt_len_tokens, weightedmean, lasttoken
model.pooling=1 | model.pooling | one of mean, cls
model.pooling=null | model.pooling | one of mean, cls
model.max_seq_length=0 | model.max_seq_length | an integer in \\[1, 32768\\]
model.max_seq_length=100000 | model.max_seq_length | an integer in \\[1, 32768\\]
model.max_seq_length=-8 | model.max_seq_length | an integer in \\[1,
model.max_seq_length=abc | model.max_seq_length | an integer in \\[1,
model.max_seq_length=12.5 | model.max_seq_length | an integer in \\[1,
model=minilm model.max_seq_length=1024 | model.max_seq_length | an integer in \\[1, 512\\] \\(the model's max_position
model=minilm model.max_seq_length=0 | model.max_seq_length | an integer in \\[1, 32768\\]
+model.random_init.max_position_embeddings=64 model.max_seq_length=128 | model.max_seq_length | in \\[1, 64\\]
model.trust_remote_code=yes | model.trust_remote_code | true or false
model.trust_remote_code=1 | model.trust_remote_code | true or false
+model.build=magic | model.build | one of auto, encoder_decoder
model.seed=-3 | model.seed | an integer in \\[0, 4294967295\\]
model.name=??? | model.name | mandatory \\(\\?\\?\\?\\) and not set: pass model.name=<value>
model.name=null | model.name | a non-empty string
model.name='' | model.name | a non-empty string
~model.name | model.name | is missing; it is required
model.random_init=5 | model.random_init | a mapping or null
model.tokenizer=[a,b] | model.tokenizer | a non-empty string or null
+model.fp16=true | model.fp16 | not a setting
++model.allow_pickle_weights=maybe | model.allow_pickle_weights | true or false
optimizer.betas=[2.0,0.999] | optimizer.betas | a list of 2 × \\(a number in \\[0, 1\\)\\)
optimizer.betas=[0.9] | optimizer.betas | a list of 2
optimizer.betas=[0.9,-0.1] | optimizer.betas | a list of 2
optimizer.betas=0.9 | optimizer.betas | a list of 2
optimizer.betas=[0.9,abc] | optimizer.betas | a list of 2
optimizer.eps=-1 | optimizer.eps | a positive number
optimizer.eps=0 | optimizer.eps | a positive number
optimizer.eps=abc | optimizer.eps | a positive number
optimizer.lr=0 | optimizer.lr | a positive number
optimizer.lr=nan | optimizer.lr | a positive number
optimizer.lr=inf | optimizer.lr | a positive number
optimizer.lr=true | optimizer.lr | a positive number, got true
optimizer.lr=??? | optimizer.lr | mandatory
~optimizer.lr | optimizer.lr | is missing; it is required
optimizer.weight_decay=-0.5 | optimizer.weight_decay | a number >= 0
optimizer.weight_decay=abc | optimizer.weight_decay | a number >= 0
optimizer.fused=maybe | optimizer.fused | true or false or null
+optimizer.amsgrad=2 | optimizer.amsgrad | true or false
+optimizer.momentum=0.9 | optimizer.momentum | not a setting; known: lr
optimizer=adam optimizer.betas=[0.9,1.0] | optimizer.betas | a list of 2
optimizer=adam optimizer.lr=-1 | optimizer.lr | a positive number
scheduler.name=step | scheduler.name | one of constant, linear, cosine
scheduler.warmup_steps=-1 | scheduler.warmup_steps | an integer >= 0
scheduler.warmup_steps=abc | scheduler.warmup_steps | an integer >= 0
scheduler.warmup_ratio=1 | scheduler.warmup_ratio | a number in \\[0, 1\\)
scheduler.warmup_ratio=-0.1 | scheduler.warmup_ratio | a number in \\[0, 1\\)
+scheduler.cycles=2 | scheduler.cycles | not a setting
~scheduler.name | scheduler.name | is missing; it is required
data.unknown_labels=ignore | data.unknown_labels | one of error, drop
data.max_train_samples=-1 | data.max_train_samples | a positive integer or null
data.max_eval_samples=abc | data.max_eval_samples | a positive integer or null
task=tsdae data.max_eval_samples=-1 | data.max_eval_samples | a positive integer or null
data.label_names=neutral | data.label_names | a list of \\(a non-empty string\\) or null
data.splits.train=snli/test | data.splits | a mapping of names to a list of
data.seed=-1 | data.seed | an integer in \\[0, 4294967295\\]
+data.columns.premise=1 | data.columns | a mapping of names to a non-empty string or null
~data.root | data.root | is missing; it is required
+data.shuffle=sometimes | data.shuffle | true or false
+data.split_ratios={train:1.5} | data.split_ratios | a mapping of names to a number in \\[0, 1\\] or null
task.monitor=accuracy | task.monitor | 'val/<metric>'
task.head_lr=0 | task.head_lr | a positive number or null
task.sts.max_eval_samples=0 | task.sts.max_eval_samples | a positive integer or null
+task.temperature=0.5 | task.temperature | not a setting; known: monitor, cache_dir, sts
task=embedding loss.scale=-20 | loss.scale | a positive number
task=embedding loss.scale=abc | loss.scale | a positive number
task=embedding task.nli_format=quads | task.nli_format | one of all_pairs, entailment_pairs, triplets
task=embedding task.batch_sampler=random | task.batch_sampler | one of batch_sampler, no_duplicates
task=embedding task.max_score=0 | task.max_score | a positive number
task=embedding task.label_scores={entailment:high} | task.label_scores | a mapping of names to a number
task=embedding loss=cached_mnrl loss.mini_batch_size=0 | loss.mini_batch_size | a positive integer
task=augsbert task.gold_size=0 | task.gold_size | a positive integer
task=augsbert task.pair_sampling=all | task.pair_sampling | one of given, random, nearest
task=augsbert task.silver_threshold=2 | task.silver_threshold | a number in \\[0, 1\\] or null
task=augsbert task.pairs_per_sentence=-1 | task.pairs_per_sentence | a positive integer
task=tsdae task.deletion_ratio=1 | task.deletion_ratio | a number in \\[0, 1\\)
task=tsdae task.text_columns=premise | task.text_columns | a list of
task=tsdae task.pooling=sum | task.pooling | one of mean, cls
CLASSIFY task.dropout=2 | task.dropout | a number in \\[0, 1\\)
CLASSIFY task.dropout=-0.1 | task.dropout | a number in \\[0, 1\\)
CLASSIFY task.dropout=abc | task.dropout | a number in \\[0, 1\\)
SUMMARIZE generation.length_penalty=abc | generation.length_penalty | a number, got 'abc'
SUMMARIZE generation.length_penalty=inf | generation.length_penalty | a number
SUMMARIZE generation.num_beams=0 | generation.num_beams | a positive integer
SUMMARIZE generation.max_new_tokens=abc | generation.max_new_tokens | a positive integer
SUMMARIZE generation.no_repeat_ngram_size=-1 | generation.no_repeat_ngram_size | an integer >= 0
SUMMARIZE generation.early_stopping=never | generation.early_stopping | true or false
SUMMARIZE task.multi_reference=worst | task.multi_reference | one of best, mean
SUMMARIZE task.max_target_length=0 | task.max_target_length | a positive integer
SUMMARIZE task.reference_columns=summary | task.reference_columns | a list of
logger=wandb logger.wandb.tags=x | logger.wandb.tags | a list of
logger=wandb logger.wandb.project=null | logger.wandb.project | a non-empty string
logger.tensorboard.histograms=often | logger.tensorboard.histograms | true or false
+logger.tensorboard.flush_secs=5 | logger.tensorboard.flush_secs | not a setting
paths.data_dir=${oc.env:NLPEXP_UNSET_VARIABLE} | paths.data_dir | Environment variable 'NLPEXP_UNSET_VARIABLE' not found
paths.cache_dir=${oc.env:NLPEXP_UNSET_VARIABLE} | paths.cache_dir | Environment variable 'NLPEXP_UNSET_VARIABLE'
model.name=${oc.env:NLPEXP_UNSET_VARIABLE} | model.name | Environment variable 'NLPEXP_UNSET_VARIABLE'
trainer.batch_size=${trainer.nope} | trainer.batch_size | Interpolation key 'trainer.nope' not found
seed=${nope:1} | seed | Unsupported interpolation type nope
paths.ledger_file=??? | paths.ledger_file | mandatory
SWEEP hydra.sweeper.direction=sideways | hydra.sweeper.direction | one of minimize, maximize
SWEEP hydra.sweeper.storage=notaurl | hydra.sweeper.storage | an SQLAlchemy URL such as sqlite:///<file>
SWEEP hydra.sweeper.n_trials=0 | hydra.sweeper.n_trials | a positive integer
SWEEP hydra.sweeper.n_jobs=0 | hydra.sweeper.n_jobs | a positive integer
SWEEP hydra.sweeper.max_failure_rate=2 | hydra.sweeper.max_failure_rate | a number in \\[0, 1\\]
SWEEP hydra.sweeper.study_name='../escape' | hydra.sweeper.study_name | letters, digits
SWEEP hydra.sweeper.sampler._target_=os.system | hydra.sweeper.sampler._target_ | optuna.samplers.<Sampler>
SWEEP hydra.sweeper.grace_period=0 | hydra.sweeper.grace_period | a positive integer
"""
# Refused while composing (Hydra's override grammar, its structured configs, the config groups): same one line.
COMPOSE = """
SWEEP hydra.sweeper.n_trials=abc | hydra.sweeper.n_trials | could not be converted to Integer
SWEEP hydra.sweeper.promote_best=maybe | hydra.sweeper.promote_best | Value 'maybe' is not a valid bool
SWEEP hydra/sweeper/pruner=sometimes | hydra/sweeper/pruner | options of hydra/sweeper/pruner: halving, .*median, none
hparams_search=nope | hparams_search | hparams_search=nope is not an option; options of hparams_search: classification
trainer.fp16=true | trainer.fp16 | trainer.fp16 is not a setting; trainer has: .*precision
optimizer=sgd | optimizer | optimizer=sgd is not an option; options of optimizer: adam, adamw
"""


def _cases(table: str) -> list:
    presets = {"SUMMARIZE": SUMMARIZE, "CLASSIFY": CLASSIFY, "SWEEP": SWEEP}
    cases = []
    for line in table.strip().splitlines():
        overrides, key, allowed = (part.strip() for part in line.split(" | "))
        words = overrides.split(" ")
        words = [*presets[words[0]].split(" "), *words[1:]] if words[0] in presets else words
        cases.append(pytest.param(words, key, allowed, id=overrides))
    return cases


def _compose(tmp_path, overrides):
    return compose([f"paths.output_dir={tmp_path}/run", f"paths.ledger_file={tmp_path}/ledger.jsonl",
                    "model=tiny_bert", *overrides], with_hydra=any(o.startswith("hparams") for o in overrides))


@pytest.mark.parametrize("overrides,key,allowed", _cases(SETTINGS))
def test_a_setting_outside_the_schema_is_one_line_naming_it(overrides, key, allowed, tmp_path):
    cfg = _compose(tmp_path, overrides)
    with pytest.raises(NlpexpError) as err:
        validate(cfg)
    message = str(err.value)
    assert "\n" not in message and re.search(rf"(^|\W){re.escape(key)}(\W|$)", message), message
    assert re.search(allowed, message), message
    assert not (tmp_path / "run").exists()  # nothing was built or written


@pytest.mark.parametrize("overrides,key,allowed", _cases(COMPOSE))
def test_a_setting_refused_while_composing_is_one_line_naming_it(overrides, key, allowed, tmp_path):
    with pytest.raises(NlpexpError) as err:
        _compose(tmp_path, overrides)
    message = str(err.value)
    assert "\n" not in message and key in message and re.search(allowed, message), message


def test_the_catalogue_is_large_enough():
    assert len(_cases(SETTINGS)) + len(_cases(COMPOSE)) >= 150


@pytest.mark.parametrize("overrides", [["trainer.precision=32"], ["trainer.max_epochs=2"], ["+trainer_note=x"],
                                       ["optimizer=adam"], ["trainer.resume=/some/checkpoint"], ["seed=0"]])
def test_good_settings_pass(overrides, tmp_path):
    validate(_compose(tmp_path, overrides))

