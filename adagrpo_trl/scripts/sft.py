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
    adagrpo-trl sft --config ml-100k --recommendation_eval_strategy epoch --recommendation_eval_samples 500 \
        --early_stopping_patience 1 --num_train_epochs 4 --sid_unlikelihood_coef 1.0
    accelerate launch --config_file ddp.yaml -m adagrpo_trl.scripts.sft --config qwen2.5-0.5b
"""

import logging
import sys

from trl import SFTConfig

from .configs import SFTScriptArguments
from .recipe import RecipeParser, make_command_parser
from .utils import end_distributed, expand_bare_resume_flag, launch_with_accelerate, maybe_subsample, setup_logging


logger = logging.getLogger(__name__)

DESCRIPTION = "supervised next-item training (the SFT checkpoint)"


def run_sft(script: SFTScriptArguments, args: SFTConfig) -> str:
    """
    Builds the policy ([`~adagrpo_trl.sft.build_policy`]) and trains it on the prepared training split
    ([`~adagrpo_trl.sft.train_sft`]).

    Returns:
        `str`: the folder of the saved model and tokenizer (`args.output_dir`).
    """
    from ..data import PreparedData
    from ..sft import build_policy, suggest_policy_size, train_sft

    prepared = PreparedData.load(script.data_dir)
    train = maybe_subsample(prepared.datasets["train"], script.max_train_samples, args.seed)
    if not script.model_name_or_path:
        suggested = suggest_policy_size(len(prepared.catalog), len(train))
        logger.info(
            f"Size rule for {len(prepared.catalog)} items and {len(train)} training windows (a heuristic, "
            f"adagrpo_trl.sft.suggest_policy_size): {suggested}; this run: hidden_size={script.hidden_size}, "
            f"num_hidden_layers={script.num_hidden_layers}, num_train_epochs={args.num_train_epochs}."
        )
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
    train_sft(
        model,
        tokenizer,
        train,
        args,
        peft_config=peft_config,
        catalog=prepared.catalog,
        recommendation_eval_dataset=prepared.datasets["validation"],
        recommendation_eval_strategy=script.recommendation_eval_strategy,
        recommendation_eval_steps=script.recommendation_eval_steps,
        recommendation_eval_samples=script.recommendation_eval_samples,
        early_stopping_patience=script.early_stopping_patience,
        keep_best_checkpoint=script.keep_best_checkpoint,
        sid_unlikelihood_coef=script.sid_unlikelihood_coef,
    )
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
    output_dir = run_sft(script, args)
    end_distributed()
    return output_dir


if __name__ == "__main__":
    main()
