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
Rollouts for [`~trl.GRPOTrainer`] beyond TRL's own sampling: beam rollouts, logits processors (e.g. a catalog trie)
and the rollouts' log π kept from the generation's raw logits. Not specific to AdaGRPO's loss; the trainer mixes it in.
"""

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import pad

from .constrained import build_generation_config, generate_with_shared_prefill, isolated_generation_config
from .utils import cut_after_eos


# A logits processor, or a factory called with the (left-padded) prompt length of each generate call and returning one.
# Factories let a processor look only at the generated suffix, e.g. `lambda n: TrieLogitsProcessor(catalog, n)`.
LogitsProcessorSpec = LogitsProcessor | Callable[[int], LogitsProcessor]

# Largest per-token logits (float32 bytes) that rollout generation keeps for the difficulty test; beyond it (long
# completions over a large vocabulary), the test runs a no-grad forward pass over the rollouts instead.
MAX_CAPTURED_LOGITS_BYTES = 1 << 30


def fits_captured_logits(model: Any, num_rows: int, max_new_tokens: int) -> bool:
    """Whether the raw logits of `num_rows` rollouts of `max_new_tokens` fit [`MAX_CAPTURED_LOGITS_BYTES`]."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    vocab_size = getattr(config, "vocab_size", None)
    return vocab_size is not None and num_rows * max_new_tokens * vocab_size * 4 <= MAX_CAPTURED_LOGITS_BYTES


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


class RolloutsMixin:
    """
    Mixin for [`~trl.GRPOTrainer`] subclasses (put it before `GRPOTrainer` in the bases). Overrides TRL's
    `_generate_single_turn` seam (transformers generation path) with:

    - beam rollouts (`args.rollout == "beam"`): K distinct beams per prompt, best first, each prompt encoded once for
      its K beams, with a generation config that inherits nothing from the model;
    - `logits_processors` for both rollout modes (a processor, or a factory called with the left-padded prompt length);
    - optionally, each rollout's summed untempered log π kept from the generation's raw logits (sampling then runs
      TRL's own generate call, so it draws the same rollouts), read back once with [`pop_captured_rollout_logps`].

    Anything else (vLLM, continuous batching, multimodal inputs) goes to TRL's own `_generate_single_turn`. Call
    [`_setup_rollouts`] at the end of `__init__`.
    """

    logits_processors: list[LogitsProcessorSpec]

    def _setup_rollouts(
        self,
        logits_processors: list[LogitsProcessorSpec] | None,
        rollout_func: Any,
        environment_factory: Any,
        capture_logps: bool,
    ) -> None:
        """Validates the logits processors and the rollout mode; `capture_logps`: the caller needs rollout log π."""
        self.logits_processors = list(logits_processors or [])
        for spec in self.logits_processors:
            if not callable(spec):
                raise TypeError(
                    f"logits_processors entries must be LogitsProcessor objects or factories, got {spec!r}."
                )
        if (self.logits_processors or self.args.rollout == "beam") and (
            self.use_vllm or self.use_transformers_continuous_batching or rollout_func is not None
        ):
            raise ValueError(
                "logits_processors and rollout='beam' apply to the transformers generation path only; they cannot be "
                "combined with use_vllm, use_transformers_continuous_batching or rollout_func."
            )
        # Only single-turn text rollouts of this path qualify for capture (tools and rollout_func change or produce
        # the completions elsewhere); the decision is the same on every process, so all run the same forwards (ZeRO-3).
        self._capture_rollout_logps = (
            capture_logps and not self.tools and rollout_func is None and environment_factory is None
        )
        self._captured_rollouts: dict[str, Any] | None = None

    def pop_captured_rollout_logps(self, completion_ids: list[list[int]]) -> torch.Tensor | None:
        """
        The summed untempered log π of the local rollouts `completion_ids`, kept from the raw logits of the generation
        that produced them, or `None` if this generation kept none. Each capture is returned once.
        """
        captured, self._captured_rollouts = self._captured_rollouts, None
        if captured is None:
            return None
        if captured["completion_ids"] != completion_ids:
            raise RuntimeError("The captured rollout log-probs do not belong to the scored rollouts.")
        return captured["logps"]

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
        of every completion is kept from the raw logits of the generation (see [`pop_captured_rollout_logps`]).
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
            if capture and not fits_captured_logits(unwrapped_model, num_rows, self.max_completion_length):
                capture = False  # the per-token logits would not fit: the caller runs a forward pass instead
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
