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
"""Trainer callbacks: recommendation metrics on the validation split during training, and the best checkpoint."""

import contextlib
import logging
import math
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from accelerate import PartialState
from accelerate.utils import gather_object
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .catalog import ItemCatalog
from .evaluation import DEFAULT_KS, hallucination_rate, hits_at_k, ndcg_at_k, prompts_and_targets, recommend
from .utils import atomic_write_json


logger = logging.getLogger(__name__)

BEST_CHECKPOINT_FILE = "best_checkpoint.json"


class RecommendationEvalCallback(TrainerCallback):
    """
    A [`~transformers.TrainerCallback`] that evaluates the policy as a recommender on a validation split during
    training (HR@K, NDCG@K and hallucination by beam search, as [`~adagrpo_trl.evaluation.evaluate_recommendations`]),
    logs the metrics (`eval_hr@10`, `eval_ndcg@10`, `eval_hallucination`, `eval_constrained/hr@10`, ...) and keeps
    track of the best checkpoint, so that both the "best intermediate" and the "final" model can be reported.

    When it evaluates: every `eval_steps` optimizer steps, at every step at which the trainer is about to save a
    checkpoint, and at the end of training (each step at most once). With `save_strategy="steps"`, `save_steps` must be
    a multiple of `eval_steps` (checked when training starts), so every checkpoint is evaluated at no extra cost. With
    `eval_steps=None` it evaluates only at checkpoints (e.g. every epoch with `save_strategy="epoch"`) and at the end.
    Every evaluation also logs one line (logger `adagrpo_trl.callbacks`, level INFO): the step out of the total, the
    metric, the best so far, elapsed time and an estimate of the time left, which is the progress report of runs with
    `disable_tqdm=True`.

    Early stopping: with `early_stopping_patience=N`, training stops (`control.should_training_stop`) after `N`
    consecutive evaluations without a strict improvement of `metric_for_best_model` over the best evaluation so far;
    `stopped_early` records that it did.

    Logging: the metrics go through `transformers.Trainer.log` of the trainer given as `trainer` (or with
    [`set_trainer`]), so they land in `trainer.state.log_history` and in every `report_to` backend at the current
    step. The base `Trainer.log` is called on purpose: TRL's trainers override `log` to flush their buffered training
    metrics, which must stay with the regular logging steps. Without a trainer the metrics are only appended to
    `state.log_history`.

    Best checkpoint: the callback owns the trainer state's `best_metric`, `best_global_step` and
    `best_model_checkpoint` (over the evaluated checkpoints; `save_total_limit` rotation then never deletes the best
    one) and writes `best_checkpoint.json` into `output_dir` after every save and at the end of training. Do not also
    set `metric_for_best_model` / `load_best_model_at_end` in the training arguments (rejected when training starts):
    those rely on `Trainer.evaluate`, which does not compute these metrics. To continue from the best checkpoint, load
    `callback.best_checkpoint`.

    Several processes: every process evaluates its shard of the rows (padded to equal size, so collective operations
    such as DeepSpeed ZeRO-3 parameter gathering stay in step) and the ranked lists are gathered, so every process
    computes and logs identical metrics and nothing deadlocks. With a trainer, generation uses TRL's
    `unwrap_model_for_generation` (ZeRO-3 parameters gathered when `ds3_gather_for_generation` allows it).

    Attributes:
        history (`list[dict]`): One entry per evaluation: `{"step": ..., "eval_hr@10": ..., ...}`.
        best_step (`int` or `None`), best_metrics (`dict` or `None`): The best evaluation so far (any step).
        best_checkpoint (`str` or `None`), best_checkpoint_step (`int` or `None`), best_checkpoint_metrics
        (`dict` or `None`): The best *saved* checkpoint, its step and metrics.
        final_step (`int` or `None`), final_metrics (`dict` or `None`): The last evaluation (end of training).

    Example:

    ```python
    from adagrpo_trl import AdaGRPOConfig, AdaGRPOTrainer
    from adagrpo_trl.callbacks import RecommendationEvalCallback

    trainer = AdaGRPOTrainer(model=..., reward_funcs=..., args=AdaGRPOConfig(..., save_steps=200), ...)
    callback = RecommendationEvalCallback(prepared.datasets["validation"], catalog, tokenizer, eval_steps=100)
    callback.set_trainer(trainer)  # or RecommendationEvalCallback(..., trainer=trainer)
    trainer.add_callback(callback)
    trainer.train()
    print(callback.best_step, callback.best_metrics["eval_hr@10"], callback.final_metrics["eval_hr@10"])
    ```

    Args:
        eval_dataset ([`~datasets.Dataset`] or `Sequence[dict]`):
            Validation rows with `prompt_column` and `target_column` (the ground-truth item id).
        catalog ([`~adagrpo_trl.ItemCatalog`]):
            The item catalog.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`], *optional*):
            The policy's tokenizer; defaults to the trainer's `processing_class`.
        eval_steps (`int` or `None`, *optional*, defaults to `100`):
            Evaluate every `eval_steps` optimizer steps; `None`: only at checkpoints and at the end of training.
        ks (`Sequence[int]`, *optional*, defaults to `(1, 5, 10, 20)`):
            Cut-offs of HR and NDCG; each ≤ `num_beams`.
        num_beams (`int`, *optional*, defaults to `20`):
            Beam width.
        max_samples (`int`, *optional*):
            Evaluate on the first `max_samples` rows only (the same rows every time).
        metric_prefix (`str`, *optional*, defaults to `"eval_"`):
            Prefix of the logged metric names.
        metric_for_best_model (`str`, *optional*, defaults to `"hr@10"`):
            The metric that picks the best checkpoint, with or without `metric_prefix`.
        greater_is_better (`bool`, *optional*):
            Defaults to `False` for `hallucination` and `True` otherwise.
        hallucination_k (`int`, *optional*, defaults to `10`):
            Cut-off of the hallucination rate.
        constrained (`bool`, *optional*, defaults to `True`):
            Also log trie-constrained metrics (`eval_constrained/hr@K`, ...); needs `num_beams` ≤ catalog size.
        batch_size (`int`, *optional*, defaults to `16`):
            Prompts per generate call.
        prompt_column, target_column (`str`, *optional*):
            Column names.
        trainer ([`~transformers.Trainer`], *optional*):
            The trainer, for logging to `report_to` backends and for distributed generation. Can be set later with
            [`set_trainer`].
        show_progress (`bool`, *optional*, defaults to `False`):
            Show beam-search progress bars (main process).
        early_stopping_patience (`int`, *optional*):
            Stop training after this many consecutive evaluations without improvement; `None`: never stop early.
    """

    def __init__(
        self,
        eval_dataset: Any,
        catalog: ItemCatalog,
        tokenizer: Any = None,
        eval_steps: int = 100,
        ks: Sequence[int] = DEFAULT_KS,
        num_beams: int = 20,
        max_samples: int | None = None,
        metric_prefix: str = "eval_",
        metric_for_best_model: str = "hr@10",
        greater_is_better: bool | None = None,
        hallucination_k: int = 10,
        constrained: bool = True,
        batch_size: int = 16,
        prompt_column: str = "prompt",
        target_column: str = "target_item",
        trainer: Trainer | None = None,
        show_progress: bool = False,
        early_stopping_patience: int | None = None,
    ):
        if eval_steps is not None and (
            isinstance(eval_steps, bool) or not isinstance(eval_steps, int) or eval_steps < 1
        ):
            raise ValueError(f"eval_steps must be an integer >= 1 or None, got eval_steps={eval_steps!r}.")
        if early_stopping_patience is not None and (
            isinstance(early_stopping_patience, bool)
            or not isinstance(early_stopping_patience, int)
            or early_stopping_patience < 1
        ):
            raise ValueError(
                "early_stopping_patience must be an integer >= 1 or None, got "
                f"early_stopping_patience={early_stopping_patience!r}."
            )
        ks = tuple(int(k) for k in ks)
        if not ks or min(ks) < 1 or max(ks) > num_beams or not 1 <= hallucination_k <= num_beams:
            raise ValueError(
                f"Cut-offs ks={list(ks)} and hallucination_k={hallucination_k} must be in [1, num_beams={num_beams}]."
            )
        if constrained and num_beams > len(catalog):
            raise ValueError(
                f"Constrained beam search needs num_beams <= catalog size, got {num_beams} > {len(catalog)}; "
                "lower num_beams or set constrained=False."
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.prompts, self.targets = prompts_and_targets(
            eval_dataset, catalog, prompt_column, target_column, max_samples
        )
        self.catalog = catalog
        self.tokenizer = tokenizer
        self.eval_steps = eval_steps
        self.ks = ks
        self.num_beams = num_beams
        self.metric_prefix = metric_prefix
        self.hallucination_k = hallucination_k
        self.constrained = constrained
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.trainer = trainer
        self.early_stopping_patience = early_stopping_patience
        self.stopped_early = False
        self._start: tuple[float, int] | None = None

        names = [
            f"{p}{m}@{k}"
            for p in ("",) + (("constrained/",) if constrained else ())
            for m in ("hr", "ndcg")
            for k in ks
        ]
        self.metric_names = [metric_prefix + name for name in names + ["hallucination"]]
        metric = metric_for_best_model
        if not metric.startswith(metric_prefix):
            metric = metric_prefix + metric
        if metric not in self.metric_names:
            raise ValueError(
                f"metric_for_best_model={metric_for_best_model!r} is not one of the logged metrics {self.metric_names}."
            )
        self.metric_for_best_model = metric
        self.greater_is_better = (
            (not metric.endswith("hallucination")) if greater_is_better is None else greater_is_better
        )

        self.history: list[dict[str, Any]] = []
        self.best_step: int | None = None
        self.best_metrics: dict[str, float] | None = None
        self.checkpoints: dict[int, str] = {}
        self.best_checkpoint: str | None = None
        self.best_checkpoint_step: int | None = None
        self.best_checkpoint_metrics: dict[str, float] | None = None
        self._warned_no_trainer = False

    def set_trainer(self, trainer: Trainer) -> None:
        """Attaches the trainer whose `log` reaches the `report_to` backends and whose model is evaluated."""
        self.trainer = trainer

    @property
    def final_step(self) -> int | None:
        """Step of the last evaluation."""
        return self.history[-1]["step"] if self.history else None

    @property
    def final_metrics(self) -> dict[str, float] | None:
        """Metrics of the last evaluation (after training: the final model)."""
        if not self.history:
            return None
        return {key: value for key, value in self.history[-1].items() if key != "step"}

    # -- trainer events ------------------------------------------------------------------------------------------

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if (
            self.eval_steps is not None
            and _strategy(args.save_strategy) == "steps"
            and state.save_steps % self.eval_steps != 0
        ):
            raise ValueError(
                f"RecommendationEvalCallback needs save_steps ({state.save_steps}) to be a multiple of its eval_steps "
                f"({self.eval_steps}), so that every checkpoint has validation metrics."
            )
        if _strategy(args.save_strategy) == "best":
            raise ValueError(
                "RecommendationEvalCallback does not support save_strategy='best' (it relies on Trainer.evaluate); "
                "use save_strategy='steps' and the callback's best_checkpoint."
            )
        if args.metric_for_best_model is not None or args.load_best_model_at_end:
            raise ValueError(
                "RecommendationEvalCallback keeps track of the best checkpoint itself (state.best_metric, "
                f"best_model_checkpoint and {BEST_CHECKPOINT_FILE}); unset metric_for_best_model "
                f"({args.metric_for_best_model!r}) and load_best_model_at_end ({args.load_best_model_at_end}) in the "
                "training arguments, and load callback.best_checkpoint after training instead."
            )
        if not self.history:
            self._restore_from_log_history(args, state)
        self._start = (time.monotonic(), state.global_step)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        step = state.global_step
        periodic = self.eval_steps is not None and step % self.eval_steps == 0
        if periodic or control.should_training_stop or control.should_save:
            self._maybe_evaluate(args, state, control, kwargs)
        if control.should_save:
            self._prepare_save(args, state)

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if control.should_save:  # an epoch-end checkpoint
            self._maybe_evaluate(args, state, control, kwargs)
            self._prepare_save(args, state)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        entry = self._entry(state.global_step)
        if entry is not None:
            path = _checkpoint_dir(args, state.global_step)
            self.checkpoints[state.global_step] = path
            if self.best_checkpoint_step is None or self._better(
                entry[self.metric_for_best_model], self.best_checkpoint_metrics[self.metric_for_best_model]
            ):
                self.best_checkpoint = path
                self.best_checkpoint_step = state.global_step
                self.best_checkpoint_metrics = _metrics_of(entry)
            self._sync_state(state)
        self._write_summary(args, state)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._maybe_evaluate(args, state, control, kwargs)
        self._write_summary(args, state)

    # -- evaluation ----------------------------------------------------------------------------------------------

    def _log(self, logs: dict[str, float], control: TrainerControl) -> None:
        """
        `transformers.Trainer.log` (not the trainer's override, which would flush TRL's buffered training metrics),
        keeping the control flags: the callback handler's `on_log` clears `should_log`, which would drop the trainer's
        own log of this step.
        """
        flags = (control.should_log, control.should_evaluate, control.should_save)
        Trainer.log(self.trainer, dict(logs))
        for target in (control, self.trainer.control):  # the handler may return another control object
            target.should_log, target.should_evaluate, target.should_save = flags

    def _maybe_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, kwargs: dict[str, Any]
    ) -> None:
        if self._entry(state.global_step) is not None:
            return
        metrics = self.evaluate(kwargs.get("model"), kwargs.get("processing_class"), args)
        logs = {self.metric_prefix + name: value for name, value in metrics.items()}
        self.history.append({"step": state.global_step, **logs})
        if self.best_step is None or self._better(
            logs[self.metric_for_best_model], self.best_metrics[self.metric_for_best_model]
        ):
            self.best_step, self.best_metrics = state.global_step, dict(logs)
        if self.trainer is not None:
            self._log(logs, control)
        else:
            if not self._warned_no_trainer:
                logger.warning(
                    "RecommendationEvalCallback has no trainer (pass trainer=... or call set_trainer): metrics go to "
                    "state.log_history only, not to the report_to backends."
                )
                self._warned_no_trainer = True
            state.log_history.append({**logs, "step": state.global_step})
        self._log_progress(state)
        if self.early_stopping_patience is not None and self._evaluations_since_best() >= self.early_stopping_patience:
            self.stopped_early = True
            for target in (control,) + ((self.trainer.control,) if self.trainer is not None else ()):
                target.should_training_stop = True

    def _evaluations_since_best(self) -> int:
        steps = [entry["step"] for entry in self.history]
        return len(steps) - 1 - steps.index(self.best_step)

    def _log_progress(self, state: TrainerState) -> None:
        """One INFO line per evaluation: the progress report of runs without a progress bar."""
        if not state.is_world_process_zero:
            return
        entry = self.history[-1]
        step, total = state.global_step, state.max_steps
        timing = ""
        if self._start is not None and step > self._start[1]:
            elapsed = time.monotonic() - self._start[0]
            left = elapsed / (step - self._start[1]) * max(total - step, 0)
            timing = f", {elapsed / 60:.1f} min elapsed, about {left / 60:.1f} min left at most"
        patience = ""
        if self.early_stopping_patience is not None:
            patience = f", no improvement for {self._evaluations_since_best()}/{self.early_stopping_patience}"
        name = self.metric_for_best_model
        hallucination = entry.get(self.metric_prefix + "hallucination")
        logger.info(
            f"Validation at step {step}/{total} (epoch {state.epoch or 0:.2f}): {name}={entry[name]:.4f}"
            + (f", {self.metric_prefix}hallucination={hallucination:.4f}" if hallucination is not None else "")
            + f"; best {self.best_metrics[name]:.4f} at step {self.best_step}{patience}{timing}."
        )

    def evaluate(self, model: Any = None, tokenizer: Any = None, args: TrainingArguments | None = None) -> dict:
        """
        Runs the evaluation now and returns the metrics without prefix (`hr@10`, `hallucination`, ...). Must be called
        on every process when several run.

        Args:
            model ([`~transformers.PreTrainedModel`], *optional*):
                The policy; defaults to the trainer's model.
            tokenizer ([`~transformers.PreTrainedTokenizerBase`], *optional*):
                Used when the callback has none; defaults to the trainer's `processing_class`.
            args ([`~transformers.TrainingArguments`], *optional*):
                Training arguments (ZeRO-3 gathering and gradient-checkpointing settings); defaults to the trainer's.
        """
        tokenizer = self.tokenizer or tokenizer
        if tokenizer is None and self.trainer is not None:
            tokenizer = self.trainer.processing_class
        if tokenizer is None:
            raise ValueError("RecommendationEvalCallback needs a tokenizer (pass tokenizer=... or a trainer).")
        args = args if args is not None else getattr(self.trainer, "args", None)
        if self.trainer is not None:
            from trl.models import unwrap_model_for_generation

            context = unwrap_model_for_generation(
                self.trainer.model_wrapped,
                self.trainer.accelerator,
                gather_deepspeed3_params=getattr(args, "ds3_gather_for_generation", True),
                gradient_checkpointing_kwargs=getattr(args, "gradient_checkpointing_kwargs", None),
            )
        elif model is not None:
            context = contextlib.nullcontext(model)
        else:
            raise ValueError("RecommendationEvalCallback.evaluate needs a model or a trainer.")

        process = PartialState()
        num_processes, rank = process.num_processes, process.process_index
        shard = list(range(rank, len(self.prompts), num_processes))
        shard_size = math.ceil(len(self.prompts) / num_processes)
        indices = shard + [-1] * (shard_size - len(shard))  # equal work on every process; padding dropped below
        prompts = [self.prompts[i] if i >= 0 else self.prompts[0] for i in indices]
        show_progress = self.show_progress and process.is_main_process

        metrics: dict[str, float] = {}
        modes = [("", False)] + ([("constrained/", True)] if self.constrained else [])
        with context as generation_model:
            for prefix, constrained in modes:
                ranked = recommend(
                    generation_model,
                    tokenizer,
                    prompts,
                    self.catalog,
                    num_beams=self.num_beams,
                    constrained=constrained,
                    batch_size=self.batch_size,
                    show_progress=show_progress,
                )
                pairs = gather_object([(i, items) for i, items in zip(indices, ranked, strict=True) if i >= 0])
                ranked = [items for _, items in sorted(pairs, key=lambda pair: pair[0])]
                for k in self.ks:
                    metrics[f"{prefix}hr@{k}"] = float(np.mean(hits_at_k(ranked, self.targets, k)))
                    metrics[f"{prefix}ndcg@{k}"] = float(np.mean(ndcg_at_k(ranked, self.targets, k)))
                if not constrained:
                    metrics["hallucination"] = hallucination_rate(ranked, self.hallucination_k)
        return metrics

    # -- best checkpoint -----------------------------------------------------------------------------------------

    def _better(self, value: float, reference: float) -> bool:
        return value > reference if self.greater_is_better else value < reference

    def _entry(self, step: int) -> dict[str, Any] | None:
        return next((entry for entry in reversed(self.history) if entry["step"] == step), None)

    def _prepare_save(self, args: TrainingArguments, state: TrainerState) -> None:
        """
        Before the trainer writes checkpoint-<step>: if it is the best evaluated one, record it in the state now, so
        that the checkpoint's `trainer_state.json` and the `save_total_limit` rotation already know it.
        """
        entry = self._entry(state.global_step)
        if entry is None:
            return
        value = entry[self.metric_for_best_model]
        if self.best_checkpoint_step is None or self._better(
            value, self.best_checkpoint_metrics[self.metric_for_best_model]
        ):
            state.best_metric = value
            state.best_global_step = state.global_step
            state.best_model_checkpoint = _checkpoint_dir(args, state.global_step)

    def _sync_state(self, state: TrainerState) -> None:
        if self.best_checkpoint_step is not None:
            state.best_metric = self.best_checkpoint_metrics[self.metric_for_best_model]
            state.best_global_step = self.best_checkpoint_step
            state.best_model_checkpoint = self.best_checkpoint

    def summary(self) -> dict[str, Any]:
        """The content of `best_checkpoint.json`: the metric, the best evaluation, the best checkpoint, the final
        evaluation and the history."""
        return {
            "metric_for_best_model": self.metric_for_best_model,
            "greater_is_better": self.greater_is_better,
            "best_checkpoint": self.best_checkpoint,
            "best_checkpoint_step": self.best_checkpoint_step,
            "best_checkpoint_metrics": self.best_checkpoint_metrics,
            "best_step": self.best_step,
            "best_metrics": self.best_metrics,
            "final_step": self.final_step,
            "final_metrics": self.final_metrics,
            "early_stopping_patience": self.early_stopping_patience,
            "stopped_early": self.stopped_early,
            "history": self.history,
        }

    def _write_summary(self, args: TrainingArguments, state: TrainerState) -> None:
        if not state.is_world_process_zero or not self.history:
            return
        atomic_write_json(os.path.join(args.output_dir, BEST_CHECKPOINT_FILE), self.summary(), indent=2)

    def _restore_from_log_history(self, args: TrainingArguments, state: TrainerState) -> None:
        """On resume: rebuild the history and the evaluated checkpoints from the restored `state.log_history`."""
        for record in state.log_history:
            if self.metric_for_best_model not in record or "step" not in record:
                continue
            step = record["step"]
            logs = {name: record[name] for name in self.metric_names if name in record}
            self.history.append({"step": step, **logs})
            if self.best_step is None or self._better(
                logs[self.metric_for_best_model], self.best_metrics[self.metric_for_best_model]
            ):
                self.best_step, self.best_metrics = step, dict(logs)
            path = _checkpoint_dir(args, step)
            if os.path.isdir(path):
                self.checkpoints[step] = path
                if self.best_checkpoint_step is None or self._better(
                    logs[self.metric_for_best_model], self.best_checkpoint_metrics[self.metric_for_best_model]
                ):
                    self.best_checkpoint, self.best_checkpoint_step = path, step
                    self.best_checkpoint_metrics = dict(logs)


def _strategy(value: Any) -> str:
    return str(getattr(value, "value", value))


def _checkpoint_dir(args: TrainingArguments, step: int) -> str:
    return os.path.join(args.output_dir, f"{PREFIX_CHECKPOINT_DIR}-{step}")


def _metrics_of(entry: dict[str, Any]) -> dict[str, float]:
    return {key: value for key, value in entry.items() if key != "step"}
