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

import copy
import math
import os
import textwrap
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.logging import get_logger
from accelerate.utils import gather, gather_object, send_to_device
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOTrainer
from trl.data_utils import is_conversational
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import RepeatSampler, get_config_model_id, pad

from .adagrpo_config import AdaGRPOConfig
from .constrained import build_generation_config, generate_with_shared_prefill, isolated_generation_config
from .gating import (
    compute_gate,
    negatives_in_bottom_rho,
    policy_difficulty,
    reward_top_tau,
    sample_cross_negatives,
)
from .utils import cut_after_eos, target_token_logps


logger = get_logger(__name__)

# A logits processor, or a factory called with the (left-padded) prompt length of each generate call and returning one.
# Factories let a processor look only at the generated suffix, e.g. `lambda n: TrieLogitsProcessor(catalog, n)`.
LogitsProcessorSpec = LogitsProcessor | Callable[[int], LogitsProcessor]

# Row-normalised loss types: their GRPO normaliser counts rows; the others count tokens.
_ROW_NORMALISED_LOSSES = ("grpo", "sapo", "luspo", "dr_grpo")

# Keys of the gate-scoring batch that come from the rollouts; everything else is the prompt's dataset row.
_ROLLOUT_KEYS = ("prompt", "completion", "completion_ids")

# Largest per-token logits (float32 bytes) that rollout generation keeps for the difficulty test; beyond it (long
# completions over a large vocabulary), the test runs a no-grad forward pass over the rollouts instead.
_MAX_CAPTURED_LOGITS_BYTES = 1 << 30


def _fits_captured_logits(model: Any, num_rows: int, max_new_tokens: int) -> bool:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    vocab_size = getattr(config, "vocab_size", None)
    return vocab_size is not None and num_rows * max_new_tokens * vocab_size * 4 <= _MAX_CAPTURED_LOGITS_BYTES


def captured_sequence_logps(
    logits: tuple[torch.Tensor, ...],
    completion_ids: torch.Tensor,
    lengths: torch.Tensor,
    beam_indices: torch.Tensor | None = None,
) -> torch.Tensor:
    """
    Summed log π of generated completions from the raw logits that `generate(..., output_logits=True)` returns:
    `log_softmax` of each step's logits (untempered, before any logits processor), at the generated token, over the
    first `lengths` tokens of each row. The same quantity as a forward pass over prompt + completion, without the pass.

    Args:
        logits (`tuple[torch.Tensor, ...]`):
            One `(num_rows_at_step, vocab)` tensor per generation step (`generate`'s `logits`).
        completion_ids (`torch.LongTensor` of shape `(R, T)`):
            The generated tokens of each returned sequence.
        lengths (`torch.LongTensor` of shape `(R,)`):
            Tokens to sum per row (up to and including EOS).
        beam_indices (`torch.LongTensor` of shape `(R, T)`, *optional*):
            Beam search's `beam_indices`: the row of each step's logits that each returned sequence extended (`-1`
            after it ended). Without it, row `r` of every step is sequence `r` (sampling).

    Returns:
        `torch.Tensor` of shape `(R,)`, float32.
    """
    num_rows = completion_ids.size(0)
    steps = min(len(logits), completion_ids.size(1))
    total = torch.zeros(num_rows, dtype=torch.float32, device=completion_ids.device)
    for step in range(steps):
        step_logps = F.log_softmax(logits[step].float(), dim=-1)
        rows = beam_indices[:, step].long() if beam_indices is not None else None
        active = lengths > step
        if rows is not None:
            active = active & (rows >= 0)
            step_logps = step_logps[rows.clamp(min=0)]
        token_logps = step_logps.gather(1, completion_ids[:, step : step + 1]).squeeze(1)
        total += torch.where(active, token_logps, torch.zeros_like(token_logps))
    return total


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


class AdaGRPOTrainer(GRPOTrainer):
    """
    Trainer for AdaGRPO, from the paper [Adaptive Loss Balancing for Noise-Robust GRPO in Generative
    Recommendation](https://huggingface.co/papers/2606.08480).

    AdaGRPO keeps the supervised NLL of the ground-truth completion always on and adds the GRPO term only for the
    samples that a binary gate admits: the policy is uncertain about the ground truth (*difficulty*: the ground truth is
    not among its top-τ rollouts by log-prob) and the reward separates the ground truth from rollouts and cross-query
    negatives (*discriminability*). Every other sample gets pure supervision. The diagnostics reuse the rollouts and the
    reward functions that GRPO runs anyway; see [`AdaGRPOConfig`] for the exact definitions.

    The loss of an optimizer step is `nll_coef · mean_b NLL(y*_b | x_b) + grpo_coef · GRPO restricted to admitted
    samples`. The restriction folds the gate into GRPO's loss-only mask (`tool_mask`), so that a gate of 0 removes the
    sample from the policy term, the KL term, the entropy bonus and the normalisers of every `loss_type`: with α ≡ 0 the
    gradient is exactly the pure-NLL gradient, and with `gate_mode="always", nll_coef=0` the trainer is
    [`~trl.GRPOTrainer`] step for step.

    Overridden methods of [`~trl.GRPOTrainer`] (everything else is inherited unchanged):

    - `_generate_single_turn`: beam rollouts (`rollout="beam"`: K distinct beams per prompt, best first, each prompt
      encoded once for its K beams) and `logits_processors` for both rollout modes, on the transformers generation
      path. When the gate needs the difficulty test, it also keeps each rollout's log π from the generation's raw
      logits (sampling then runs TRL's own generate call, with the same rollouts), so the rollouts are not scored again.
    - `_calculate_rewards`: keeps the rollouts and their gathered rewards for the gate; an infinite reward becomes
      "no reward" (NaN), and a row a ranker failed to score (`none_means_failure`) loses its other rewards too, so
      no failed score reaches the advantages.
    - `_generate_and_score_completions`: tokenises the ground truth, computes the gate on the global generation batch
      (gathered first, so the gate does not depend on the number of processes) and folds it into the loss mask.
    - `_compute_loss`: the gated GRPO term plus the NLL anchor (untempered log-probs, scaled for gradient accumulation
      like TRL's token-normalised losses), computed on one row per prompt (the K rows of a group share the ground
      truth).
    - `_get_train_sampler`, `_save_checkpoint`, `_load_optimizer_and_scheduler`: exact resumption. A checkpoint taken
      in the middle of a generation batch (`steps_per_generation` or `num_iterations` > 1) saves the buffered rollouts
      and restores them, and the sampler's `set_epoch` restores an epoch's data order, so a resumed run continues
      step for step as the uninterrupted one (with the model, optimizer and RNG states that the Trainer restores).

    A prompt whose ground truth, rollouts or cross-query negatives lack a score (a ranker failure under
    `on_failure="gate_out"`) is never admitted by the gate modes that use the reward (`"adaptive"`,
    `"discriminability"`): it gets pure supervision. In the other modes its failed rollouts get zero advantage and stay
    out of their group's baseline (TRL's treatment of unscorable rows).

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

    Args:
        model (`str` or [`~transformers.PreTrainedModel`] or [`~peft.PeftModel`]):
            As in [`~trl.GRPOTrainer`].
        reward_funcs (`RewardFunc` or `list[RewardFunc]`):
            As in [`~trl.GRPOTrainer`]. The gate scores the ground truth and the cross-query negatives with the same
            functions and `reward_weights`, in the prompt's context (the dataset columns reach them as kwargs). A reward
            function object may define `invalid_mask(completion_ids: list[list[int]]) -> list[bool]` to report
            hallucinated items; the share of rollouts it flags is logged as `gate/invalid_rollout_rate`. A reward whose
            `supports_gate_scoring` is `False` (e.g. a within-group rank transform) is rejected by the gate modes that
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
        self.logits_processors = list(logits_processors or [])
        for spec in self.logits_processors:
            if not callable(spec):
                raise TypeError(
                    f"logits_processors entries must be LogitsProcessor objects or factories, got {spec!r}."
                )
        if (self.logits_processors or args.rollout == "beam") and (
            self.use_vllm or self.use_transformers_continuous_batching or rollout_func is not None
        ):
            raise ValueError(
                "logits_processors and rollout='beam' apply to the transformers generation path only; they cannot be "
                "combined with use_vllm, use_transformers_continuous_batching or rollout_func."
            )
        if args.gate_mode in ("adaptive", "discriminability"):
            for func, name in zip(self.reward_funcs, self.reward_func_names, strict=True):
                if getattr(func, "supports_gate_scoring", True) is False:
                    raise ValueError(
                        f"Reward {name!r} cannot score the gate's ground truths and negatives (its scores are only "
                        f"comparable within a group of rollouts), but gate_mode={args.gate_mode!r} needs them."
                    )
        if self._tokenizer.eos_token_id is None:
            raise ValueError("The tokenizer has no eos_token_id: AdaGRPO appends EOS to the ground-truth completion.")
        self._ground_truth_cache: dict[str, list[int]] = {}
        self._gate_stash: dict[str, Any] = {}
        # The difficulty test reads log π of the rollouts from the raw logits of the generation that produced them,
        # instead of a second forward pass. Only single-turn text rollouts of this trainer's transformers path
        # qualify (tools and rollout_func change or produce the completions elsewhere); the decision is the same on
        # every process, so all of them run the same forwards (ZeRO-3).
        self._capture_rollout_logps = (
            args.gate_mode in ("adaptive", "difficulty")
            and not self.tools
            and rollout_func is None
            and environment_factory is None
        )
        self._captured_rollouts: dict[str, Any] | None = None

    # ------------------------------------------------------------------------------------------------------------
    # Rollouts
    # ------------------------------------------------------------------------------------------------------------

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        self._captured_rollouts = None
        capture = self._capture_rollout_logps and images is None and not multimodal_fields
        own_path = self.args.rollout == "beam" or self.logits_processors or capture
        if not own_path or self.use_vllm or self.use_transformers_continuous_batching:
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        if images is not None or multimodal_fields:
            raise NotImplementedError("rollout='beam' and logits_processors support text-only models.")
        return self._generate_with_processors(prompt_ids, num_generations, capture)

    def _generate_with_processors(self, prompt_ids: list[list[int]], num_generations: int, capture: bool = False):
        """
        Sampling or beam generation with the trainer's logits processors (transformers path). Sampling pads, moves and
        generates exactly as TRL's own path, so it draws the same rollouts. With `capture`, the summed untempered log π
        of every completion is kept from the raw logits of the generation (see `_captured_rollouts`).
        """
        device = self.accelerator.device
        beam = self.args.rollout == "beam"
        if beam:
            if len(prompt_ids) % num_generations != 0:
                raise ValueError(
                    f"rollout='beam' got {len(prompt_ids)} prompts on this process, not whole groups of "
                    f"num_generations={num_generations}."
                )
            unique_prompt_ids = prompt_ids[::num_generations]
            for i, ids in enumerate(prompt_ids):
                if ids != unique_prompt_ids[i // num_generations]:
                    raise ValueError(
                        f"rollout='beam' expects each prompt repeated num_generations={num_generations} times in a "
                        f"row, but row {i} differs from the first row of its group."
                    )
            generation_config = self._beam_generation_config(num_generations)
        else:
            unique_prompt_ids = prompt_ids
            generation_config = self.generation_config

        prompt_tensors = [torch.tensor(ids) for ids in unique_prompt_ids]
        input_ids = pad(
            prompt_tensors,
            padding_value=self._tokenizer.pad_token_id,
            padding_side="left",
            pad_to_multiple_of=self.pad_to_multiple_of,
        )
        attention_mask = pad(
            [torch.ones_like(t) for t in prompt_tensors],
            padding_value=0,
            padding_side="left",
            pad_to_multiple_of=self.pad_to_multiple_of,
        )
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        prompt_length = input_ids.size(1)
        processors = LogitsProcessorList(
            spec if isinstance(spec, LogitsProcessor) else spec(prompt_length) for spec in self.logits_processors
        )

        with (
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                generation_kwargs=self.generation_kwargs,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as unwrapped_model,
            torch.no_grad(),
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            num_rows = len(prompt_ids)
            if capture and not _fits_captured_logits(unwrapped_model, num_rows, self.max_completion_length):
                capture = False  # the per-token logits would not fit: the gate runs a forward pass instead
            if capture:
                # The generation's own raw (unprocessed, untempered) logits: no extra forward, same rollouts.
                generation_config = copy.deepcopy(generation_config)
                generation_config.return_dict_in_generate = True
                generation_config.output_logits = True
            # transformers fills every unset field of `generation_config` from the model's own generation config
            # (top-k/top-p, repetition or n-gram penalties of a pretrained checkpoint). Beam rollouts inherit nothing;
            # sampling keeps TRL's own behaviour.
            if beam:  # the prompt is encoded once for its K beams, not K times
                with isolated_generation_config(unwrapped_model):
                    generated = generate_with_shared_prefill(
                        unwrapped_model, input_ids, attention_mask, generation_config, processors
                    )
            else:
                generated = unwrapped_model.generate(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    generation_config=generation_config,
                    logits_processor=processors,
                )
        sequences = generated.sequences if capture else generated
        completion_ids = cut_after_eos(sequences[:, prompt_length:], self.eos_token_ids)
        if capture:
            self._captured_rollouts = {
                "completion_ids": completion_ids,
                "logps": captured_sequence_logps(
                    generated.logits,
                    sequences[:, prompt_length:],
                    torch.tensor([len(ids) for ids in completion_ids], device=sequences.device),
                    generated.beam_indices if beam else None,
                ).to(device),
            }
        return completion_ids, None

    def _beam_generation_config(self, num_beams: int) -> GenerationConfig:
        """
        An explicit beam-search config: the user's `generation_kwargs` (minus sampling and beam-shape settings) and
        nothing inherited from the model, so no top-k/top-p warper or penalty of a pretrained checkpoint prunes beams.
        """
        sampling_keys = {"do_sample", "temperature", "top_k", "top_p", "min_p", "num_beams", "num_return_sequences"}
        user_kwargs = {k: v for k, v in (self.args.generation_kwargs or {}).items() if k not in sampling_keys}
        return build_generation_config(
            max_new_tokens=self.max_completion_length,
            num_beams=num_beams,
            do_sample=False,
            eos_token_id=self.eos_token_ids,
            pad_token_id=self._tokenizer.pad_token_id,
            bos_token_id=self._tokenizer.bos_token_id,
            length_penalty=0.0,  # rank beams by summed log-prob, the policy order of the difficulty test
            disable_compile=True,
            **user_kwargs,
        )

    # ------------------------------------------------------------------------------------------------------------
    # Gate
    # ------------------------------------------------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = self._sanitize_rewards(
            super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
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
        """Computes the gate of the local rows from the gathered generation batch and logs the gate metrics."""
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
        num_rows = len(all_completions)
        num_prompts = num_rows // num_generations
        group_ground_truths = all_ground_truths[::num_generations]
        sequence_index: dict[tuple[int, ...], int] = {}
        row_sequence_ids = torch.tensor([sequence_index.setdefault(s, len(sequence_index)) for s in all_completions])
        ground_truth_sequence_ids = torch.tensor(
            [sequence_index.setdefault(s, len(sequence_index)) for s in group_ground_truths]
        )
        # A rollout that *is* the ground truth ties with it: it must not outrank it through float noise between two
        # forwards (or two ranker calls) of the same sequence.
        is_ground_truth = row_sequence_ids.view(num_prompts, num_generations) == ground_truth_sequence_ids.unsqueeze(1)
        metrics = {"gate/gt_in_rollouts": is_ground_truth.any(dim=1).float().mean().item()}

        invalid_masks = [
            func.invalid_mask(completion_ids)
            for func in self.reward_funcs
            if callable(getattr(func, "invalid_mask", None))
        ]
        if invalid_masks:
            invalid = torch.tensor(invalid_masks, dtype=torch.bool, device=device).any(dim=0)
            metrics["gate/invalid_rollout_rate"] = gather(invalid.float()).mean().item()

        difficulty = discriminability = None
        if args.gate_mode in ("adaptive", "difficulty"):
            rollout_logps = gather(self._rollout_logps_for_gate(output, completion_ids))
            rollout_logps = (
                rollout_logps.view(num_prompts, num_generations).cpu().masked_fill(is_ground_truth, -torch.inf)
            )
            ground_truth_logps = self._ground_truth_logps_for_gate(output, ground_truth_ids, num_generations)
            difficulty = policy_difficulty(rollout_logps, ground_truth_logps.cpu(), args.gate_tau)
            metrics["gate/difficulty_rate"] = difficulty.float().mean().item()
        if args.gate_mode in ("adaptive", "discriminability"):
            rewards_per_func = stash["rewards_per_func"]
            rollout_scores = self._aggregate_rewards(rewards_per_func).view(num_prompts, num_generations).cpu()
            generator = torch.Generator().manual_seed(
                args.seed * 1_000_003 + self.state.global_step * 2 + (mode == "eval")
            )
            negatives = sample_cross_negatives(
                row_sequence_ids, ground_truth_sequence_ids, num_generations, args.num_cross_negatives, generator
            )
            ground_truth_scores, negative_scores = self._score_ground_truths_and_negatives(
                stash, ground_truth_ids, all_completions, negatives, num_generations
            )
            r1 = reward_top_tau(
                rollout_scores.masked_fill(is_ground_truth, -torch.inf), ground_truth_scores, args.gate_tau
            )
            r2 = negatives_in_bottom_rho(rollout_scores, ground_truth_scores, negative_scores, args.gate_rho)
            # A prompt with a missing score (failed ranker call, non-finite score) among its ground truth, rollouts
            # or negatives is not trusted to the reward: no GRPO term, whatever R1 and R2 say on the other scores.
            unscorable = (
                torch.isnan(ground_truth_scores)
                | torch.isnan(rollout_scores).any(dim=1)
                | torch.isnan(negative_scores).any(dim=1)
            )
            discriminability = r1 & r2 & ~unscorable
            metrics["gate/r1_rate"] = r1.float().mean().item()
            metrics["gate/r2_rate"] = r2.float().mean().item()
            metrics["gate/discriminability_rate"] = discriminability.float().mean().item()
            metrics["gate/unscorable_rate"] = unscorable.float().mean().item()

        if difficulty is None and discriminability is None:
            gate = torch.full((num_prompts,), args.gate_mode == "always", dtype=torch.bool)
        else:
            gate = compute_gate(args.gate_mode, difficulty, discriminability)
        metrics["gate/rate"] = gate.float().mean().item()
        for name, value in metrics.items():
            self._metrics[mode][name].append(value)
        return gate.repeat_interleave(num_generations)[process_slice].to(device)

    def _sanitize_rewards(self, rewards_per_func: torch.Tensor) -> torch.Tensor:
        """
        The gathered `(N, num_funcs)` rewards as GRPO and the gate may use them. An infinite reward (a reward
        function's inf, or a float64 score beyond float32's range) becomes NaN, TRL's "no reward". A row that a reward function
        reporting its failures as `None` (`none_means_failure = True`, e.g. [`RankerReward`] under
        `on_failure="gate_out"`) could not score loses its other rewards too: it is then unscorable, so TRL gives it
        zero advantage and keeps it out of its group's baseline, and the gate does not trust its prompt to the reward,
        instead of letting the other functions alone score it. Without a fault, the tensor is returned unchanged.
        """
        infinite = torch.isinf(rewards_per_func)
        if infinite.any():
            names = [
                name for name, bad in zip(self.reward_func_names, infinite.any(dim=0).tolist(), strict=True) if bad
            ]
            logger.warning(
                f"{int(infinite.sum())} infinite reward(s) from {names}: treated as missing (None), never as a reward."
            )
            rewards_per_func = rewards_per_func.masked_fill(infinite, torch.nan)
        failure_columns = [i for i, f in enumerate(self.reward_funcs) if getattr(f, "none_means_failure", False)]
        if failure_columns:
            failed = torch.isnan(rewards_per_func[:, failure_columns]).any(dim=1, keepdim=True)
            if failed.any():
                rewards_per_func = rewards_per_func.masked_fill(failed, torch.nan)
        return rewards_per_func

    def _aggregate_rewards(self, rewards_per_func: torch.Tensor) -> torch.Tensor:
        """The weighted sum of the reward functions GRPO uses; NaN where every function returned None."""
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        scores = (rewards_per_func * weights).nansum(dim=1)
        scores[torch.isnan(rewards_per_func).all(dim=1)] = torch.nan
        return scores

    def _rollout_logps_for_gate(self, output: dict[str, Any], completion_ids: list[list[int]]) -> torch.Tensor:
        """
        Summed, untempered log π of each local rollout: kept from the generation's raw logits when this trainer
        generated the rollouts (no extra pass), else one no-grad forward pass over them.
        """
        captured, self._captured_rollouts = self._captured_rollouts, None
        if captured is not None:
            if captured["completion_ids"] != completion_ids:
                raise RuntimeError("The captured rollout log-probs do not belong to the scored rollouts.")
            return captured["logps"]
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
                tensors = [torch.tensor(ids, dtype=torch.long) for ids in chunk_sequences]
                targets = pad(tensors, padding_value=self._tokenizer.pad_token_id).to(device)
                target_mask = pad([torch.ones_like(t) for t in tensors], padding_value=0).to(device)
                token_logps = self._target_token_logps(
                    model, prompt_ids[chunk_rows], prompt_mask[chunk_rows], targets, target_mask
                )
                if not dummy:
                    logps.append((token_logps * target_mask).sum(dim=1).float())
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

        rows, row_prompts, row_completion_ids = [], [], []
        for group in owned_groups:
            local = group * num_generations - offset
            candidates = [ground_truth_ids[local]]
            candidates += [list(all_completions[n]) if n >= 0 else [] for n in negatives[group].tolist()]
            for ids in candidates:
                rows.append({k: v for k, v in inputs[local].items() if k not in _ROLLOUT_KEYS})
                row_prompts.append(prompts[local])
                row_completion_ids.append(ids)
        per_group = 1 + num_negatives
        count = torch.tensor([len(rows)], device=self.accelerator.device)
        max_count = int(gather(count).max().item())
        # Equal sizes on every process for the gather inside the reward computation; the padding is dropped below.
        pad_row = {k: v for k, v in inputs[0].items() if k not in _ROLLOUT_KEYS}
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
                rewards_per_func = self._sanitize_rewards(
                    GRPOTrainer._calculate_rewards(self, rows, row_prompts, completions, row_completion_ids)
                )
            finally:
                self._pending_extra_logs, self._pending_metrics = pending_extra, pending_metrics
            all_counts = gather(count).tolist()
            per_process = self._aggregate_rewards(rewards_per_func).cpu().view(-1, max_count)
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

    # ------------------------------------------------------------------------------------------------------------
    # Checkpoints: exact resumption
    # ------------------------------------------------------------------------------------------------------------

    def _get_train_sampler(self, dataset=None):
        sampler = super()._get_train_sampler(dataset)
        if type(sampler) is not RepeatSampler:
            return sampler
        return _ResumableRepeatSampler(
            data_source=sampler.data_source,
            mini_repeat_count=sampler.mini_repeat_count,
            batch_size=sampler.batch_size,
            repeat_count=sampler.repeat_count,
            shuffle=sampler.shuffle,
            seed=sampler.seed,
        )

    def _save_checkpoint(self, model, trial):
        # Written before the parent's files, so that a checkpoint whose trainer_state.json exists (written last) is
        # complete. Every process saves its own buffer, like its RNG state.
        if self._step % (self.args.steps_per_generation * self.num_iterations) != 0 and self._buffered_inputs:
            checkpoint = os.path.join(
                self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            )
            os.makedirs(checkpoint, exist_ok=True)
            state = {"step": self._step, "buffered_inputs": self._buffered_inputs}
            torch.save(state, os.path.join(checkpoint, _generation_buffer_file(self.accelerator)))
        super()._save_checkpoint(model, trial)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, _generation_buffer_file(self.accelerator))
        generate_every = self.args.steps_per_generation * self.num_iterations
        if os.path.isfile(path):
            state = torch.load(path, map_location="cpu", weights_only=True)  # CPU tensors may be tagged "cpu:0"
            self._step = state["step"]
            self._buffered_inputs = send_to_device(state["buffered_inputs"], self.accelerator.device)
        elif self.state.global_step * self.args.gradient_accumulation_steps % generate_every != 0:
            logger.warning(
                f"{checkpoint} was saved in the middle of a generation batch (steps_per_generation="
                f"{self.args.steps_per_generation}, num_iterations={self.num_iterations}) without its buffered "
                "rollouts: they are generated again, so the resumed run is not step-for-step identical to an "
                "uninterrupted one."
            )


def _generation_buffer_file(accelerator) -> str:
    """Name of a process's saved generation buffer inside a checkpoint folder."""
    if accelerator.num_processes == 1:
        return "generation_buffer.pt"
    return f"generation_buffer_{accelerator.process_index}.pt"


class _ResumableRepeatSampler(RepeatSampler):
    """
    TRL's `RepeatSampler` with `set_epoch`, which the Trainer calls before every epoch. The order of epoch `e` is the
    `(e + 1)`-th permutation drawn from `seed`, exactly as in an uninterrupted run of TRL's sampler (which draws one
    permutation per epoch from one generator), also when a run resumed from a checkpoint starts at epoch `e` with a
    fresh sampler (TRL's would replay epoch 0's order).
    """

    def set_epoch(self, epoch: int) -> None:
        if not self.shuffle or self.seed is None:
            return
        self.generator.manual_seed(self.seed)
        for _ in range(epoch):
            torch.randperm(self.num_samples, generator=self.generator)
