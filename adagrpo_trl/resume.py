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
Exact resumption for [`~trl.GRPOTrainer`]: a run resumed from any checkpoint continues step for step as the
uninterrupted one. Not specific to AdaGRPO; the trainer mixes it in (`docs/method.md#guarantees`).
"""

import os

import torch
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import send_to_device
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl.trainer.utils import RepeatSampler


logger = get_logger(__name__)


def generation_buffer_file(accelerator: Accelerator) -> str:
    """Name of a process's saved generation buffer inside a checkpoint folder."""
    if accelerator.num_processes == 1:
        return "generation_buffer.pt"
    return f"generation_buffer_{accelerator.process_index}.pt"


class ResumableRepeatSampler(RepeatSampler):
    """
    TRL's `RepeatSampler` with `set_epoch`, which the Trainer calls before every epoch. The order of epoch `e` is the
    `(e + 1)`-th permutation drawn from `seed`, exactly as in an uninterrupted run of TRL's sampler (which draws one
    permutation per epoch from one generator), also when a run resumed from a checkpoint starts at epoch `e` with a
    fresh sampler (TRL's would replay epoch 0's order).
    """

    def set_epoch(self, epoch: int) -> None:
        if not self.shuffle or self.seed is None:
            return
        self.generator.manual_seed(self.seed)
        for _ in range(epoch):
            torch.randperm(self.num_samples, generator=self.generator)


class ExactResumeMixin:
    """
    Mixin for [`~trl.GRPOTrainer`] subclasses (put it before `GRPOTrainer` in the bases). Overrides three seams of TRL's
    trainer so that resuming is exact:

    - `_get_train_sampler`: TRL's `RepeatSampler` becomes a [`ResumableRepeatSampler`], whose `set_epoch` restores an
      epoch's data order;
    - `_save_checkpoint`: a checkpoint taken in the middle of a generation batch (`steps_per_generation` or
      `num_iterations` > 1) also saves each process's buffered rollouts and step counter, before the parent's files
      (so a checkpoint whose `trainer_state.json` exists is complete);
    - `_load_optimizer_and_scheduler`: restores them (or warns that the rollouts will be generated again).

    With the model, optimizer and RNG states that the Trainer restores, a resumed run continues step for step as the
    uninterrupted one.
    """

    def _get_train_sampler(self, dataset=None):
        sampler = super()._get_train_sampler(dataset)
        if type(sampler) is not RepeatSampler:
            return sampler
        return ResumableRepeatSampler(
            data_source=sampler.data_source,
            mini_repeat_count=sampler.mini_repeat_count,
            batch_size=sampler.batch_size,
            repeat_count=sampler.repeat_count,
            shuffle=sampler.shuffle,
            seed=sampler.seed,
        )

    def _save_checkpoint(self, model, trial):
        # Written before the parent's files, so that a checkpoint whose trainer_state.json exists (written last) is
        # complete. Every process saves its own buffer, like its RNG state.
        if self._step % (self.args.steps_per_generation * self.num_iterations) != 0 and self._buffered_inputs:
            checkpoint = os.path.join(
                self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            )
            os.makedirs(checkpoint, exist_ok=True)
            state = {"step": self._step, "buffered_inputs": self._buffered_inputs}
            torch.save(state, os.path.join(checkpoint, generation_buffer_file(self.accelerator)))
        super()._save_checkpoint(model, trial)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, generation_buffer_file(self.accelerator))
        generate_every = self.args.steps_per_generation * self.num_iterations
        if os.path.isfile(path):
            state = torch.load(path, map_location="cpu", weights_only=True)  # CPU tensors may be tagged "cpu:0"
            self._step = state["step"]
            self._buffered_inputs = send_to_device(state["buffered_inputs"], self.accelerator.device)
        elif self.state.global_step * self.args.gradient_accumulation_steps % generate_every != 0:
            logger.warning(
                f"{checkpoint} was saved in the middle of a generation batch (steps_per_generation="
                f"{self.args.steps_per_generation}, num_iterations={self.num_iterations}) without its buffered "
                "rollouts: they are generated again, so the resumed run is not step-for-step identical to an "
                "uninterrupted one."
            )
