"""The model group (`conf/model/<name>.yaml` builds a ModelSpec): where a model comes from (bundled, local folder,
hub id, registry or random init) and how to load it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from nlpexp import NlpexpError
from nlpexp.config import env_flag
from nlpexp.model.weights import BUNDLED_PREFIX, bundled_path, materialize_random, parameters_not_in
from nlpexp.paths import group_dir, hub_cached, hub_reachable
from nlpexp.rules import Int, Name, Pooling, Seed

MAX_SEQ_LENGTH = 32768  # where a model's own limit is unknown (a hub id offline): no encoder nlpexp runs reads more
REGISTRY = "registry:"  # nlpexp.model.registry.PREFIX: the run replaces such a name by its folder (use_registry)


class ModelSpec:
    """Its settings' types and ranges are its annotations, checked (nlpexp.schema) before anything is built."""

    def __init__(
        self,
        name: Name,
        name_or_path: Name | None = None,
        tokenizer: Name | None = None,
        random_init: Mapping | None = None,
        max_seq_length: Annotated[int, Int(1, MAX_SEQ_LENGTH)] = 128,
        pooling: Pooling = "mean",
        trust_remote_code: bool = False,
        seed: Seed = 0,
        # How a text generator is built from the checkpoint: as it is (its config says seq2seq or causal LM), or as
        # an EncoderDecoderModel whose encoder and decoder both start from it (cross-attention; Rothe et al. 2020).
        build: Literal["auto", "encoder_decoder"] = "auto",
        allow_pickle_weights: bool = False,
    ):
        if name_or_path is None and random_init is None:
            raise NlpexpError(f"model '{name}': set model.name_or_path or model.random_init")
        if random_init is not None and not tokenizer:
            raise NlpexpError(f"model '{name}': a random_init model needs model.tokenizer")
        self.name = name
        self.name_or_path = name_or_path
        self.tokenizer = tokenizer
        self.random_init = dict(random_init) if random_init is not None else None
        self.max_seq_length = max_seq_length
        self.pooling = pooling
        # Dangerous switches (nlpexp.config.SWITCHES): the gate lets only the command line set them; or the env.
        self.trust_remote_code = trust_remote_code or env_flag("NLPEXP_TRUST_REMOTE_CODE")
        self.seed = seed  # of random_init weights
        self.allow_pickle_weights = allow_pickle_weights or env_flag("NLPEXP_ALLOW_PICKLE_WEIGHTS")
        self.build = build

    @property
    def load_kwargs(self) -> dict:
        """from_pretrained settings of every weight load: no remote code, safetensors only, unless opted in (pickled
        .bin weights can run code when unpickled; transformers still reads them with torch.load(weights_only=True))."""
        return {"trust_remote_code": self.trust_remote_code, "use_safetensors": not self.allow_pickle_weights}

    def path(self, auto_class: str = "AutoModel") -> str:
        """A loadable folder or hub id; random-init models are written once to a temporary folder. A given
        name_or_path wins over random_init: `model.name_or_path=<run>/best_model` reloads a trained tiny model."""
        if self.random_init is not None and self.name_or_path is None:
            init = tuple(sorted(self.random_init.items()))
            return materialize_random(self.tokenizer_path(), init, auto_class, self.seed)
        return resolve(self.name_or_path, self.name)

    def check(self) -> None:
        """Fail now, before torch is even imported, if the weights or the tokenizer cannot be found."""
        if self.name_or_path is not None:
            resolve(self.name_or_path, self.name)
        if self.tokenizer:
            resolve(self.tokenizer, self.name)

    def tokenizer_path(self) -> str:
        return resolve(self.tokenizer, self.name) if self.tokenizer else self.path()

    def load_tokenizer(self):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.tokenizer_path(), trust_remote_code=self.trust_remote_code)

    def sentence_transformer(self):
        """A SentenceTransformer: a saved one as it is, anything else as transformer + `pooling`."""
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

        path = self.path()
        if (Path(path) / "modules.json").is_file():
            model = SentenceTransformer(path, trust_remote_code=self.trust_remote_code, local_files_only=True,
                                        model_kwargs={"use_safetensors": not self.allow_pickle_weights})
            pooling = model[1] if len(model) > 1 and isinstance(model[1], Pooling) else None
            if pooling is None or pooling.pooling_mode == self.pooling:
                model.max_seq_length = self.max_seq_length
                return model
            transformer = model[0]
        else:
            # The configured tokenizer only where the folder has none (a random-init folder and a trained best_model
            # carry theirs): sentence-transformers deprecates loading a model with another's.
            separate = self.tokenizer and not (Path(path) / "tokenizer_config.json").is_file()
            remote = {"trust_remote_code": self.trust_remote_code}
            transformer = Transformer(path, max_seq_length=self.max_seq_length, model_kwargs=self.load_kwargs,
                                      processor_kwargs=remote, config_kwargs=remote,
                                      tokenizer_name_or_path=self.tokenizer_path() if separate else None)
        transformer.max_seq_length = self.max_seq_length
        pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode=self.pooling)
        return SentenceTransformer(modules=[transformer, pooling])

    def generative_model(self):
        """A text generator: a seq2seq model or a causal LM, whichever the checkpoint is; with
        `build=encoder_decoder` a BERT-style checkpoint becomes both halves of an EncoderDecoderModel."""
        import transformers

        config = self.check_can_generate()
        if self.build == "encoder_decoder" and not config.is_encoder_decoder:
            return self._warm_started_encoder_decoder()
        auto_class = "AutoModelForSeq2SeqLM" if config.is_encoder_decoder else "AutoModelForCausalLM"
        return getattr(transformers, auto_class).from_pretrained(self.path(auto_class), **self.load_kwargs)

    def new_parameters(self, model) -> list:
        """What generative_model() added untrained to its checkpoint: a warm-started encoder-decoder's cross-attention
        (and the decoder's LM head where the checkpoint has none); none for a model loaded as saved or all random."""
        if self.build != "encoder_decoder" or self._config().is_encoder_decoder or self.name_or_path is None:
            return []
        return parameters_not_in(model.decoder, self.path())

    def check_can_generate(self):
        """The model's config (no weights read) if it can generate text; one clear error for an encoder."""
        from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

        config = self._config()
        if self.build == "auto" and not config.is_encoder_decoder \
                and config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
            raise NlpexpError(f"model '{self.name}' is an encoder ({config.model_type}) and cannot generate text; "
                              f"set model.build=encoder_decoder (e.g. model=bert2bert_minilm) or use a seq2seq or "
                              f"decoder-only model")
        return config

    def _config(self):
        """The config of what path() loads: a given folder's (a trained tiny model), else the random-init one."""
        from transformers import AutoConfig

        if self.random_init is not None and self.name_or_path is None:
            init = dict(self.random_init)
            return AutoConfig.for_model(init.pop("model_type"), **init)
        return AutoConfig.from_pretrained(self.path(), trust_remote_code=self.trust_remote_code)

    def _warm_started_encoder_decoder(self):
        from transformers import EncoderDecoderModel

        path = self.path()
        safe = not self.allow_pickle_weights
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(
            path, path, encoder_use_safetensors=safe, decoder_use_safetensors=safe)
        tokenizer = self.load_tokenizer()
        # BERT vocabularies have no BOS/EOS: [CLS] starts the summary and [SEP] ends it.
        special = {"decoder_start_token_id": _first_set(tokenizer.cls_token_id, tokenizer.bos_token_id),
                   "eos_token_id": _first_set(tokenizer.sep_token_id, tokenizer.eos_token_id),
                   "pad_token_id": tokenizer.pad_token_id}
        if None in special.values():
            raise NlpexpError(f"model '{self.name}': build=encoder_decoder needs a tokenizer with start, end and "
                              f"pad tokens ([CLS]/[SEP]/[PAD] or <s>/</s>/<pad>); got {special}")
        for key, value in special.items():
            setattr(model.config, key, value)
            setattr(model.generation_config, key, value)
        return model


def _first_set(*values):
    return next((v for v in values if v is not None), None)


def use_registry(model: ModelSpec, root: str) -> None:
    """A ModelSpec's `registry:<name>[@alias]` (weights or tokenizer) becomes that version's folder in `root`, the
    run's paths.registry_dir: looked up once, when the run is built, in the registry the run's config names."""
    for key in ("name_or_path", "tokenizer"):
        value = getattr(model, key)
        if isinstance(value, str) and value.startswith(REGISTRY):
            from nlpexp.model.registry import resolve as look_up  # the registry's store: only for such a model

            setattr(model, key, str(look_up(value, Path(root))))


def resolve(name_or_path: str, model_name: str) -> str:
    """bundled:<name> | local folder | hub id (offline: one clear error, fast); registry:<name>@<alias> was
    replaced by its folder when the run was built (use_registry)."""
    if name_or_path.startswith(BUNDLED_PREFIX):
        return bundled_path(name_or_path.removeprefix(BUNDLED_PREFIX))
    if name_or_path.startswith(REGISTRY):
        raise NlpexpError(f"model '{model_name}': {name_or_path} is looked up in a run's paths.registry_dir "
                          f"(nlpexp.model.use_registry), and none was given")
    as_path = Path(name_or_path).expanduser()
    if as_path.is_dir():
        return str(as_path)
    if name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1:
        raise NlpexpError(f"model '{model_name}': no such folder {name_or_path}")
    if hub_reachable():
        return name_or_path
    if cached := hub_cached(name_or_path):
        return str(cached)
    # conf/model may have a tiny random model of the same architecture
    tiny = f"tiny_{model_name}"
    twin = f"model={tiny} (tiny and random: tries the config offline), " if \
        (group_dir("model") / f"{tiny}.yaml").is_file() else ""
    raise NlpexpError(
        f"model '{model_name}': '{name_or_path}' is not a local folder and the Hugging Face Hub is unreachable "
        f"(offline, not cached). Use {twin}a bundled model (model=minilm; model=bert2bert_minilm "
        f"to generate text) or model.name_or_path=<local folder>"
    )
