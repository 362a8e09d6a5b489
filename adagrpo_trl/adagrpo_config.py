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

import logging
import math
from dataclasses import dataclass, field

from trl import GRPOConfig


logger = logging.getLogger(__name__)

GATE_MODES = ("adaptive", "always", "never", "difficulty", "discriminability")
ROLLOUT_MODES = ("sample", "beam")
GATE_NORMALIZATIONS = ("diluted", "admitted")
GATE_CANDIDATES = ("all", "valid")


@dataclass
class AdaGRPOConfig(GRPOConfig):
    r"""
    Configuration class for the [`AdaGRPOTrainer`].

    AdaGRPO ("Adaptive Loss Balancing for Noise-Robust GRPO in Generative Recommendation",
    https://huggingface.co/papers/2606.08480) always trains on the ground-truth NLL and adds the GRPO term only for the
    samples that a binary gate admits: the policy is uncertain about the ground truth (*difficulty*) and the reward
    separates the ground truth from rollouts and cross-query negatives (*discriminability*). Only the parameters
    specific to AdaGRPO are listed here; see [`~trl.GRPOConfig`] for the others.

    With K = `num_generations` rollouts per prompt and scores s from the weighted sum of the reward functions:

    - k_τ = ceil(τ·K); rank_π(y*) = 1 + #{k : log π(o_k|x) > log π(y*|x)};
      difficulty D = [rank_π(y*) > k_τ];
    - R1 = [1 + #{k : s_k > s*} ≤ k_τ]; R2 = every cross-query negative n has
      #{c ∈ {y*} ∪ rollouts : s_c ≤ s_n} ≤ ceil(ρ·(K+1)); discriminability R = R1 ∧ R2;
    - gate α = D ∧ R (`gate_mode="adaptive"`).

    The full definitions (ties, missing scores, the loss) are in `docs/method.md#definitions`, the normalisers of the
    gated term in `docs/method.md#normaliser` and what the trainer guarantees in `docs/method.md#guarantees`.

    Parameters:
        > Parameters that control the loss

        nll_coef (`float`, *optional*, defaults to `1.0`):
            Weight of the ground-truth NLL term (mean over the ground-truth tokens, EOS included, of −log π; averaged
            over prompts). `0.0` removes the anchor: with `gate_mode="always"` this is plain GRPO.
        grpo_coef (`float`, *optional*, defaults to `1.0`):
            Weight of the gated GRPO term.
        gate_normalization (`str`, *optional*, defaults to `"diluted"`):
            Normaliser of the gated GRPO term. `"diluted"`: GRPO's own normaliser over every row/token of the batch,
            so the RL term shrinks with the gate rate (the paper's per-sample sum). `"admitted"`: the term is rescaled
            by (all rows or tokens) / (admitted rows or tokens) of the generation batch, so admitted samples weigh as
            much as in ungated GRPO; the rescaling applies to everything the GRPO term holds (KL, entropy bonus). See
            `docs/method.md#normaliser`.

        > Parameters that control the sample gate

        gate_mode (`str`, *optional*, defaults to `"adaptive"`):
            `"adaptive"` (α = D ∧ R), `"always"` (α ≡ 1: a fixed NLL+GRPO mixture), `"never"` (α ≡ 0: pure NLL),
            `"difficulty"` (α = D) or `"discriminability"` (α = R).
        gate_tau (`float`, *optional*, defaults to `0.25`):
            τ ∈ (0, 1]: the top fraction of the K rollouts used by the difficulty and R1 tests (k_τ = ceil(τ·K)).
        gate_rho (`float`, *optional*, defaults to `0.5`):
            ρ ∈ (0, 1]: the bottom fraction of the K+1 candidates (ground truth and rollouts) in which every
            cross-query negative must fall for R2.
        num_cross_negatives (`int`, *optional*, defaults to `4`):
            M: number of cross-query negatives per prompt (rollouts of other prompts of the same global generation
            batch, never equal to the ground truth), drawn with a generator seeded from `seed`. `0` makes R2 true.
        ground_truth_column (`str`, *optional*, defaults to `"completion"`):
            Dataset column holding the ground-truth completion text (a string, or a conversational completion whose
            last message's `content` is used). It is tokenised without special tokens and EOS is appended.

        > Parameters that control the rollouts

        rollout (`str`, *optional*, defaults to `"sample"`):
            `"sample"`: TRL's sampling (optionally constrained by the trainer's `logits_processors`). `"beam"`: K
            distinct beams per prompt, best first (beam outputs are not policy samples, so the policy gradient is
            biased towards the policy's own order; this is the paper's "policy order"). Beam rollouts need whole
            groups on every process: `per_device_train_batch_size * steps_per_generation` divisible by
            `num_generations`.
    """

    # Parameters that control the loss
    nll_coef: float = field(
        default=1.0,
        metadata={"help": "Weight of the ground-truth NLL term (always on). 0 removes the anchor."},
    )
    grpo_coef: float = field(
        default=1.0,
        metadata={"help": "Weight of the GRPO term, restricted to the samples the gate admits."},
    )
    gate_normalization: str = field(
        default="diluted",
        metadata={
            "help": "Normaliser of the gated GRPO term: 'diluted' (GRPO's own normaliser over all samples; the RL "
            "term shrinks with the gate rate, as in the paper) or 'admitted' (normalised over admitted samples).",
            "choices": list(GATE_NORMALIZATIONS),
        },
    )

    # Parameters that control the sample gate
    gate_mode: str = field(
        default="adaptive",
        metadata={
            "help": "Which samples get the GRPO term: 'adaptive' (difficulty AND discriminability), 'always' (a fixed "
            "NLL+GRPO mixture), 'never' (pure NLL), 'difficulty' or 'discriminability' (ablations).",
            "choices": list(GATE_MODES),
        },
    )
    gate_tau: float = field(
        default=0.25,
        metadata={"help": "τ in (0, 1]: top fraction of the K rollouts for the difficulty and R1 tests."},
    )
    gate_rho: float = field(
        default=0.5,
        metadata={"help": "ρ in (0, 1]: bottom fraction of the K+1 candidates where cross-query negatives must fall."},
    )
    num_cross_negatives: int = field(
        default=4,
        metadata={"help": "M: cross-query negatives per prompt for the R2 test (0 makes R2 true)."},
    )
    gate_reward_weights: list[float] | None = field(
        default=None,
        metadata={
            "help": "Weights of the reward functions when the gate scores ground truths, rollouts and negatives "
            "(default: `reward_weights`). E.g. reward_funcs [hit, sasrec] with gate_reward_weights [0, 1]: GRPO "
            "trains on hit + ranker while the gate judges the ranker alone. A weighting that gives a hit reward "
            "(which scores the ground truth at its maximum by construction) a nonzero weight is refused."
        },
    )
    gate_candidates: str = field(
        default="all",
        metadata={
            "help": "Candidates of R1 and R2: 'all' rollouts (an invalid rollout, scored at the invalid reward, "
            "counts as one the ranker beats) or only the 'valid' (catalog) rollouts, with the cut-offs taken over "
            "their count. 'valid' needs a reward function that reports invalid items (RankerReward does).",
            "choices": list(GATE_CANDIDATES),
        },
    )
    ground_truth_column: str = field(
        default="completion",
        metadata={"help": "Dataset column holding the ground-truth completion text."},
    )

    # Parameters that control the rollouts
    rollout: str = field(
        default="sample",
        metadata={
            "help": "'sample' (TRL's sampling) or 'beam' (K distinct beams per prompt, best first).",
            "choices": list(ROLLOUT_MODES),
        },
    )

    # Inherited from TrainingArguments (which the Trainer itself ignores); redeclared to document `adagrpo-trl train`.
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={
            "help": "`adagrpo-trl train`: 'true' (or the bare flag) resumes from the latest complete checkpoint in "
            "output_dir, and starts from scratch with a warning if there is none (one command for the first launch "
            "and every restart); a checkpoint folder resumes from it. The run continues exactly as an uninterrupted "
            "one would (same rollouts, gates, losses and weights on the same machine; logged averages too when "
            "save_steps is a multiple of logging_steps)."
        },
    )

    def __post_init__(self):
        if isinstance(self.num_generations, bool) or (
            isinstance(self.num_generations, int) and self.num_generations < 2
        ):  # before TRL divides by it
            raise ValueError(
                f"`num_generations` must be an integer >= 2 (GRPO compares rollouts within a group), got "
                f"num_generations={self.num_generations!r}."
            )
        try:
            super().__post_init__()
        except ValueError as error:
            if "must be divisible by num_generations" not in str(error):
                raise
            # TRL names the derived generation_batch_size; say which settings it comes from and how to fix them.
            num_processes = self.world_size
            rows_per_batch = self.steps_per_generation * num_processes
            suggestion = next(
                size
                for size in range(
                    self.per_device_train_batch_size, self.per_device_train_batch_size + self.num_generations + 1
                )
                if size * rows_per_batch % self.num_generations == 0
            )
            raise ValueError(
                f"num_generations={self.num_generations} must divide the generation batch: generation_batch_size = "
                f"per_device_train_batch_size ({self.per_device_train_batch_size}) × steps_per_generation "
                f"({self.steps_per_generation}) × processes ({num_processes}) = {self.generation_batch_size} "
                f"completions, which must hold whole groups of {self.num_generations} completions of one prompt "
                "(per_device_train_batch_size counts completions, not prompts). Make that product a multiple of "
                f"num_generations, e.g. per_device_train_batch_size={suggestion} (TRL: {error})"
            ) from None

        for name in ("nll_coef", "grpo_coef"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"`{name}` must be a finite number >= 0, got {name}={value!r}.")
        if self.gate_mode not in GATE_MODES:
            raise ValueError(f"`gate_mode` must be one of {list(GATE_MODES)}, got gate_mode={self.gate_mode!r}.")
        if self.gate_candidates not in GATE_CANDIDATES:
            raise ValueError(
                f"`gate_candidates` must be one of {list(GATE_CANDIDATES)}, got gate_candidates={self.gate_candidates!r}."
            )
        if self.gate_reward_weights is not None:
            weights = list(self.gate_reward_weights)
            if not weights or not all(
                isinstance(w, int | float) and not isinstance(w, bool) and math.isfinite(w) for w in weights
            ):
                raise ValueError(
                    f"`gate_reward_weights` must be a non-empty list of finite numbers, got "
                    f"gate_reward_weights={self.gate_reward_weights!r}."
                )
            if all(w == 0 for w in weights):
                raise ValueError(
                    f"`gate_reward_weights` must weigh at least one reward, got gate_reward_weights={weights!r}."
                )
            self.gate_reward_weights = [float(w) for w in weights]
        if self.gate_normalization not in GATE_NORMALIZATIONS:
            raise ValueError(
                f"`gate_normalization` must be one of {list(GATE_NORMALIZATIONS)}, got "
                f"gate_normalization={self.gate_normalization!r}."
            )
        if self.rollout not in ROLLOUT_MODES:
            raise ValueError(f"`rollout` must be one of {list(ROLLOUT_MODES)}, got rollout={self.rollout!r}.")
        for name in ("gate_tau", "gate_rho"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value <= 1):
                raise ValueError(f"`{name}` must be in (0, 1], got {name}={value!r}.")
        if isinstance(self.num_cross_negatives, bool) or not isinstance(self.num_cross_negatives, int):
            raise ValueError(
                f"`num_cross_negatives` must be an integer >= 0, got num_cross_negatives={self.num_cross_negatives!r}."
            )
        if self.num_cross_negatives < 0:
            raise ValueError(
                f"`num_cross_negatives` must be an integer >= 0, got num_cross_negatives={self.num_cross_negatives}."
            )
        if not isinstance(self.ground_truth_column, str) or not self.ground_truth_column:
            raise ValueError(
                f"`ground_truth_column` must be a non-empty column name, got "
                f"ground_truth_column={self.ground_truth_column!r}."
            )
        if self.nll_coef == 0 and (self.gate_mode == "never" or self.grpo_coef == 0):
            raise ValueError(
                f"nll_coef=0 with gate_mode={self.gate_mode!r} and grpo_coef={self.grpo_coef} leaves no loss to train."
            )

        uses_discriminability = self.gate_mode in ("adaptive", "discriminability")
        if uses_discriminability and self.num_cross_negatives > 0:
            if self.gate_rho * (self.num_generations + 1) < 1:
                raise ValueError(
                    f"gate_rho={self.gate_rho} is too small for num_cross_negatives={self.num_cross_negatives}: "
                    f"ρ·(K+1) = {self.gate_rho * (self.num_generations + 1):.3g} < 1 candidate with "
                    f"num_generations={self.num_generations}, so the ranker's bottom-ρ holds no candidate. Use "
                    f"gate_rho >= {1 / (self.num_generations + 1):.3g} or num_cross_negatives=0."
                )
            num_prompts = self.generation_batch_size // self.num_generations
            if num_prompts < 2:
                logger.warning(
                    f"num_cross_negatives={self.num_cross_negatives} draws negatives from other prompts, but "
                    f"generation_batch_size={self.generation_batch_size} / num_generations={self.num_generations} = "
                    f"{num_prompts} prompt per generation batch: there is none, so R2 holds vacuously. Increase "
                    "per_device_train_batch_size or steps_per_generation to use cross-query negatives."
                )

        if self.rollout == "beam":
            local_rows = self.per_device_train_batch_size * self.steps_per_generation
            if local_rows % self.num_generations != 0:
                raise ValueError(
                    f"rollout='beam' needs whole groups on every process: per_device_train_batch_size="
                    f"{self.per_device_train_batch_size} * steps_per_generation={self.steps_per_generation} = "
                    f"{local_rows} must be divisible by num_generations={self.num_generations}."
                )
            if self.use_vllm:
                raise ValueError(
                    "rollout='beam' is not supported with use_vllm=True (vLLM has no beam-search path here)."
                )
            if self.use_transformers_continuous_batching:
                raise ValueError(
                    "rollout='beam' is not supported with use_transformers_continuous_batching=True; set it to False."
                )

        if self.loss_type == "bnpo" and (self.steps_per_generation > 1 or self.gradient_accumulation_steps > 1):
            logger.warning(
                f"loss_type='bnpo' normalises by the tokens of each micro-batch, so with gradient_accumulation_steps="
                f"{self.gradient_accumulation_steps} and steps_per_generation={self.steps_per_generation} the gated "
                "GRPO term depends on how admitted rows fall into micro-batches (not gradient-accumulation exact). "
                "Prefer 'dapo', 'grpo' or 'dr_grpo'."
            )
