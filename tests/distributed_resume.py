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
Trains the toy task on 2 CPU processes (`torchrun --nproc_per_node 2`), saving a checkpoint every 3 steps, optionally
resumed from a checkpoint; writes the per-step logs and the final weights of process 0 to `--out` (used by
`tests/test_resume.py`).
"""

import argparse
import json
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adagrpo_trl import AdaGRPOTrainer  # noqa: E402
from tests import toy  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--resume_from_checkpoint", default=None)
    cli = parser.parse_args()

    tokenizer = toy.make_tokenizer()
    # 6 rows per process and 2 steps per generation batch: 6 prompts per batch, so an epoch of 12 prompts is 4 steps
    args = toy.tiny_config(
        cli.output_dir,
        per_device_train_batch_size=6,
        steps_per_generation=2,
        max_steps=10,
        save_strategy="steps",
        save_steps=3,
        gate_tau=1.0,
    )
    trainer = AdaGRPOTrainer(
        model=toy.make_model(tokenizer),
        reward_funcs=toy.target_reward,
        args=args,
        train_dataset=toy.make_dataset(12),
        processing_class=tokenizer,
    )
    trainer.train(resume_from_checkpoint=cli.resume_from_checkpoint)
    if trainer.accelerator.is_main_process:
        timings = ("step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second")
        logs = [
            {k: v for k, v in log.items() if k not in timings} for log in trainer.state.log_history if "loss" in log
        ]
        weights = {name: p.detach().flatten().tolist() for name, p in trainer.model.named_parameters()}
        result = {"num_processes": trainer.accelerator.num_processes, "logs": logs, "weights": weights}
        Path(cli.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
