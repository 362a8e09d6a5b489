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

import os
import subprocess
import sys
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_trains_and_prints_the_gate_table(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    lines = done.stdout.strip().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("step"))
    assert "gate/rate" in lines[header]
    rows = [[float(x) for x in line.split()] for line in lines[header + 1 :]]
    assert [int(row[0]) for row in rows] == [10, 20, 30, 40, 50, 60, 70, 80]
    nll = [row[1] for row in rows]
    assert nll[-1] < nll[0] - 0.5  # the anchor trains
    for row in rows:
        gate_rate, difficulty, discriminability = row[3], row[4], row[5]
        assert 0 <= gate_rate <= min(difficulty, discriminability) + 1e-9


@pytest.mark.slow
def test_drop_in_trl_script(tmp_path):
    from adagrpo_trl.cli import run

    data, sft = tmp_path / "data", tmp_path / "sft"
    run(["prepare", "--dataset", "synthetic", "--synthetic_users", "60", "--synthetic_items", "30", "--num_levels", "2",
         "--max_history", "4", "--output_dir", str(data)])  # fmt: skip
    run(["sft", "--data_dir", str(data), "--output_dir", str(sft), "--hidden_size", "32", "--num_hidden_layers", "1",
         "--max_steps", "5", "--use_cpu", "true", "--bf16", "false", "--report_to", "none", "--save_strategy", "no",
         "--activation_checkpointing", "false"])  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "drop_in_trl_script.py"), "--model_name_or_path", str(sft),
         "--data_dir", str(data), "--output_dir", str(tmp_path / "out"), "--max_steps", "3",
         "--per_device_train_batch_size", "16", "--num_generations", "4", "--max_completion_length", "4",
         "--num_cross_negatives", "2", "--use_cpu", "true", "--bf16", "false", "--report_to", "none",
         "--logging_steps", "1", "--save_strategy", "no", "--activation_checkpointing", "false"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert [line.split(":")[0] for line in done.stdout.splitlines() if line.startswith("step")] == [
        "step 1",
        "step 2",
        "step 3",
    ]
    assert (tmp_path / "out" / "config.json").exists()
