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
"""Helpers for the tests that start several processes (`torch.distributed.run`, `accelerate launch`) on the CPU."""

import json
import math
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
ACCELERATE_CONFIGS = ROOT / "adagrpo_trl" / "accelerate_configs"
GATE_SCRIPT = Path(__file__).with_name("distributed_gate.py")
QUICKSTART = ROOT / "examples" / "quickstart.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_launch(config: str, num_processes: int, *script_and_args: str) -> Callable[[], list[str]]:
    """
    `accelerate launch --config_file adagrpo_trl/accelerate_configs/<config>.yaml --num_processes N ...`, as a function
    that builds the command line with a fresh free port each time it is called. Extra launcher flags (such as
    `--mixed_precision no`) go before the script in `script_and_args`.
    """
    script = Path(sys.executable).with_name("accelerate")
    launcher = [str(script), "launch"] if script.exists() else [sys.executable, "-m", "accelerate.commands.launch"]

    def command() -> list[str]:
        return [
            *launcher,
            "--config_file",
            str(ACCELERATE_CONFIGS / f"{config}.yaml"),
            "--num_processes",
            str(num_processes),
            "--main_process_port",
            str(free_port()),
            *script_and_args,
        ]

    return command


def torchrun(num_processes: int, *script_and_args: str) -> Callable[[], list[str]]:
    def command() -> list[str]:
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(num_processes),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(free_port()),
            *script_and_args,
        ]

    return command


def run(command: Callable[[], list[str]] | list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """
    Runs the command offline with one torch thread per process and asserts it exits 0. A command built by a function
    (a launcher on a free port) is retried once on a new port: a parallel test can take the probed port between the
    probe and the launcher's bind (a deterministic failure fails again).
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "MASTER_ADDR": "127.0.0.1"}
    attempts = 2 if callable(command) else 1
    for _ in range(attempts):
        args = command() if callable(command) else command
        done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        if done.returncode == 0:
            return done
    raise AssertionError(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")


def gate_script(out: Path, per_device_train_batch_size: int) -> list[str]:
    """`distributed_gate.py` (3 AdaGRPO steps, deterministic rollouts) writing its JSON to `out`."""
    return [str(GATE_SCRIPT), "--out", str(out), "--per_device_train_batch_size", str(per_device_train_batch_size)]


GATE_STEPS = 3  # max_steps of distributed_gate.py, one generation and one logged loss per step


def assert_same_gates_and_losses(reference: dict, other: dict) -> None:
    """Gate decisions of every generation, the logged losses of every step and the parameter change all agree."""
    for run_ in (reference, other):
        assert len(run_["gates"]) == GATE_STEPS
        for key in ("loss", "loss/nll", "gate/rate"):
            assert len(run_[key]) == GATE_STEPS, key
            assert all(math.isfinite(value) for value in run_[key]), key
        assert run_["param_change"] > 0
    assert reference["gates"] == other["gates"]
    assert any(0 < sum(gate) < len(gate) for gate in reference["gates"])  # a mixed gate: the comparison has teeth
    for key in ("loss", "loss/nll", "gate/rate"):
        for step, (expected, actual) in enumerate(zip(reference[key], other[key], strict=True), start=1):
            assert actual == pytest.approx(expected, rel=1e-5, abs=1e-6), f"{key} at step {step}"
    assert other["param_change"] == pytest.approx(reference["param_change"], rel=1e-5)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
