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
An ordinary TRL GRPO script in which only the config and trainer classes change (the two lines marked `# AdaGRPO`).

It parses its arguments with TRL's `TrlParser` like `trl/scripts/grpo.py`, trains on a dataset saved by
`adagrpo-trl prepare` (a `datasets.DatasetDict` with `prompt`, `completion`, `target_item`, ...) with any reward
function, here a toy "ranker" that only knows the ground truth, and saves the model.

    adagrpo-trl prepare --dataset synthetic --synthetic_users 200 --synthetic_items 60 --num_levels 2 \
        --output_dir runs/dropin/data
    adagrpo-trl sft --data_dir runs/dropin/data --output_dir runs/dropin/sft --hidden_size 32 --num_train_epochs 2 \
        --use_cpu true --bf16 false --report_to none --save_strategy no
    python examples/drop_in_trl_script.py --model_name_or_path runs/dropin/sft --data_dir runs/dropin/data \
        --output_dir runs/dropin/adagrpo --max_steps 5 --per_device_train_batch_size 16 --num_generations 4 \
        --max_completion_length 4 --use_cpu true --bf16 false --report_to none
"""

from dataclasses import dataclass, field

from datasets import load_from_disk
from trl import TrlParser

from adagrpo_trl import AdaGRPOConfig as GRPOConfig  # AdaGRPO: was `from trl import GRPOConfig`
from adagrpo_trl import AdaGRPOTrainer as GRPOTrainer  # AdaGRPO: was `from trl import GRPOTrainer`
from adagrpo_trl.tokenization import load_tokenizer


@dataclass
class ScriptArguments:
    model_name_or_path: str = field(metadata={"help": "The SFT checkpoint."})
    data_dir: str = field(metadata={"help": "A folder written by `adagrpo-trl prepare`."})


def exact_hit(completions, target_sid, **kwargs):
    """1 for the ground-truth item, 0 otherwise (dataset columns reach reward functions as keyword arguments)."""
    return [float(completion == target) for completion, target in zip(completions, target_sid, strict=True)]


def main(script_args: ScriptArguments, training_args: GRPOConfig) -> None:
    ################
    # Model & tokenizer
    ################
    tokenizer = load_tokenizer(script_args.model_name_or_path)

    ################
    # Dataset: TRL does not pass `completion` to rewards, so copy the ground truth into a context column
    ################
    train = load_from_disk(f"{script_args.data_dir}/datasets")["train"]
    train = train.map(lambda row: {"target_sid": row["completion"]})

    ################
    # Training
    ################
    trainer = GRPOTrainer(
        model=script_args.model_name_or_path,
        reward_funcs=exact_hit,
        args=training_args,
        train_dataset=train,
        processing_class=tokenizer,
    )
    trainer.train()
    trainer.save_model(training_args.output_dir)
    for log in trainer.state.log_history:
        if "gate/rate" in log:
            print(f"step {log['step']}: gate/rate={log['gate/rate']:.3f} loss/nll={log['loss/nll']:.3f}")


if __name__ == "__main__":
    parser = TrlParser((ScriptArguments, GRPOConfig))
    main(*parser.parse_args_and_config())
