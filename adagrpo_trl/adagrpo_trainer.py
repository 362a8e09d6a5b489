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


import math
import textwrap
from typing import Any

import torch
from accelerate.logging import get_logger
from accelerate.utils import gather, gather_object
from trl import GRPOTrainer
from trl.data_utils import is_conversational
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import get_config_model_id, pad

from .adagrpo_config import AdaGRPOConfig
from .gating import (
    ROLLOUT_KEYS,
    aggregate_rewards,
    compute_gate_decisions,
    reward_scoring_batch,
    sample_cross_negatives,
    sanitize_rewards,
    sequence_ids,
    summed_sequence_logps,
)
from .resume import ExactResumeMixin
from .rollouts import LogitsProcessorSpec, RolloutsMixin, captured_sequence_logps
from .utils import target_token_logps


__all__ = ["AdaGRPOTrainer", "LogitsProcessorSpec", "captured_sequence_logps"]  # the last two moved to rollouts.py

logger = get_logger(__name__)

# Row-normalised loss types: their GRPO normaliser counts rows; the others count tokens.
_ROW_NORMALISED_LOSSES = ("grpo", "sapo", "luspo", "dr_grpo")


def _check_train_dataset(train_dataset: Any, column: str, reward_funcs: Any) -> None:
    """
    At construction, before the model loads: a map-style training dataset has the ground-truth column, with non-empty
    strings, and, if a reward function carries an [`ItemCatalog`] (`.catalog`, e.g. [`RankerReward`]), catalog SIDs.
    Errors name the row, the column and the value (see [`~adagrpo_trl.data.check_ground_truths`]).
    """
    from datasets import Dataset

    from .catalog import ItemCatalog
    from .data.splits import check_ground_truths

    if not isinstance(train_dataset, Dataset):
        return  # an iterable dataset is checked row by row when its batches are generated
    funcs = reward_funcs if isinstance(reward_funcs, list) else [reward_funcs]
    catalog = next((f.catalog for f in funcs if isinstance(getattr(f, "catalog", None), ItemCatalog)), None)
    check_ground_truths(train_dataset, column, catalog, source="train_dataset")


def _sanitize(trainer: GRPOTrainer, rewards_per_func: torch.Tensor) -> torch.Tensor:
    """[`~adagrpo_trl.gating.sanitize_rewards`] with the trainer's reward functions; warns about infinite rewards."""
    none_means_failure = [getattr(func, "none_means_failure", False) for func in trainer.reward_funcs]
    return sanitize_rewards(rewards_per_func, none_means_failure, trainer.reward_func_names, logger.warning)


class AdaGRPOTrainer(RolloutsMixin, ExactResumeMixin, GRPOTrainer):
    """
    Trainer for AdaGRPO, from the paper [Adaptive Loss Balancing for Noise-Robust GRPO in Generative
    Recommendation](https://huggingface.co/papers/2606.08480).

    The only changes w.r.t. [`~trl.GRPOTrainer`] are in `_generate_and_score_completions`, which computes a per-prompt
    gate α (the policy is uncertain about the ground truth *and* the reward discriminates it) and folds it into GRPO's
    loss-only mask, and in `_compute_loss`, which adds the always-on NLL of the ground truth. So the loss of an
    optimizer step is `nll_coef · mean_b NLL(y*_b | x_b) + grpo_coef · GRPO restricted to admitted samples`: with α ≡ 0
    the gradient is exactly the pure-NLL gradient, and with `gate_mode="always", nll_coef=0` the trainer is
    [`~trl.GRPOTrainer`] step for step. The exact definitions (ranks, D, R1, R2, the loss) are in
    `docs/method.md#definitions`, the normalisers in `docs/method.md#normaliser` and the guarantees in
    `docs/method.md#guarantees`; the gate's pure functions are in [`~adagrpo_trl.gating`], shared with the stratified
    analysis.

    Overridden methods of [`~trl.GRPOTrainer`] (everything else is inherited unchanged):

    - here: `_generate_and_score_completions` (ground-truth ids, the gate on the gathered global generation batch, the
      gate folded into `tool_mask`), `_calculate_rewards` (keeps the rollouts' sanitised rewards for the gate: an
      infinite reward or a ranker failure becomes "no reward"), `_compute_loss` (gated GRPO term + NLL anchor, one row
      per prompt, untempered, scaled for gradient accumulation);
    - [`~adagrpo_trl.rollouts.RolloutsMixin`]: `_generate_single_turn` (beam rollouts, `logits_processors`, and the
      rollouts' log π kept from the generation's raw logits for the difficulty test);
    - [`~adagrpo_trl.resume.ExactResumeMixin`]: `_get_train_sampler`, `_save_checkpoint`,
      `_load_optimizer_and_scheduler` (exact resumption inside a generation batch and across epochs).

    A prompt whose ground truth, rollouts or cross-query negatives lack a score (a ranker failure under
    `on_failure="gate_out"`) is never admitted by the gate modes that use the reward (`"adaptive"`,
    `"discriminability"`): it gets pure supervision. In the other modes its failed rollouts get zero advantage and stay
    out of their group's baseline (TRL's treatment of unscorable rows).

    Args:
        model (`str` or [`~transformers.PreTrainedModel`] or [`~peft.PeftModel`]):
            As in [`~trl.GRPOTrainer`].
        reward_funcs (`RewardFunc` or `list[RewardFunc]`):
            As in [`~trl.GRPOTrainer`]. The gate scores the ground truth and the cross-query negatives with the same
            functions, weighted by `gate_reward_weights` (default: `reward_weights`), in the prompt's context (the
            dataset columns reach them as kwargs). A reward function object may define
            `invalid_mask(completion_ids: list[list[int]]) -> list[bool]` to report hallucinated items; the share of
            rollouts it flags is logged as `gate/invalid_rollout_rate` (and `gate_candidates="valid"` needs one). A
            reward whose `supports_gate_scoring` is `False` (e.g. a within-group rank transform), or whose
            `scores_ground_truth_at_max` is `True` (e.g. `HitReward`), must have gate weight 0 in the gate modes that
            score the ground truth.
        args ([`AdaGRPOConfig`], *optional*):
            Configuration. Defaults to `AdaGRPOConfig("<model>-AdaGRPO")`.
        train_dataset, eval_dataset, processing_class, reward_processing_classes, callbacks, optimizers,
        quantization_config, peft_config, tools, rollout_func, environment_factory:
            As in [`~trl.GRPOTrainer`]. Every row needs the `ground_truth_column` (default `"completion"`).
        logits_processors (`list[LogitsProcessor | Callable[[int], LogitsProcessor]]`, *optional*):
            Logits processors applied to the rollouts of both rollout modes (for example a trie that constrains
            generation to catalog items). A callable that is not a [`~transformers.LogitsProcessor`] is a factory:
            it is called with the left-padded prompt length of each generate call and returns the processor.
            Transformers generation path only (not vLLM, not continuous batching).

    Example:

    ```python
    from adagrpo_trl import AdaGRPOConfig, AdaGRPOTrainer

    trainer = AdaGRPOTrainer(
        model="path/to/sft-checkpoint",
        reward_funcs=ranker_reward,  # any TRL reward function(s)
        args=AdaGRPOConfig(output_dir="adagrpo", gate_tau=0.25, gate_rho=0.5),
        train_dataset=dataset,  # "prompt" + "completion" (ground truth) + context columns
    )
    trainer.train()
    ```
    """

    _tag_names = ["trl", "adagrpo", "grpo", "recommendation"]
    _name = "AdaGRPO"
    _paper = {
        "title": "Adaptive Loss Balancing for Noise-Robust GRPO in Generative Recommendation",
        "id": "2606.08480",
        # docstyle-ignore
        "citation": textwrap.dedent("""\
            @article{adagrpo2026,
                title        = {{Adaptive Loss Balancing for Noise-Robust GRPO in Generative Recommendation}},
                year         = 2026,
                eprint       = {arXiv:2606.08480},
            }"""),
    }

    def __init__(
        self,
        model,
        reward_funcs=None,
        args: AdaGRPOConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        reward_processing_classes=None,
        callbacks=None,
        optimizers=(None, None),
        quantization_config=None,
        peft_config=None,
        tools=None,
        rollout_func=None,
        environment_factory=None,
        logits_processors: list[LogitsProcessorSpec] | None = None,
    ):
        if args is None:
            model_name = model if isinstance(model, str) else get_config_model_id(model.config)
            args = AdaGRPOConfig(f"{model_name.split('/')[-1]}-AdaGRPO")
        elif not isinstance(args, AdaGRPOConfig):
            raise TypeError(
                f"AdaGRPOTrainer needs an AdaGRPOConfig, got {type(args).__name__}. Build the config with "
                "AdaGRPOConfig(...) (it accepts every GRPOConfig field)."
            )
        _check_train_dataset(train_dataset, args.ground_truth_column, reward_funcs)
        super().__init__(
            model=model,
            reward_funcs=reward_funcs,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            reward_processing_classes=reward_processing_classes,
            callbacks=callbacks,
            optimizers=optimizers,
            quantization_config=quantization_config,
            peft_config=peft_config,
            tools=tools,
            rollout_func=rollout_func,
            environment_factory=environment_factory,
        )
        self._setup_rollouts(
            logits_processors, rollout_func, environment_factory, args.gate_mode in ("adaptive", "difficulty")
        )
        self.gate_reward_weights = self.reward_weights
        if args.gate_reward_weights is not None:
            if len(args.gate_reward_weights) != len(self.reward_funcs):
                raise ValueError(
                    f"gate_reward_weights={args.gate_reward_weights} has {len(args.gate_reward_weights)} weights for "
                    f"{len(self.reward_funcs)} reward functions {self.reward_func_names}."
                )
            self.gate_reward_weights = torch.tensor(args.gate_reward_weights, dtype=self.reward_weights.dtype)
        if args.gate_mode in ("adaptive", "discriminability"):
            for func, name, weight in zip(
                self.reward_funcs, self.reward_func_names, self.gate_reward_weights.tolist(), strict=True
            ):
                if getattr(func, "supports_gate_scoring", True) is False and weight != 0:
                    raise ValueError(
                        f"Reward {name!r} cannot score the gate's ground truths and negatives (its scores are only "
                        f"comparable within a group of rollouts), but gate_mode={args.gate_mode!r} needs them; give it "
                        "a gate weight of 0 with gate_reward_weights."
                    )
                if getattr(func, "scores_ground_truth_at_max", False) and weight != 0:
                    raise ValueError(
                        f"Reward {name!r} scores the ground truth at its maximum by construction, so with gate weight "
                        f"{weight} the discriminability test would always pass. Set its entry of gate_reward_weights "
                        f"to 0 (e.g. gate_reward_weights={[0.0 if f is func else 1.0 for f in self.reward_funcs]}) "
                        "so the gate judges the other rewards."
                    )
            if args.gate_candidates == "valid" and not any(
                callable(getattr(func, "invalid_mask", None)) for func in self.reward_funcs
            ):
                raise ValueError(
                    "gate_candidates='valid' needs a reward function with an `invalid_mask` method to tell valid "
                    "rollouts from invalid ones (RankerReward has one)."
                )
        if self._tokenizer.eos_token_id is None:
            raise ValueError("The tokenizer has no eos_token_id: AdaGRPO appends EOS to the ground-truth completion.")
        self._ground_truth_cache: dict[str, list[int]] = {}
        self._gate_stash: dict[str, Any] = {}

    # ------------------------------------------------------------------------------------------------------------
    # Gate
    # ------------------------------------------------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = _sanitize(
            self, super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        )
        # Keep the rollouts exactly as the rewards saw them, for the gate computed after the parent returns.
        self._gate_stash = {
            "inputs": inputs,
            "prompts": prompts,
            "completion_ids": [list(ids) for ids in completion_ids_list],
            "rewards_per_func": rewards_per_func,
        }
        return rewards_per_func

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, torch.Tensor | Any]:
        output = super()._generate_and_score_completions(inputs)
        stash, self._gate_stash = self._gate_stash, {}
        mode = "train" if self.model.training else "eval"
        num_generations = self.num_generations if mode == "train" else self.num_generations_eval
        device = self.accelerator.device

        ground_truth_ids = [self._ground_truth_ids(row, index) for index, row in enumerate(inputs)]
        output["ground_truth_ids"] = pad(
            [torch.tensor(ids) for ids in ground_truth_ids], padding_value=self._tokenizer.pad_token_id
        ).to(device)
        output["ground_truth_mask"] = pad(
            [torch.ones(len(ids), dtype=torch.long) for ids in ground_truth_ids], padding_value=0
        ).to(device)
        # The NLL anchor is a mean over prompts, computed once per prompt: the first row of each group (global row index
        # a multiple of K) carries weight num_processes / num_prompts, the other rows 0 (see `_compute_loss`).
        world, local_rows = self.accelerator.num_processes, len(inputs)
        offset = self.accelerator.process_index * local_rows
        first_rows = torch.tensor([(offset + row) % num_generations == 0 for row in range(local_rows)])
        output["nll_weight"] = (first_rows.float() * (world / (local_rows * world // num_generations))).to(device)

        # The diagnostics use no global randomness (dropout included), so they never change the rollouts to come.
        with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
            gate = self._compute_gate(output, stash, ground_truth_ids, num_generations, mode)

        if self.args.gate_mode != "always":
            loss_mask = output["completion_mask"] * output.get("tool_mask", 1)
            tool_mask = output.get("tool_mask", torch.ones_like(output["completion_mask"]))
            output["tool_mask"] = tool_mask * gate.to(tool_mask.dtype).unsqueeze(1)
            if self.args.gate_normalization == "admitted":
                if self.loss_type in _ROW_NORMALISED_LOSSES:
                    counts = torch.stack([torch.tensor(float(gate.numel())), gate.sum().float().cpu()]).to(device)
                else:
                    admitted_mask = output["completion_mask"] * output["tool_mask"]
                    counts = torch.stack([loss_mask.sum().float(), admitted_mask.sum().float()])
                total, admitted = gather(counts.unsqueeze(0)).sum(dim=0)
                scale = total / admitted if admitted > 0 else torch.zeros((), device=device)
                output["gate_loss_scale"] = scale.reshape(())
        return output

    def _ground_truth_ids(self, row: dict[str, Any], index: int) -> list[int]:
        """Token ids of a row's ground-truth completion, EOS appended (cached by text)."""
        column = self.args.ground_truth_column
        if column not in row:
            raise ValueError(
                f"Row {index} of the generation batch has no ground-truth column {column!r} (columns: "
                f"{sorted(row)}). Set `ground_truth_column`, and keep remove_unused_columns=False."
            )
        value = row[column]
        if isinstance(value, list) and value and isinstance(value[-1], dict):  # conversational completion
            value = value[-1].get("content")
        if not isinstance(value, str) or not value:
            raise ValueError(f"Row {index}: ground truth {column!r} must be a non-empty string, got {value!r}.")
        ids = self._ground_truth_cache.get(value)
        if ids is None:
            ids = self._tokenizer(text=value, add_special_tokens=False)["input_ids"] + [self._tokenizer.eos_token_id]
            if len(ids) > self.max_completion_length:
                raise ValueError(
                    f"Row {index}: ground truth {value!r} is {len(ids)} tokens with EOS, more than "
                    f"max_completion_length={self.max_completion_length}; rollouts could never reproduce it."
                )
            self._ground_truth_cache[value] = ids
        return ids

    def _compute_gate(
        self,
        output: dict[str, Any],
        stash: dict[str, Any],
        ground_truth_ids: list[list[int]],
        num_generations: int,
        mode: str,
    ) -> torch.Tensor:
        """
        Computes the gate of the local rows from the gathered generation batch
        ([`~adagrpo_trl.gating.compute_gate_decisions`]) and logs the gate metrics.
        """
        args = self.args
        device = self.accelerator.device
        local_rows = len(ground_truth_ids)
        completion_ids = stash["completion_ids"]
        process_slice = slice(
            self.accelerator.process_index * local_rows, (self.accelerator.process_index + 1) * local_rows
        )

        # Global view of rollouts and ground truths (groups may straddle processes).
        all_completions = [tuple(ids) for ids in gather_object(completion_ids)]
        all_ground_truths = [tuple(ids) for ids in gather_object(ground_truth_ids)]
        num_prompts = len(all_completions) // num_generations
        row_sequence_ids, ground_truth_sequence_ids = sequence_ids(
            all_completions, all_ground_truths[::num_generations]
        )
        is_ground_truth = row_sequence_ids.view(num_prompts, num_generations) == ground_truth_sequence_ids.unsqueeze(1)
        metrics = {"gate/gt_in_rollouts": is_ground_truth.any(dim=1).float().mean().item()}

        invalid_masks = [
            func.invalid_mask(completion_ids)
            for func in self.reward_funcs
            if callable(getattr(func, "invalid_mask", None))
        ]
        all_invalid = None
        if invalid_masks:
            invalid = torch.tensor(invalid_masks, dtype=torch.bool, device=device).any(dim=0)
            all_invalid = gather(invalid).cpu()
            metrics["gate/invalid_rollout_rate"] = all_invalid.float().mean().item()

        diagnostics: dict[str, torch.Tensor] = {}
        if args.gate_mode in ("adaptive", "difficulty"):
            rollout_logps = gather(self._rollout_logps_for_gate(output, completion_ids))
            diagnostics["rollout_logps"] = rollout_logps.view(num_prompts, num_generations).cpu()
            diagnostics["ground_truth_logps"] = self._ground_truth_logps_for_gate(
                output, ground_truth_ids, num_generations
            ).cpu()
        if args.gate_mode in ("adaptive", "discriminability"):
            rollout_scores = aggregate_rewards(stash["rewards_per_func"], self.gate_reward_weights)
            generator = torch.Generator().manual_seed(
                args.seed * 1_000_003 + self.state.global_step * 2 + (mode == "eval")
            )
            negatives = sample_cross_negatives(
                row_sequence_ids, ground_truth_sequence_ids, num_generations, args.num_cross_negatives, generator
            )
            ground_truth_scores, negative_scores = self._score_ground_truths_and_negatives(
                stash, ground_truth_ids, all_completions, negatives, num_generations
            )
            diagnostics.update(
                rollout_scores=rollout_scores.view(num_prompts, num_generations).cpu(),
                ground_truth_scores=ground_truth_scores,
                negative_scores=negative_scores,
            )
            if args.gate_candidates == "valid":
                diagnostics["valid"] = ~all_invalid.view(num_prompts, num_generations)
                # An invalid negative says nothing about the ranker either: it passes, like a missing one.
                invalid_negative = (negatives >= 0) & all_invalid[negatives.clamp(min=0)]
                diagnostics["negative_scores"] = negative_scores.masked_fill(invalid_negative, -torch.inf)
        decisions = compute_gate_decisions(
            args.gate_mode, args.gate_tau, args.gate_rho, is_ground_truth, **diagnostics
        )
        if decisions.difficulty is not None:
            metrics["gate/difficulty_rate"] = decisions.difficulty.float().mean().item()
        if decisions.discriminability is not None:
            metrics["gate/r1_rate"] = decisions.r1.float().mean().item()
            metrics["gate/r2_rate"] = decisions.r2.float().mean().item()
            metrics["gate/discriminability_rate"] = decisions.discriminability.float().mean().item()
            metrics["gate/unscorable_rate"] = decisions.unscorable.float().mean().item()
        metrics["gate/rate"] = decisions.gate.float().mean().item()
        for name, value in metrics.items():
            self._metrics[mode][name].append(value)
        return decisions.gate.repeat_interleave(num_generations)[process_slice].to(device)

    def _rollout_logps_for_gate(self, output: dict[str, Any], completion_ids: list[list[int]]) -> torch.Tensor:
        """
        Summed, untempered log π of each local rollout: kept from the generation's raw logits when this trainer
        generated the rollouts (no extra pass, [`~adagrpo_trl.rollouts.RolloutsMixin`]), else one no-grad forward pass.
        """
        captured = self.pop_captured_rollout_logps(completion_ids)
        if captured is not None:
            return captured
        return self._sequence_logps(output, completion_ids, rows=None)

    def _ground_truth_logps_for_gate(
        self, output: dict[str, Any], ground_truth_ids: list[list[int]], num_generations: int
    ) -> torch.Tensor:
        """
        Summed, untempered log π of each prompt's ground truth, `(P,)` over the global generation batch. Each prompt's
        ground truth is scored once, by the process holding the first row of its group, then summed over processes
        (the other processes contribute zeros).
        """
        local_rows = len(ground_truth_ids)
        offset = self.accelerator.process_index * local_rows
        num_prompts = local_rows * self.accelerator.num_processes // num_generations
        first_rows = [row for row in range(local_rows) if (offset + row) % num_generations == 0]
        logps = self._sequence_logps(
            output,
            [ground_truth_ids[row] for row in first_rows],
            rows=first_rows,
            max_rows=math.ceil(local_rows / num_generations),
        )
        per_prompt = torch.zeros(num_prompts, dtype=logps.dtype, device=logps.device)
        per_prompt[[(offset + row) // num_generations for row in first_rows]] = logps
        return gather(per_prompt).view(self.accelerator.num_processes, num_prompts).sum(dim=0).cpu()

    def _sequence_logps(
        self,
        output: dict[str, Any],
        sequences: list[list[int]],
        rows: list[int] | None,
        max_rows: int | None = None,
    ) -> torch.Tensor:
        """
        Summed, untempered log π of `sequences` after the prompts of the local `rows` (all rows in order if `None`),
        in no-grad passes of at most the per-device batch size. The number of passes depends only on `max_rows` (an
        upper bound on `len(sequences)` shared by every process) or on the number of sequences, never on the data, so
        every process runs the same forwards (ZeRO-3); an empty pass scores a throw-away row.
        """
        prompt_ids, prompt_mask = output["prompt_ids"], output["prompt_mask"]
        device = prompt_ids.device
        rows = list(range(len(sequences))) if rows is None else rows
        batch_size = (
            self.args.per_device_train_batch_size if self.model.training else self.args.per_device_eval_batch_size
        )
        num_passes = max(1, math.ceil((len(sequences) if max_rows is None else max_rows) / batch_size))
        logps = []
        zero3 = self.is_deepspeed_enabled and self.accelerator.state.deepspeed_plugin.zero_stage == 3
        if zero3 and not self.args.ds3_gather_for_generation:
            raise NotImplementedError(
                "DeepSpeed ZeRO-3 with ds3_gather_for_generation=False is not supported by the gate's log-prob passes "
                "(a hooked ZeRO-3 forward before TRL's fused-head loss breaks DeepSpeed's backward); keep "
                "ds3_gather_for_generation=True, or use gate_mode='discriminability'/'always'/'never'."
            )
        # Like generation: under ZeRO-3 the passes run on gathered parameters with DeepSpeed's hooks removed, then
        # re-armed with their prefetch trace reset. A hooked plain forward here, followed by the loss's fused-head
        # forward, fails in DeepSpeed's backward ("The size of tensor a (0) must match the size of tensor b").
        with (
            torch.no_grad(),
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as model,
        ):
            for index in range(num_passes):
                chunk = slice(index * batch_size, (index + 1) * batch_size)
                chunk_sequences, chunk_rows = sequences[chunk], rows[chunk]
                dummy = not chunk_sequences
                if dummy:
                    chunk_sequences, chunk_rows = [output["ground_truth_ids"][0, :1].tolist()], [0]
                with self.accelerator.autocast():
                    chunk_logps = summed_sequence_logps(
                        model,
                        prompt_ids[chunk_rows],
                        prompt_mask[chunk_rows],
                        chunk_sequences,
                        self._tokenizer.pad_token_id,
                    )
                if not dummy:
                    logps.append(chunk_logps)
        return torch.cat(logps) if logps else torch.zeros(0, device=device)

    def _target_token_logps(self, model, prompt_ids, prompt_mask, target_ids, target_mask) -> torch.Tensor:
        """Per-token log π(target | prompt), untempered, under the accelerator's autocast."""
        with self.accelerator.autocast():
            return target_token_logps(model, prompt_ids, prompt_mask, target_ids, target_mask)

    def _score_ground_truths_and_negatives(
        self,
        stash: dict[str, Any],
        ground_truth_ids: list[list[int]],
        all_completions: list[tuple[int, ...]],
        negatives: torch.Tensor,
        num_generations: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Scores each prompt's ground truth and its cross-query negatives with the reward functions, in the prompt's
        context. Each group is scored once, by the process that holds its first row; results are gathered so every
        process returns the global `(P,)` and `(P, M)` score tensors.
        """
        inputs, prompts = stash["inputs"], stash["prompts"]
        local_rows = len(inputs)
        offset = self.accelerator.process_index * local_rows
        num_prompts, num_negatives = negatives.shape
        owned_groups = [g for g in range(num_prompts) if offset <= g * num_generations < offset + local_rows]

        owners = [group * num_generations - offset for group in owned_groups]
        candidates = [
            [ground_truth_ids[local]] + [list(all_completions[n]) if n >= 0 else [] for n in negatives[group].tolist()]
            for group, local in zip(owned_groups, owners, strict=True)
        ]
        rows, row_prompts, row_completion_ids = reward_scoring_batch(
            [inputs[local] for local in owners], [prompts[local] for local in owners], candidates
        )
        per_group = 1 + num_negatives
        count = torch.tensor([len(rows)], device=self.accelerator.device)
        max_count = int(gather(count).max().item())
        # Equal sizes on every process for the gather inside the reward computation; the padding is dropped below.
        pad_row = {k: v for k, v in inputs[0].items() if k not in ROLLOUT_KEYS}
        while len(rows) < max_count:
            rows.append(pad_row)
            row_prompts.append(prompts[0])
            row_completion_ids.append(ground_truth_ids[0])

        if max_count == 0:
            scores = torch.empty(0)
        else:
            texts = self.processing_class.batch_decode(row_completion_ids, skip_special_tokens=True)
            if is_conversational({"prompt": row_prompts[0]}):
                completions = [[{"role": "assistant", "content": t}] for t in texts]
            else:
                completions = texts
            # Reward functions may log extra columns/metrics; those of the gate's scoring pass are not rollouts.
            pending_extra, pending_metrics = self._pending_extra_logs, self._pending_metrics
            self._pending_extra_logs, self._pending_metrics = type(pending_extra)(list), type(pending_metrics)(list)
            try:
                rewards_per_func = _sanitize(
                    self, GRPOTrainer._calculate_rewards(self, rows, row_prompts, completions, row_completion_ids)
                )
            finally:
                self._pending_extra_logs, self._pending_metrics = pending_extra, pending_metrics
            all_counts = gather(count).tolist()
            per_process = aggregate_rewards(rewards_per_func, self.gate_reward_weights).cpu().view(-1, max_count)
            scores = torch.cat([per_process[p, :n] for p, n in enumerate(all_counts)])
        scores = scores.view(num_prompts, per_group)
        negative_scores = scores[:, 1:].clone()
        # A prompt without any available negative (-1) has nothing to fail R2 with.
        negative_scores[negatives < 0] = -torch.inf
        return scores[:, 0], negative_scores

    # ------------------------------------------------------------------------------------------------------------
    # Loss
    # ------------------------------------------------------------------------------------------------------------

    def _compute_loss(self, model, inputs):
        mode = "train" if self.model.training else "eval"
        args = self.args
        loss = torch.zeros((), device=self.accelerator.device)
        if args.grpo_coef > 0 and args.gate_mode != "never":
            grpo_loss = super()._compute_loss(model, inputs)
            if "gate_loss_scale" in inputs:
                grpo_loss = grpo_loss * inputs["gate_loss_scale"]
            loss = args.grpo_coef * grpo_loss
        if args.nll_coef > 0:
            # One pass over one row per prompt: the first row of each group carries the prompt's weight (see
            # `_generate_and_score_completions`), the other rows of the group hold the same ground truth. A micro-batch
            # without such a row still runs the pass (weight 0), so every process runs the same forwards (ZeRO-3).
            weights = inputs["nll_weight"]
            rows = weights.nonzero().squeeze(1)
            if rows.numel() == 0:
                rows = torch.zeros(1, dtype=torch.long, device=weights.device)
            mask = inputs["ground_truth_mask"][rows]
            token_logps = self._target_token_logps(
                model, inputs["prompt_ids"][rows], inputs["prompt_mask"][rows], inputs["ground_truth_ids"][rows], mask
            )
            per_prompt = -(token_logps * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
            # Like TRL's token-normalised losses: the weights count the generation batch, `steps_per_generation`
            # micro-batches, of which `current_gradient_accumulation_steps` make an optimizer step.
            scale = args.steps_per_generation / self.current_gradient_accumulation_steps if mode == "train" else 1.0
            loss = loss + args.nll_coef * scale * (per_prompt * weights[rows]).sum()
            carriers = (weights[rows] > 0).to(per_prompt.dtype)
            totals = self.accelerator.gather(
                torch.stack([(per_prompt.detach() * carriers).sum(), carriers.sum()])[None]
            )
            nll_sum, count = totals.sum(dim=0).tolist()
            if count > 0:
                self._metrics[mode]["loss/nll"].append(nll_sum / count)
        return loss
