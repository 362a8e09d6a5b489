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
"""Several CPU processes (gloo): the gate and the loss do not depend on the number of processes; the quickstart runs
under `accelerate launch` with the shipped multi-CPU config."""

import math
import sys

import pytest

from .launching import (
    QUICKSTART,
    accelerate_launch,
    assert_same_gates_and_losses,
    free_port,
    gate_script,
    read_json,
    run,
    torchrun,
)


# The names tests/test_resume.py imports for its own 2-process launch (tests/launching.py has the helpers).
_free_port, _run = free_port, run


@pytest.mark.slow
def test_gate_and_loss_equal_for_one_and_two_processes(tmp_path):
    # 12 rows per step (3 prompts x 4 rollouts): 6 rows per process on 2 processes, so the middle group straddles them.
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    run([sys.executable, *gate_script(one, 12)], tmp_path)
    run(torchrun(2, *gate_script(two, 6)), tmp_path)
    single, double = read_json(one), read_json(two)
    assert (single["num_processes"], double["num_processes"]) == (1, 2)
    assert (single["distributed_type"], double["distributed_type"]) == ("NO", "MULTI_CPU")
    assert double["wrapper"] == "DistributedDataParallel"
    # Per step: the gate of each of the 3 generations, the loss, NLL and gate rate of each of the 3 steps, and the
    # parameters after the last update.
    assert_same_gates_and_losses(single, double)


@pytest.mark.slow
def test_quickstart_under_accelerate_launch_on_two_cpu_processes(tmp_path):
    # The README's command: accelerate launch --config_file adagrpo_trl/accelerate_configs/multi_cpu.yaml
    # --num_processes 2 examples/quickstart.py (shortened to 6 steps, on a free port).
    done = run(
        accelerate_launch(
            "multi_cpu",
            2,
            str(QUICKSTART),
            "--max_steps",
            "6",
            "--logging_steps",
            "2",
            "--output_dir",
            str(tmp_path / "out"),
        ),
        tmp_path,
    )
    lines = done.stdout.strip().splitlines()
    # Two processes of 32 completions each: one global batch of 64 per step.
    assert "trained 6 steps on 2 process(es), 64 completions per step" in lines
    header = next(i for i, line in enumerate(lines) if line.startswith("step"))
    rows = [[float(x) for x in line.split()] for line in lines[header + 1 :]]
    assert [int(row[0]) for row in rows] == [2, 4, 6]
    assert all(math.isfinite(x) for row in rows for x in row)
    assert rows[-1][1] < rows[0][1]  # the NLL anchor trains
