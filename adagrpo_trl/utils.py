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
"""Sequence helpers shared by the trainer's gate and the stratified analysis."""

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F


def cut_after_eos(completion_ids: torch.Tensor, eos_token_ids: int | Sequence[int]) -> list[list[int]]:
    """Each row of generated ids up to and including its first EOS (the whole row if it has none)."""
    eos_ids = [eos_token_ids] if isinstance(eos_token_ids, int) else list(eos_token_ids)
    is_eos = torch.isin(completion_ids, torch.tensor(eos_ids, device=completion_ids.device))
    lengths = torch.where(
        is_eos.any(dim=1),
        is_eos.int().argmax(dim=1) + 1,
        torch.full_like(is_eos[:, 0], is_eos.size(1), dtype=torch.long),
    )
    return [row[:n].tolist() for row, n in zip(completion_ids.cpu(), lengths.cpu().tolist(), strict=True)]


def target_token_logps(
    model: Any,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    target_ids: torch.Tensor,
    target_mask: torch.Tensor,
) -> torch.Tensor:
    """
    Per-token log π(target | prompt) with the model's plain forward (no temperature, no fused head), in float32.

    Args:
        model: A causal LM accepting `logits_to_keep`.
        prompt_ids, prompt_mask (`torch.Tensor` of shape `(B, P)`): Left-padded prompts.
        target_ids, target_mask (`torch.Tensor` of shape `(B, T)`): Right-padded targets.

    Returns:
        `torch.Tensor` of shape `(B, T)` (padded positions hold the log-prob of the pad token; mask them).
    """
    input_ids = torch.cat([prompt_ids, target_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, target_mask], dim=1)
    length = target_ids.size(1)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=length + 1).logits
    logits = logits[:, -length - 1 : -1].float()
    return torch.gather(F.log_softmax(logits, dim=-1), 2, target_ids.unsqueeze(-1)).squeeze(-1)
