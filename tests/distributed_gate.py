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
A few AdaGRPO steps whose rollouts depend only on the global row index, so that a 1-process and a 2-process run
see the same global generation batch. Writes the global gate of every generation and the logged losses as JSON.

    python tests/distributed_gate.py --out one.json --per_device_train_batch_size 12
    python -m torch.distributed.run --nproc_per_node 2 tests/distributed_gate.py --out two.json \
        --per_device_train_batch_size 6
    accelerate launch --config_file adagrpo_trl/accelerate_configs/zero3.yaml --num_processes 2 --mixed_precision no \
        tests/distributed_gate.py --out zero3.json --per_device_train_batch_size 6

Also writes how the run was distributed (distributed type, ZeRO stage, wrapper class) and the L2 norm of the change
of the parameters over the run, from the full (ZeRO-3: gathered) final state dict.
"""

import argparse
import json
import math
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from accelerate.utils import gather  # noqa: E402

from adagrpo_trl import AdaGRPOTrainer  # noqa: E402
from tests import toy  # noqa: E402


NUM_GENERATIONS = 4


class RecordingTrainer(AdaGRPOTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gates = []

    def _compute_gate(self, output, stash, ground_truth_ids, num_generations, mode):
        gate = super()._compute_gate(output, stash, ground_truth_ids, num_generations, mode)
        self.gates.append(gather(gate.long()).tolist())
        return gate


def deterministic_rollouts(prompts, trainer):
    """Rollout k of a prompt is the item k positions after the first history item: k = 3 is the ground truth."""
    tokenizer = trainer.processing_class
    offset = trainer.accelerator.process_index * len(prompts)
    prompt_ids = tokenizer(text=prompts)["input_ids"]
    completion_ids = []
    for i, prompt in enumerate(prompts):
        k = (offset + i) % NUM_GENERATIONS
        first = prompt.split()[2][:10]  # "<a_i><b_j>" of the first history item
        item = toy.ITEMS[(toy.ITEMS.index(first) + 1 + 2 * k) % len(toy.ITEMS)]
        completion_ids.append(tokenizer(item, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
    return {"prompt_ids": prompt_ids, "completion_ids": completion_ids, "logprobs": None}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--per_device_train_batch_size", type=int, required=True)
    parser.add_argument("--output_dir", default=None)
    parser.add_argument("--use_cpu", default="true", choices=["true", "false"], help="'false': GPUs (fp32).")
    cli = parser.parse_args()

    tokenizer = toy.make_tokenizer()
    args = toy.tiny_config(
        Path(cli.output_dir or Path(cli.out).with_suffix("")),
        per_device_train_batch_size=cli.per_device_train_batch_size,
        num_generations=NUM_GENERATIONS,
        gradient_accumulation_steps=1,
        max_steps=3,
        learning_rate=0.05,
        gate_tau=0.5,
        gate_rho=0.6,
        num_cross_negatives=2,
        optim="sgd",
        max_grad_norm=0.0,
        use_cpu=cli.use_cpu == "true",
    )
    model = toy.make_model(tokenizer)
    initial = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    trainer = RecordingTrainer(
        model=model,
        reward_funcs=toy.target_reward,
        args=args,
        train_dataset=toy.make_dataset(24),
        processing_class=tokenizer,
        rollout_func=deterministic_rollouts,
    )
    trainer.train()
    accelerator = trainer.accelerator
    final = accelerator.get_state_dict(trainer.model_wrapped)  # collective under ZeRO-3: every process calls it
    if accelerator.is_main_process:
        logs = [log for log in trainer.state.log_history if "loss" in log]
        change = math.sqrt(
            sum(float((final[name].cpu().float() - initial[name].float()).pow(2).sum()) for name in initial)
        )
        result = {
            "num_processes": accelerator.num_processes,
            "distributed_type": accelerator.distributed_type.value,
            "zero_stage": accelerator.state.deepspeed_plugin.zero_stage if trainer.is_deepspeed_enabled else None,
            "wrapper": type(trainer.model_wrapped).__name__,
            "param_change": change,
            "gates": trainer.gates,
            "loss": [log["loss"] for log in logs],
            "loss/nll": [log["loss/nll"] for log in logs],
            "gate/rate": [log["gate/rate"] for log in logs],
        }
        Path(cli.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
