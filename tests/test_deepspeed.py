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
DeepSpeed ZeRO-2 and ZeRO-3 through the shipped accelerate configs, 2 CPU processes (DeepSpeed's CPU accelerator,
gloo). The configs say `mixed_precision: bf16` for GPUs; on the CPU the command adds `--mixed_precision no`, as the
training configs say `bf16: false` there. DeepSpeed builds its small shared-memory communication op with the
machine's C++ compiler the first time (about a minute, cached in ~/.cache/torch_extensions).
"""

import math
import sys

import pytest

from .launching import QUICKSTART, accelerate_launch, assert_same_gates_and_losses, gate_script, read_json, run


pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install -e '.[deepspeed]')")

STAGES = {"zero2": 2, "zero3": 3}


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory):
    """The plain 1-process reference: the whole global batch of 12 rows on one process."""
    folder = tmp_path_factory.mktemp("one_process")
    run([sys.executable, *gate_script(folder / "one.json", 12)], folder)
    return read_json(folder / "one.json")


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(STAGES))
def test_deepspeed_gate_and_loss_equal_one_process(config, one_process_run, tmp_path):
    # The same 3 steps as tests/test_distributed.py, under DeepSpeed: the gates, the per-step losses and the parameter
    # change equal a plain 1-process run on the same global batch (ZeRO-3: parameters gathered for the comparison).
    sharded = tmp_path / f"{config}.json"
    run(accelerate_launch(config, 2, "--mixed_precision", "no", *gate_script(sharded, 6)), tmp_path)
    single, sharded_run = one_process_run, read_json(sharded)
    assert sharded_run["num_processes"] == 2
    assert sharded_run["distributed_type"] == "DEEPSPEED"
    assert sharded_run["zero_stage"] == STAGES[config]
    assert sharded_run["wrapper"] == "DeepSpeedEngine"
    assert_same_gates_and_losses(single, sharded_run)


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(STAGES))
def test_quickstart_under_deepspeed(config, tmp_path):
    # Sampled rollouts too (ZeRO-3 gathers the parameters for generation and for the gate's log-prob passes).
    done = run(
        accelerate_launch(
            config,
            2,
            "--mixed_precision",
            "no",
            str(QUICKSTART),
            "--max_steps",
            "4",
            "--logging_steps",
            "2",
            "--output_dir",
            str(tmp_path / "out"),
        ),
        tmp_path,
    )
    lines = done.stdout.strip().splitlines()
    assert "trained 4 steps on 2 process(es), 64 completions per step" in lines
    header = next(i for i, line in enumerate(lines) if line.startswith("step"))
    rows = [[float(x) for x in line.split()] for line in lines[header + 1 :]]
    assert [int(row[0]) for row in rows] == [2, 4]
    assert all(math.isfinite(x) for row in rows for x in row)
    assert rows[-1][1] < rows[0][1]  # the NLL anchor trains
