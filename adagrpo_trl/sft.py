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

from .catalog import ItemCatalog


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


def build_policy(
    catalog: ItemCatalog,
    tokenizer: Any = None,
    model_name_or_path: str | None = None,
    hidden_size: int = 128,
    num_hidden_layers: int = 4,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    use_lora: bool = False,
    lora_r: int = 16,
    seed: int = 0,
) -> tuple[Any, Any, Any]:
    """
    Builds the next-item policy that [`train_sft`] trains: a small Qwen2 from scratch over the prepared SID tokenizer
    (the CPU default), or a pretrained causal LM with one token added per semantic-ID code of the catalog (embeddings
    resized), optionally with LoRA on the linear layers and trainable SID rows.

    Args:
        catalog ([`~adagrpo_trl.catalog.ItemCatalog`]):
            The prepared catalog; its codes give the SID tokens added to a pretrained backbone.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`], *optional*):
            The prepared SID tokenizer (`PreparedData.tokenizer`); required when `model_name_or_path` is empty.
        model_name_or_path (`str`, *optional*):
            A pretrained causal LM; empty or `None`: a small Qwen2 from scratch.
        hidden_size (`int`, *optional*, defaults to `128`):
            From scratch: hidden size.
        num_hidden_layers (`int`, *optional*, defaults to `4`):
            From scratch: layers.
        num_attention_heads (`int`, *optional*, defaults to `4`):
            From scratch: attention heads.
        num_key_value_heads (`int`, *optional*, defaults to `2`):
            From scratch: key/value heads.
        use_lora (`bool`, *optional*, defaults to `False`):
            Pretrained backbone: return a LoRA config with trainable SID rows (see
            [`~adagrpo_trl.tokenization.sid_lora_config`]).
        lora_r (`int`, *optional*, defaults to `16`):
            LoRA rank (alpha is twice the rank).
        seed (`int`, *optional*, defaults to `0`):
            Seeds the from-scratch initialisation.

    Returns:
        `tuple`: the model, its tokenizer and the PEFT config (`None` without LoRA).

    Example:

    ```python
    >>> from adagrpo_trl.data import PreparedData
    >>> from adagrpo_trl.sft import build_policy
    >>> prepared = PreparedData.load("runs/ml-100k/data")
    >>> model, tokenizer, peft_config = build_policy(prepared.catalog, prepared.tokenizer, num_hidden_layers=2)
    ```
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2ForCausalLM

    from .tokenization import add_sid_tokens, sid_lora_config, sid_token, small_qwen2_config

    if model_name_or_path:
        tokenizer = AutoTokenizer.from_pretrained(model_name_or_path)
        model = AutoModelForCausalLM.from_pretrained(model_name_or_path)
        codes = catalog.codes
        sid_tokens = [
            sid_token(level, int(code)) for level in range(codes.shape[1]) for code in sorted(set(codes[:, level]))
        ]
        add_sid_tokens(tokenizer, model, sid_tokens)
        peft_config = sid_lora_config(r=lora_r, lora_alpha=2 * lora_r) if use_lora else None
        return model, tokenizer, peft_config
    if tokenizer is None:
        raise ValueError("build_policy: a from-scratch policy needs the prepared SID tokenizer, got tokenizer=None.")
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(
        small_qwen2_config(
            tokenizer,
            hidden_size=hidden_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            num_key_value_heads=num_key_value_heads,
        )
    )
    return model, tokenizer, None
