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
"""The rollout and exact-resume mixins' public helpers, without a trainer."""

from types import SimpleNamespace

import pytest
import torch
from trl.trainer.utils import RepeatSampler

from adagrpo_trl.resume import ResumableRepeatSampler, generation_buffer_file
from adagrpo_trl.rollouts import RolloutsMixin, captured_sequence_logps, fits_captured_logits


def test_captured_sequence_logps_sampling_sums_each_rows_tokens_up_to_its_length():
    torch.manual_seed(0)
    logits = tuple(torch.randn(2, 5) for _ in range(3))
    completion_ids = torch.tensor([[1, 2, 3], [4, 0, 0]])
    lengths = torch.tensor([3, 1])
    logps = captured_sequence_logps(logits, completion_ids, lengths)
    step = [torch.log_softmax(x, dim=-1) for x in logits]
    expected = torch.stack([step[0][0, 1] + step[1][0, 2] + step[2][0, 3], step[0][1, 4]])
    torch.testing.assert_close(logps, expected)


def test_captured_sequence_logps_follows_beam_indices():
    torch.manual_seed(0)
    logits = tuple(torch.randn(2, 5) for _ in range(2))
    completion_ids = torch.tensor([[1, 2], [3, 4]])
    beam_indices = torch.tensor([[1, 0], [0, -1]])  # row 0 extended beam 1 then beam 0; row 1 ended after step 0
    logps = captured_sequence_logps(logits, completion_ids, torch.tensor([2, 2]), beam_indices)
    step = [torch.log_softmax(x, dim=-1) for x in logits]
    torch.testing.assert_close(logps, torch.stack([step[0][1, 1] + step[1][0, 2], step[0][0, 3]]))


def test_fits_captured_logits():
    model = SimpleNamespace(config=SimpleNamespace(vocab_size=1000))
    assert fits_captured_logits(model, num_rows=16, max_new_tokens=4)
    assert not fits_captured_logits(model, num_rows=1 << 20, max_new_tokens=1 << 10)


def test_captured_rollout_logps_are_read_once_and_must_match_the_rollouts():
    holder = RolloutsMixin()
    holder._captured_rollouts = {"completion_ids": [[1, 2]], "logps": torch.tensor([-0.5])}
    assert holder.pop_captured_rollout_logps([[1, 2]]).tolist() == [-0.5]
    assert holder.pop_captured_rollout_logps([[1, 2]]) is None  # read once
    holder._captured_rollouts = {"completion_ids": [[1, 2]], "logps": torch.tensor([-0.5])}
    with pytest.raises(RuntimeError, match="do not belong"):
        holder.pop_captured_rollout_logps([[3]])


def _epochs(sampler, num_epochs, set_epoch=False):
    orders = []
    for epoch in range(num_epochs):
        if set_epoch:
            sampler.set_epoch(epoch)
        orders.append(list(sampler))
    return orders


def test_resumable_sampler_set_epoch_restores_each_epochs_order():
    kwargs = dict(data_source=list(range(6)), mini_repeat_count=2, batch_size=3, repeat_count=1, shuffle=True, seed=7)
    uninterrupted = _epochs(RepeatSampler(**kwargs), 3)
    assert _epochs(ResumableRepeatSampler(**kwargs), 3, set_epoch=True) == uninterrupted
    resumed = ResumableRepeatSampler(**kwargs)  # a fresh sampler starting at epoch 2, as after a resume
    resumed.set_epoch(2)
    assert list(resumed) == uninterrupted[2]
    assert uninterrupted[0] != uninterrupted[2]  # TRL's fresh sampler would replay epoch 0's order


def test_generation_buffer_file_names_one_file_per_process():
    assert generation_buffer_file(SimpleNamespace(num_processes=1, process_index=0)) == "generation_buffer.pt"
    assert generation_buffer_file(SimpleNamespace(num_processes=2, process_index=1)) == "generation_buffer_1.pt"
