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
`adagrpo-trl train`: AdaGRPO and its baselines (pure GRPO, fixed NLL+GRPO mixtures, via `gate_mode` and `nll_coef`)
from an SFT checkpoint, with a ranker reward. Resumable (`--resume_from_checkpoint` alone: the latest complete
checkpoint of `output_dir`).

    adagrpo-trl train --config ml-100k                       # ml-100k/train/adagrpo.yaml
    adagrpo-trl train --config ml-100k/train/grpo
    adagrpo-trl train --config ml-100k --accelerate_config multi_cpu --num_processes 2
    accelerate launch --config_file zero2.yaml -m adagrpo_trl.scripts.train --config my_train.yaml
"""

import logging
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from ..adagrpo_config import AdaGRPOConfig
from ..utils import atomic_write_json
from .configs import TrainScriptArguments
from .recipe import RecipeParser, make_command_parser
from .utils import end_distributed, expand_bare_resume_flag, launch_with_accelerate, maybe_subsample, setup_logging


logger = logging.getLogger("adagrpo_trl")


DESCRIPTION = "AdaGRPO and its baselines (via gate_mode)"


def run_train(script: TrainScriptArguments, args: AdaGRPOConfig) -> str:
    r"""
    Trains AdaGRPO (or a baseline, via \`gate_mode\` / \`nll_coef\`) from the SFT checkpoint with the named reward
    functions, resuming from \`args.resume_from_checkpoint\` (see
    [\`~adagrpo_trl.checkpoints.resolve_resume_from_checkpoint\`]); saves the model, tokenizer and \`log_history.json\`.

    Returns:
        \`str\`: the output folder.
    """
    from ..adagrpo_trainer import AdaGRPOTrainer
    from ..callbacks import RecommendationEvalCallback
    from ..checkpoints import resolve_resume_from_checkpoint
    from ..constrained import make_trie_processor_factory
    from ..data import PreparedData
    from ..rewards import get_reward_funcs
    from ..tokenization import load_tokenizer, sid_lora_config

    resume_from_checkpoint = resolve_resume_from_checkpoint(args.resume_from_checkpoint, args.output_dir)
    prepared = PreparedData.load(script.data_dir)
    tokenizer = load_tokenizer(script.model_name_or_path)
    prepared.catalog.check_tokenizer(tokenizer, str(Path(script.data_dir, "catalog.json")), script.model_name_or_path)
    reward_options: dict[str, Any] = dict(catalog=prepared.catalog)
    ranker_rewards = [name for name in script.reward_funcs if name != "hit"]
    if ranker_rewards:  # the RankerReward options ('hit' takes the catalog only)
        reward_options.update(
            transform=script.reward_transform,
            invalid_reward=script.invalid_reward,
            on_failure=script.on_failure,
            tokenizer=tokenizer,
        )
    if "sasrec" in script.reward_funcs:
        reward_options["ranker_path"] = script.ranker_path
    if "http" in script.reward_funcs:
        reward_options["url"] = script.ranker_url
    if ranker_rewards and script.full_history:
        if prepared.user_histories is None or "target_position" not in prepared.datasets["train"].column_names:
            logger.warning(
                "%s has no user histories (prepared by an older version): the ranker reads the prompt's history.",
                script.data_dir,
            )
        else:
            reward_options["user_histories"] = prepared.user_histories
    if script.popularity_bias:
        if not ranker_rewards:
            raise ValueError(
                f"popularity_bias={script.popularity_bias} needs a ranker reward among {script.reward_funcs}."
            )
        reward_options["popularity_bias"] = script.popularity_bias
        reward_options["item_counts"] = Counter(item for sequence in prepared.train_sequences for item in sequence)
    reward_funcs = get_reward_funcs(list(script.reward_funcs), **reward_options)
    processors = [make_trie_processor_factory(prepared.catalog, tokenizer)] if script.constrained_rollouts else None
    peft_config = sid_lora_config(r=script.lora_r, lora_alpha=2 * script.lora_r) if script.use_lora else None
    train = maybe_subsample(prepared.datasets["train"], script.max_train_samples, args.seed)
    trainer = AdaGRPOTrainer(
        model=script.model_name_or_path,
        reward_funcs=reward_funcs,
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
        logits_processors=processors,
        peft_config=peft_config,
    )
    if script.recommendation_eval_steps:
        callback = RecommendationEvalCallback(
            prepared.datasets["validation"],
            prepared.catalog,
            tokenizer,
            eval_steps=script.recommendation_eval_steps,
            max_samples=script.recommendation_eval_samples,
            trainer=trainer,
        )
        trainer.add_callback(callback)
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    if peft_config is not None:
        trainer.model = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
    trainer.save_model(args.output_dir)
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(args.output_dir)
        atomic_write_json(Path(args.output_dir, "log_history.json"), trainer.state.log_history, indent=2)
    return args.output_dir


def make_parser() -> RecipeParser:
    """The parser of `adagrpo-trl train`: [`TrainScriptArguments`] and `AdaGRPOConfig` from `--config` and flags."""
    return make_command_parser("train", description=DESCRIPTION)


def main(argv: list[str] | None = None) -> str | None:
    """
    Runs `adagrpo-trl train` with `argv` (default: `sys.argv[1:]`); with `--accelerate_config NAME` it relaunches
    itself under `accelerate launch` (see [`~adagrpo_trl.scripts.utils.launch_with_accelerate`]).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if launch_with_accelerate("adagrpo_trl.scripts.train", argv):
        return None
    setup_logging()
    script, args = make_parser().parse_args_and_config(expand_bare_resume_flag(argv))
    output_dir = run_train(script, args)
    end_distributed()
    return output_dir


if __name__ == "__main__":
    main()
