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
"""A toy next-item task shared by the tests and the distributed test script (no network, no hub)."""

import itertools

import numpy as np
import torch
from datasets import Dataset
from transformers import Qwen2ForCausalLM

from adagrpo_trl import AdaGRPOConfig
from adagrpo_trl.sid import format_sid, sid_vocabulary
from adagrpo_trl.tokenization import build_sid_tokenizer, small_qwen2_config


CODEBOOK = [4, 4]  # 16 items of 2 SID tokens each
ITEMS = [format_sid((a, b)) for a in range(CODEBOOK[0]) for b in range(CODEBOOK[1])]
WORDS = ["history", ":", "next"]


def random_codes(num_items: int, codebook: list[int], seed: int = 0) -> np.ndarray:
    """Distinct random code rows (sharing prefixes, since the code space is small)."""
    rng = np.random.default_rng(seed)
    space = np.array(list(itertools.product(*[range(size) for size in codebook])))
    return space[rng.choice(len(space), size=num_items, replace=False)]


def make_tokenizer():
    return build_sid_tokenizer(sid_vocabulary(CODEBOOK), words=WORDS)


def make_model(tokenizer, seed: int = 0, **config_overrides) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    config = small_qwen2_config(tokenizer, hidden_size=16, num_attention_heads=2, num_key_value_heads=1)
    for key, value in config_overrides.items():
        setattr(config, key, value)
    return Qwen2ForCausalLM(config)


def make_dataset(num_rows: int = 16) -> Dataset:
    """Each user's history is three consecutive items; the ground truth is the next one."""
    rows = []
    for user in range(num_rows):
        history = [ITEMS[(user + j) % len(ITEMS)] for j in range(3)]
        target = ITEMS[(user + 3) % len(ITEMS)]
        rows.append(
            {
                "prompt": "history : " + " ".join(history) + " next :",
                "completion": target,
                "target_item": target,  # context column: `completion` itself does not reach reward functions
                "user_id": user,
            }
        )
    return Dataset.from_list(rows)


def target_reward(completions, target_item, **kwargs):
    """1 for the ground truth, 0.5 for a same-first-level item, plus a small length term so groups rarely tie."""
    rewards = []
    for completion, target in zip(completions, target_item, strict=True):
        if completion == target:
            rewards.append(1.0)
        elif completion[:5] == target[:5]:
            rewards.append(0.5)
        else:
            rewards.append(0.05 * len(completion) / 10)
    return rewards


def tiny_config(tmp_path, **overrides) -> AdaGRPOConfig:
    kwargs = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,  # completions per device and micro-batch
        num_generations=4,  # K rollouts per prompt
        max_completion_length=3,  # 2 SID tokens + EOS
        max_steps=2,
        learning_rate=1e-2,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        bf16=False,  # TRL defaults to bf16
        activation_checkpointing=False,  # TRL defaults to gradient checkpointing on
        num_cross_negatives=2,
        gate_tau=0.5,
        gate_rho=0.5,
        seed=0,
    )
    kwargs.update(overrides)
    return AdaGRPOConfig(**kwargs)
