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
Supervised next-item training (the SFT checkpoint AdaGRPO starts from), with TRL's `SFTTrainer`: checkpoint selection
and early stopping on validation HR@10, a trie unlikelihood term against hallucinated SIDs, and a size rule.
"""

import logging
import math
import os
from typing import Any

import torch
from accelerate.utils import is_peft_model
from datasets import Dataset
from transformers.trainer_utils import SaveStrategy
from trl import SFTConfig, SFTTrainer

from .callbacks import RecommendationEvalCallback
from .catalog import ItemCatalog
from .trie import PrefixTrie
from .utils import atomic_write_json


logger = logging.getLogger(__name__)

SELECTION_FILE = "sft_selection.json"
RECOMMENDATION_EVAL_STRATEGIES = ("no", "steps", "epoch")


def suggest_policy_size(num_items: int, num_train_windows: int) -> dict[str, int]:
    """
    A heuristic size and schedule for the from-scratch policy, from the size of the log: the recipes' choices
    interpolated, not a tuned law. Use it as a starting point and let validation (`recommendation_eval_strategy`,
    `early_stopping_patience`) decide the epoch.

    | training windows | hidden | layers | heads / kv | epochs | recipe it comes from |
    |---|---|---|---|---|---|
    | < 20K | 64 | 2 | 2 / 1 | up to 10 | (`synthetic`: 32 hidden, 3 epochs) |
    | 20K to 300K | 128 | 2 | 4 / 2 | 2 (small logs: more) | `ml-100k` (97K windows) |
    | 300K to 3M | 256 | 4 | 4 / 2 | 2 | `ml-1m` (990K windows); `ml-1m/pipeline_cpu`: 128 x 2 on 300K windows, 1 epoch |
    | ≥ 3M | 512 | 6 | 8 / 2 | 1 | (none: an extrapolation) |

    Epochs: `ceil(150,000 / num_train_windows)` clipped to [1, 10] (2 at least below 3M windows), i.e. at least about
    150K sample passes, which is what `ml-100k` uses. A catalog of more than 20K items moves a log to at least the
    256-hidden row (more distinct SID combinations to tell apart).

    Args:
        num_items (`int`):
            Items in the catalog.
        num_train_windows (`int`):
            Rows of the training split (one next-item window each).

    Returns:
        `dict[str, int]`: `hidden_size`, `num_hidden_layers`, `num_attention_heads`, `num_key_value_heads` (fields of
        `adagrpo-trl sft`) and `num_train_epochs`.

    Example:

    ```python
    >>> from adagrpo_trl.sft import suggest_policy_size
    >>> suggest_policy_size(num_items=1682, num_train_windows=97171)
    {'hidden_size': 128, 'num_hidden_layers': 2, 'num_attention_heads': 4, 'num_key_value_heads': 2, 'num_train_epochs': 2}
    ```
    """
    for name, value in (("num_items", num_items), ("num_train_windows", num_train_windows)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"suggest_policy_size: {name} must be an integer >= 1, got {name}={value!r}.")
    rows = [  # (windows below, hidden, layers, heads, kv heads)
        (20_000, 64, 2, 2, 1),
        (300_000, 128, 2, 4, 2),
        (3_000_000, 256, 4, 4, 2),
        (math.inf, 512, 6, 8, 2),
    ]
    row = next(index for index, r in enumerate(rows) if num_train_windows < r[0])
    if num_items > 20_000:
        row = max(row, 2)
    _, hidden, layers, heads, kv_heads = rows[row]
    epochs = min(10, max(1, math.ceil(150_000 / num_train_windows)))
    if num_train_windows < 3_000_000:
        epochs = max(epochs, 2)
    return {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "num_train_epochs": epochs,
    }


def trie_allowed_mask(trie: PrefixTrie, labels: torch.Tensor, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """
    The catalog tokens allowed at each supervised position, given the ground-truth prefix before it.

    `labels` are next-token labels aligned with the positions that predict them (already shifted), `-100` outside the
    completions. Each run of supervised positions in a row is one completion (the SID tokens then EOS), walked from
    the trie's root: the first position allows the first-level codes, the next ones the children of the ground-truth
    prefix, a complete item only EOS (a trie built with `eos_token_id`). Positions whose ground-truth prefix is no
    prefix of an item (e.g. tokens after EOS) are left out.

    Args:
        trie ([`~adagrpo_trl.trie.PrefixTrie`]):
            The catalog's trie with EOS (`catalog.build_trie(catalog.token_ids(tokenizer), tokenizer.eos_token_id)`).
        labels (`torch.LongTensor` of shape `(batch, length)`):
            Shifted labels.
        vocab_size (`int`):
            Width of the mask.

    Returns:
        `tuple[torch.BoolTensor, torch.BoolTensor]`: `positions` of shape `(batch, length)`, the supervised positions
        the term applies to, and `allowed` of shape `(positions.sum(), vocab_size)`, their allowed tokens.
    """
    supervised = labels != -100
    flat_labels = labels[supervised]
    starts = supervised.clone()
    starts[:, 1:] &= ~supervised[:, :-1]
    starts = starts[supervised]
    trie = trie.to(labels.device)
    nodes = torch.zeros(flat_labels.numel(), dtype=torch.long, device=labels.device)
    # Depth of each position inside its completion; node of depth d = transition of depth d - 1 by its label.
    index = torch.arange(flat_labels.numel(), device=labels.device)
    segment_start = torch.cummax(torch.where(starts, index, torch.zeros_like(index)), dim=0).values
    depth = index - segment_start
    for level in range(1, int(depth.max()) + 1 if depth.numel() else 0):
        at = (depth == level).nonzero().squeeze(1)
        nodes[at] = trie.next_nodes(nodes[at - 1], flat_labels[at - 1])
    rows, tokens = trie.allowed(nodes)
    if tokens.numel() and int(tokens.max()) >= vocab_size:
        raise ValueError(f"The trie allows token id {int(tokens.max())}, but the model scores {vocab_size} tokens.")
    allowed = torch.zeros(flat_labels.numel(), vocab_size, dtype=torch.bool, device=labels.device)
    allowed[rows, tokens] = True
    keep = nodes >= 0
    positions = torch.zeros_like(supervised)
    positions[supervised] = keep
    return positions, allowed[keep]


def trie_unlikelihood(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """
    The trie unlikelihood term of each position: `-log(1 - q)` with `q` the probability the model puts on tokens that
    leave the catalog's trie, i.e. `logsumexp(logits) - logsumexp(logits[allowed])`, the negative log-probability of
    staying inside the catalog. Exactly `0` when no mass is outside (`-inf` logits there), positive otherwise; its
    gradient moves the outside mass onto the allowed tokens in proportion to their probabilities (the ground truth
    is one of them, so it never works against the NLL term).

    Args:
        logits (`torch.Tensor` of shape `(num_positions, vocab_size)`):
            Next-token logits.
        allowed (`torch.BoolTensor` of the same shape):
            The allowed tokens of each position ([`trie_allowed_mask`]); at least one per row.

    Returns:
        `torch.Tensor` of shape `(num_positions,)`.
    """
    logits = logits.float()
    return torch.logsumexp(logits, dim=-1) - torch.logsumexp(logits.masked_fill(~allowed, -torch.inf), dim=-1)


class SIDSFTTrainer(SFTTrainer):
    """
    [`~trl.SFTTrainer`] with an optional trie unlikelihood term against hallucinated semantic IDs. The only change is
    `compute_loss`: with `sid_unlikelihood_coef = c > 0`, the loss is TRL's completion NLL plus
    `c * mean_t -log(1 - q_t)` over the completion's positions, where `q_t` is the probability of the tokens that leave
    the catalog's prefix trie after the ground-truth prefix ([`trie_unlikelihood`]; normalised like the NLL, by the
    same token count). With `c = 0` (the default) the loss is exactly TRL's. Everything else is inherited unchanged.

    The term reuses the forward pass of the NLL (a hook keeps the backbone's last hidden states; the LM head is then
    applied to the supervised positions only), so it costs one small matrix product per step. It logs
    `sid/invalid_mass` (mean `q_t`) and `sid/unlikelihood`.

    Args:
        *args, **kwargs:
            Those of [`~trl.SFTTrainer`].
        catalog ([`~adagrpo_trl.ItemCatalog`], *optional*):
            The item catalog; required when `sid_unlikelihood_coef > 0`.
        sid_unlikelihood_coef (`float`, *optional*, defaults to `0.0`):
            Weight `c` of the term.

    Example:

    ```python
    trainer = SIDSFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
                            catalog=prepared.catalog, sid_unlikelihood_coef=1.0)
    trainer.train()
    ```
    """

    _tag_names = ["trl", "sft", "adagrpo-trl"]

    def __init__(self, *args, catalog: ItemCatalog | None = None, sid_unlikelihood_coef: float = 0.0, **kwargs):
        _check_coef(sid_unlikelihood_coef)
        if sid_unlikelihood_coef > 0 and catalog is None:
            raise ValueError(f"sid_unlikelihood_coef={sid_unlikelihood_coef} needs the item catalog (catalog=...).")
        super().__init__(*args, **kwargs)
        self.sid_unlikelihood_coef = float(sid_unlikelihood_coef)
        self.sid_trie = None
        if self.sid_unlikelihood_coef > 0:
            if self.args.loss_type != "nll" or self.args.label_smoothing_factor > 0:
                raise ValueError(
                    f"sid_unlikelihood_coef={sid_unlikelihood_coef} adds to the plain NLL; got loss_type="
                    f"{self.args.loss_type!r}, label_smoothing_factor={self.args.label_smoothing_factor}."
                )
            tokenizer = self.processing_class
            self.sid_trie = catalog.build_trie(catalog.token_ids(tokenizer), tokenizer.eos_token_id)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.sid_unlikelihood_coef == 0:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if "shift_labels" in inputs:
            raise ValueError("sid_unlikelihood_coef > 0 does not support context/sequence parallelism (shift_labels).")
        policy = self.accelerator.unwrap_model(model)
        policy = policy.get_base_model() if is_peft_model(policy) else policy
        captured = {}

        def keep_hidden_states(module, args, output):
            captured["hidden"] = output.last_hidden_state

        handle = policy.base_model.register_forward_hook(keep_hidden_states)
        try:
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            handle.remove()
        loss = result[0] if return_outputs else result

        labels = inputs["labels"][:, 1:]
        hidden = captured["hidden"][:, :-1]
        lm_head = policy.get_output_embeddings()
        positions, allowed = trie_allowed_mask(self.sid_trie, labels, lm_head.out_features)
        logits = lm_head(hidden[positions.to(hidden.device)].to(lm_head.weight.device))
        terms = trie_unlikelihood(logits, allowed.to(logits.device))
        num_tokens = (labels != -100).sum() if num_items_in_batch is None else num_items_in_batch
        term = terms.sum() / torch.as_tensor(num_tokens).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            term = term * (self.accelerator.num_processes // self.get_tp_size())
        loss = loss + self.sid_unlikelihood_coef * term.to(loss.dtype)

        mode = "train" if self.model.training else "eval"
        with torch.no_grad():
            count = self.accelerator.gather_for_metrics(torch.as_tensor(terms.numel(), device=terms.device)).sum()
            sums = self.accelerator.gather_for_metrics(
                torch.stack([terms.detach().sum(), (-terms.detach()).expm1().neg().sum()])[None]
            ).sum(0)
        if count > 0:
            self._metrics[mode]["sid/unlikelihood"].append((sums[0] / count).item())
            self._metrics[mode]["sid/invalid_mass"].append((sums[1] / count).item())
        return (loss, result[1]) if return_outputs else loss


def _check_coef(coef: float) -> None:
    if isinstance(coef, bool) or not isinstance(coef, (int, float)) or not math.isfinite(coef) or coef < 0:
        raise ValueError(f"sid_unlikelihood_coef must be a finite number >= 0, got sid_unlikelihood_coef={coef!r}.")


def train_sft(
    model: Any,
    tokenizer: Any,
    train_dataset: Dataset,
    args: SFTConfig,
    eval_dataset: Dataset | None = None,
    peft_config: Any = None,
    callbacks: list | None = None,
    catalog: ItemCatalog | None = None,
    recommendation_eval_dataset: Any = None,
    recommendation_eval_strategy: str = "no",
    recommendation_eval_steps: int | None = None,
    recommendation_eval_samples: int | None = None,
    early_stopping_patience: int | None = None,
    keep_best_checkpoint: bool = True,
    sid_unlikelihood_coef: float = 0.0,
) -> SFTTrainer:
    """
    Trains the next-item policy on prompt-completion rows with the loss on the completion only (the ground-truth SID
    and EOS), then saves the model and tokenizer to `args.output_dir` for [`AdaGRPOTrainer`] to load (with PEFT, the
    adapters are merged first, so the checkpoint is a plain model).

    Only the `prompt` and `completion` columns are kept: the context columns (`history`, `user_id`, ...) are for reward
    functions, not for supervised training.

    Checkpoint selection (`recommendation_eval_strategy` `"steps"` or `"epoch"`): a
    [`~adagrpo_trl.callbacks.RecommendationEvalCallback`] evaluates HR@10 and the hallucination rate by unconstrained
    beam search (the evaluation's own code, 20 beams) on the first `recommendation_eval_samples` rows of
    `recommendation_eval_dataset`; a checkpoint is saved at every evaluation (when `args.save_strategy` is `"no"`, it is
    set to the evaluation schedule with `save_total_limit=1`, which keeps the best and the latest checkpoint);
    training stops after `early_stopping_patience` evaluations without improvement; with `keep_best_checkpoint`, the
    best-by-validation weights are loaded before the final save, so the saved policy is the selected one. The summary
    (selected step and its metrics, every evaluation) is written to `args.output_dir/sft_selection.json`. Progress:
    one log line per evaluation (step out of total, HR@10, best so far, time left), also with `disable_tqdm=True`.

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
            Validation rows (same columns) for TRL's loss evaluation.
        peft_config ([`~peft.PeftConfig`], *optional*):
            For LoRA on a pretrained backbone, see [`~adagrpo_trl.tokenization.sid_lora_config`].
        callbacks (`list`, *optional*):
            Trainer callbacks.
        catalog ([`~adagrpo_trl.ItemCatalog`], *optional*):
            The item catalog; required for checkpoint selection and the unlikelihood term.
        recommendation_eval_dataset ([`~datasets.Dataset`], *optional*):
            Validation rows with `prompt` and `target_item`; required for checkpoint selection.
        recommendation_eval_strategy (`str`, *optional*, defaults to `"no"`):
            `"no"`, `"steps"` (every `recommendation_eval_steps` steps) or `"epoch"`.
        recommendation_eval_steps (`int`, *optional*):
            Steps between evaluations with `"steps"`.
        recommendation_eval_samples (`int`, *optional*):
            Validation users per evaluation (default: all).
        early_stopping_patience (`int`, *optional*):
            Stop after this many evaluations without improvement of HR@10; `None`: train every epoch.
        keep_best_checkpoint (`bool`, *optional*, defaults to `True`):
            Load the best-by-validation checkpoint at the end (else the last weights are saved).
        sid_unlikelihood_coef (`float`, *optional*, defaults to `0.0`):
            Weight of the trie unlikelihood term ([`SIDSFTTrainer`]); `0`: plain SFT.

    Returns:
        The trained [`SIDSFTTrainer`] (a [`~trl.SFTTrainer`]).

    Example:

    ```python
    >>> from adagrpo_trl.sft import build_policy, train_sft
    >>> model, tokenizer, _ = build_policy(prepared.catalog, prepared.tokenizer, num_hidden_layers=2)
    >>> train_sft(model, tokenizer, prepared.datasets["train"], SFTConfig("runs/sft", num_train_epochs=4),
    ...           catalog=prepared.catalog, recommendation_eval_dataset=prepared.datasets["validation"],
    ...           recommendation_eval_strategy="epoch", recommendation_eval_samples=500, early_stopping_patience=1)
    ```
    """
    for name, split in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
        if split is None:
            continue
        missing = {"prompt", "completion"} - set(split.column_names)
        if missing:
            raise ValueError(f"{name} lacks column(s) {sorted(missing)}; got {split.column_names}.")
    selection = _check_selection(
        catalog,
        recommendation_eval_dataset,
        recommendation_eval_strategy,
        recommendation_eval_steps,
        recommendation_eval_samples,
        early_stopping_patience,
    )
    _check_coef(sid_unlikelihood_coef)
    args.completion_only_loss = True

    def keep_prompt_completion(split: Dataset | None) -> Dataset | None:
        if split is None:
            return None
        return split.remove_columns([c for c in split.column_names if c not in ("prompt", "completion")])

    callback = None
    if selection:
        if str(getattr(args.save_strategy, "value", args.save_strategy)) == "no":
            args.save_strategy = SaveStrategy(recommendation_eval_strategy)
            args.save_steps = recommendation_eval_steps or args.save_steps
            if args.save_total_limit is None:
                args.save_total_limit = 1
        callback = RecommendationEvalCallback(
            recommendation_eval_dataset,
            catalog,
            tokenizer,
            eval_steps=recommendation_eval_steps if recommendation_eval_strategy == "steps" else None,
            ks=(1, 5, 10, 20),
            num_beams=20,
            max_samples=recommendation_eval_samples,
            constrained=False,
            batch_size=32,
            early_stopping_patience=early_stopping_patience,
        )
        callbacks = [*(callbacks or []), callback]

    trainer = SIDSFTTrainer(
        model=model,
        args=args,
        train_dataset=keep_prompt_completion(train_dataset),
        eval_dataset=keep_prompt_completion(eval_dataset),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
        catalog=catalog,
        sid_unlikelihood_coef=sid_unlikelihood_coef,
    )
    if callback is not None:
        callback.set_trainer(trainer)
    trainer.train()
    if callback is not None:
        _select_checkpoint(trainer, callback, keep_best_checkpoint)
    if peft_config is not None:
        # Save a plain model (adapters merged) so that AdaGRPO and evaluation load it like any checkpoint.
        trainer.model = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
    trainer.save_model(args.output_dir)
    if trainer.accelerator.is_main_process:
        tokenizer.save_pretrained(args.output_dir)
    return trainer


def _check_selection(
    catalog: ItemCatalog | None,
    dataset: Any,
    strategy: str,
    steps: int | None,
    samples: int | None,
    patience: int | None,
) -> bool:
    """Validates the checkpoint-selection options (errors name the value); `True` when selection is on."""
    if strategy not in RECOMMENDATION_EVAL_STRATEGIES:
        raise ValueError(
            f"recommendation_eval_strategy must be one of {list(RECOMMENDATION_EVAL_STRATEGIES)}, got {strategy!r}."
        )
    for name, value in (
        ("recommendation_eval_steps", steps),
        ("recommendation_eval_samples", samples),
        ("early_stopping_patience", patience),
    ):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be an integer >= 1 or None, got {name}={value!r}.")
    if strategy == "no":
        if patience is not None:
            raise ValueError(
                f"early_stopping_patience={patience} needs validation evaluations; set recommendation_eval_strategy "
                "to 'steps' or 'epoch'."
            )
        return False
    if strategy == "steps" and steps is None:
        raise ValueError("recommendation_eval_strategy='steps' needs recommendation_eval_steps, got None.")
    if catalog is None or dataset is None:
        raise ValueError(
            f"recommendation_eval_strategy={strategy!r} needs the catalog and the validation rows "
            "(catalog=..., recommendation_eval_dataset=...)."
        )
    return True


def _select_checkpoint(trainer: SFTTrainer, callback: RecommendationEvalCallback, keep_best: bool) -> None:
    """Loads the best saved checkpoint if it beats the final weights, and writes `sft_selection.json`."""
    metric = callback.metric_for_best_model
    selected_step, loaded = callback.final_step, None
    best_step = callback.best_checkpoint_step
    if (
        keep_best
        and best_step is not None
        and best_step != callback.final_step
        and callback.best_checkpoint_metrics[metric] > callback.final_metrics[metric]
    ):
        trainer.state.best_model_checkpoint = callback.best_checkpoint
        trainer._load_best_model()  # the loader of `load_best_model_at_end` (DeepSpeed, FSDP and PEFT aware)
        selected_step, loaded = best_step, callback.best_checkpoint
    entry = next(e for e in callback.history if e["step"] == selected_step)
    summary = {
        "metric": metric,
        "selected_step": selected_step,
        "selected_metrics": {k: v for k, v in entry.items() if k != "step"},
        "loaded_checkpoint": loaded,
        "keep_best_checkpoint": keep_best,
        "final_step": callback.final_step,
        "final_metrics": callback.final_metrics,
        "stopped_early": callback.stopped_early,
        "early_stopping_patience": callback.early_stopping_patience,
        "num_eval_samples": len(callback.prompts),
        "max_steps": trainer.state.max_steps,
        "history": callback.history,
    }
    logger.info(
        f"SFT selection: step {selected_step} ({metric}={summary['selected_metrics'][metric]:.4f}); final step "
        f"{callback.final_step} ({metric}={callback.final_metrics[metric]:.4f})"
        + (", stopped early" if callback.stopped_early else "")
        + "."
    )
    if trainer.accelerator.is_main_process:
        os.makedirs(trainer.args.output_dir, exist_ok=True)
        atomic_write_json(os.path.join(trainer.args.output_dir, SELECTION_FILE), summary, indent=2)


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
