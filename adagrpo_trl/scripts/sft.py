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
`adagrpo-trl sft`: supervised next-item training of the policy (the SFT checkpoint AdaGRPO starts from), with TRL's
`SFTTrainer`: a small Qwen2 from scratch (the CPU default) or a pretrained backbone with the SID tokens added.

    adagrpo-trl sft --config ml-100k
    adagrpo-trl sft --data_dir runs/ml-100k/data --output_dir runs/ml-100k/sft --use_cpu true --bf16 false
    adagrpo-trl sft --config ml-100k --accelerate_config multi_cpu --num_processes 2
    accelerate launch --config_file ddp.yaml -m adagrpo_trl.scripts.sft --config qwen2.5-0.5b
"""

import sys

from trl import SFTConfig

from .configs import SFTScriptArguments
from .recipe import RecipeParser, make_command_parser
from .utils import expand_bare_resume_flag, launch_with_accelerate, maybe_subsample, setup_logging


DESCRIPTION = "supervised next-item training (the SFT checkpoint)"


def run_sft(script: SFTScriptArguments, args: SFTConfig) -> str:
    """
    Builds the policy ([`~adagrpo_trl.sft.build_policy`]) and trains it on the prepared training split
    ([`~adagrpo_trl.sft.train_sft`]).

    Returns:
        `str`: the folder of the saved model and tokenizer (`args.output_dir`).
    """
    from ..data import PreparedData
    from ..sft import build_policy, train_sft

    prepared = PreparedData.load(script.data_dir)
    model, tokenizer, peft_config = build_policy(
        prepared.catalog,
        prepared.tokenizer,
        model_name_or_path=script.model_name_or_path,
        hidden_size=script.hidden_size,
        num_hidden_layers=script.num_hidden_layers,
        num_attention_heads=script.num_attention_heads,
        num_key_value_heads=script.num_key_value_heads,
        use_lora=script.use_lora,
        lora_r=script.lora_r,
        seed=args.seed,
    )
    train = maybe_subsample(prepared.datasets["train"], script.max_train_samples, args.seed)
    train_sft(model, tokenizer, train, args, peft_config=peft_config)
    return args.output_dir


def make_parser() -> RecipeParser:
    """The parser of `adagrpo-trl sft`: [`SFTScriptArguments`] and `SFTConfig` from `--config` and flags."""
    return make_command_parser("sft", description=DESCRIPTION)


def main(argv: list[str] | None = None) -> str | None:
    """
    Runs `adagrpo-trl sft` with `argv` (default: `sys.argv[1:]`); with `--accelerate_config NAME` it relaunches
    itself under `accelerate launch` (see [`~adagrpo_trl.scripts.utils.launch_with_accelerate`]).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if launch_with_accelerate("adagrpo_trl.scripts.sft", argv):
        return None
    setup_logging()
    script, args = make_parser().parse_args_and_config(expand_bare_resume_flag(argv))
    return run_sft(script, args)


if __name__ == "__main__":
    main()
