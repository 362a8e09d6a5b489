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
"""Supervised next-item training (the SFT checkpoint AdaGRPO starts from), with TRL's `SFTTrainer`."""

from typing import Any

from datasets import Dataset
from trl import SFTConfig, SFTTrainer


def train_sft(
    model: Any,
    tokenizer: Any,
    train_dataset: Dataset,
    args: SFTConfig,
    eval_dataset: Dataset | None = None,
    peft_config: Any = None,
    callbacks: list | None = None,
) -> SFTTrainer:
    """
    Trains the next-item policy on prompt-completion rows with the loss on the completion only (the ground-truth SID
    and EOS), then saves the model and tokenizer to `args.output_dir` for [`AdaGRPOTrainer`] to load (with PEFT, the
    adapters are merged first, so the checkpoint is a plain model).

    Only the `prompt` and `completion` columns are kept: the context columns (`history`, `user_id`, ...) are for reward
    functions, not for supervised training.

    Args:
        model (`str` or [`~transformers.PreTrainedModel`]):
            The policy (a path or a model built in memory).
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]):
            Its tokenizer, with the SID tokens as single tokens.
        train_dataset ([`~datasets.Dataset`]):
            Rows with `prompt` and `completion` (ground-truth SID string).
        args ([`~trl.SFTConfig`]):
            Training arguments; `completion_only_loss` is forced on.
        eval_dataset ([`~datasets.Dataset`], *optional*):
            Validation rows (same columns).
        peft_config ([`~peft.PeftConfig`], *optional*):
            For LoRA on a pretrained backbone, see [`~adagrpo_trl.tokenization.sid_lora_config`].
        callbacks (`list`, *optional*):
            Trainer callbacks.

    Returns:
        The trained [`~trl.SFTTrainer`].
    """
    for name, split in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
        if split is None:
            continue
        missing = {"prompt", "completion"} - set(split.column_names)
        if missing:
            raise ValueError(f"{name} lacks column(s) {sorted(missing)}; got {split.column_names}.")
    args.completion_only_loss = True

    def keep_prompt_completion(split: Dataset | None) -> Dataset | None:
        if split is None:
            return None
        return split.remove_columns([c for c in split.column_names if c not in ("prompt", "completion")])

    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=keep_prompt_completion(train_dataset),
        eval_dataset=keep_prompt_completion(eval_dataset),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    trainer.train()
    if peft_config is not None:
        # Save a plain model (adapters merged) so that AdaGRPO and evaluation load it like any checkpoint.
        trainer.model = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
    trainer.save_model(args.output_dir)
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(args.output_dir)
    return trainer
