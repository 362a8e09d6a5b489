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
AdaGRPO quickstart: a tiny next-item recommender trained for a few steps on CPU, fully offline.

Items are written as two semantic-ID tokens (`<a_3><b_1>`); a user's prompt lists the items they consumed and the
ground truth (`completion`) is the next one. The reward is a deliberately noisy "ranker": it knows the true next item
only for popular items and scores rare ones at random, the situation AdaGRPO is made for. Prints the gate metrics.

    python examples/quickstart.py                       # or: make quickstart
    accelerate launch --config_file adagrpo_trl/accelerate_configs/multi_cpu.yaml --num_processes 2 examples/quickstart.py

Options: `--max_steps N`, `--logging_steps N`, `--output_dir DIR` (defaults: 80, 10, outputs/quickstart). Each
process trains on 32 completions per step, so N processes train on N x 32 (N x 4 prompts of 8 rollouts).
"""

import argparse
import random

import torch
from datasets import Dataset
from transformers import Qwen2ForCausalLM

from adagrpo_trl import AdaGRPOConfig, AdaGRPOTrainer
from adagrpo_trl.tokenization import build_sid_tokenizer, sid_token, sid_vocabulary, small_qwen2_config


parser = argparse.ArgumentParser(description="AdaGRPO quickstart on a tiny in-memory recommender (CPU, offline).")
parser.add_argument("--max_steps", type=int, default=80)
parser.add_argument("--logging_steps", type=int, default=10)
parser.add_argument("--output_dir", default="outputs/quickstart")
cli = parser.parse_args()

################
# Catalog, tokenizer and model (built in memory)
################
CODEBOOK_SIZES = [8, 8]
ITEMS = [sid_token(0, a) + sid_token(1, b) for a in range(CODEBOOK_SIZES[0]) for b in range(CODEBOOK_SIZES[1])]
POPULAR = set(ITEMS[:16])  # the ranker is reliable on these and noisy elsewhere

tokenizer = build_sid_tokenizer(sid_vocabulary(CODEBOOK_SIZES), words=["history", ":", "next"])
torch.manual_seed(0)
model = Qwen2ForCausalLM(small_qwen2_config(tokenizer, hidden_size=32))

################
# Dataset: "prompt" (history), "completion" (ground-truth SID), context columns for the reward
################
rng = random.Random(0)
rows = []
for user in range(256):
    start, step = rng.randrange(len(ITEMS)), rng.choice([1, 2, 3])
    history = [ITEMS[(start + step * j) % len(ITEMS)] for j in range(4)]
    target = ITEMS[(start + step * 4) % len(ITEMS)]
    prompt = "history : " + " ".join(history) + " next :"
    rows.append({"prompt": prompt, "completion": target, "target_item": target, "user_id": user})
dataset = Dataset.from_list(rows)


################
# Reward: a noisy ranker (any TRL reward function works; dataset columns arrive as keyword arguments)
################
def noisy_ranker(completions, target_item, **kwargs):
    scores = []
    for completion, target in zip(completions, target_item, strict=True):
        if completion not in ITEMS:
            scores.append(-1.0)  # hallucinated item
        elif target in POPULAR:
            scores.append(1.0 if completion == target else 0.0)
        else:
            scores.append(rng.random())  # the ranker cannot tell rare items apart
    return scores


################
# Training
################
args = AdaGRPOConfig(
    output_dir=cli.output_dir,
    # AdaGRPO
    gate_mode="adaptive",
    gate_tau=0.25,
    gate_rho=0.5,
    num_cross_negatives=4,
    nll_coef=1.0,
    grpo_coef=1.0,
    # GRPO
    num_generations=8,
    per_device_train_batch_size=32,
    max_completion_length=3,  # 2 SID tokens + EOS
    learning_rate=1e-2,
    max_steps=cli.max_steps,
    logging_steps=cli.logging_steps,
    # CPU-friendly settings (TRL defaults to bf16 and gradient checkpointing)
    use_cpu=True,
    bf16=False,
    activation_checkpointing=False,
    report_to="none",
    save_strategy="no",
    seed=0,
)
trainer = AdaGRPOTrainer(
    model=model, reward_funcs=noisy_ranker, args=args, train_dataset=dataset, processing_class=tokenizer
)
trainer.train()

if trainer.accelerator.is_main_process:
    print(
        f"\ntrained {trainer.state.global_step} steps on {trainer.accelerator.num_processes} process(es), "
        f"{args.generation_batch_size} completions per step"
    )
    keys = ["loss/nll", "reward", "gate/rate", "gate/difficulty_rate", "gate/discriminability_rate"]
    keys += ["gate/gt_in_rollouts"]
    print("\nstep  " + "  ".join(f"{k:>26}" for k in keys))
    for log in trainer.state.log_history:
        if "gate/rate" in log:
            print(f"{log['step']:>4}  " + "  ".join(f"{log[k]:>26.4f}" for k in keys))
