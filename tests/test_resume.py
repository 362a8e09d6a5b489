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
Crash and resume, and determinism. A run killed with SIGKILL and resumed with `--resume_from_checkpoint true` ends
bitwise-equal to an uninterrupted run of the same seed (CPU): same per-step losses, rewards, gate rates, and weights.

What makes this exact (each is exercised below): the Trainer restores the model, optimizer, scheduler and RNG states
and skips the consumed batches; AdaGRPO's cross-query negatives are drawn from a generator seeded by `seed` and
`global_step`; AdaGRPOTrainer saves GRPO's buffered generation batch with a checkpoint taken in the middle of one
(`steps_per_generation` > gradient accumulation), and its sampler's `set_epoch` replays the epoch's order when a run
resumes after the first epoch (TRL's sampler would restart from epoch 0's order).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adagrpo_trl import AdaGRPOTrainer
from adagrpo_trl.cli import (
    _expand_bare_resume_flag,
    last_complete_checkpoint,
    make_parser,
    resolve_resume_from_checkpoint,
)

from . import toy


ROOT = Path(__file__).resolve().parents[1]
# Logged values that measure time, not training.
TIMING_KEYS = {"step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second"}


def step_logs(log_history):
    """The per-step training logs, without timings."""
    return [{k: v for k, v in log.items() if k not in TIMING_KEYS} for log in log_history if "loss" in log]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


# ---------------------------------------------------------------------------------------------------------------------
# Finding the checkpoint to resume from
# ---------------------------------------------------------------------------------------------------------------------


def fake_checkpoint(output_dir, step, state="{}"):
    path = output_dir / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if state is not None:
        (path / "trainer_state.json").write_text(state)
    return path


def test_latest_complete_checkpoint_skips_ones_killed_while_saving(tmp_path, caplog):
    assert last_complete_checkpoint(tmp_path / "missing") is None
    assert last_complete_checkpoint(tmp_path) is None
    fake_checkpoint(tmp_path, 2)
    ten = fake_checkpoint(tmp_path, 10)  # numeric order, not lexicographic
    fake_checkpoint(tmp_path, 12, state=None)  # killed before trainer_state.json (written last)
    fake_checkpoint(tmp_path, 14, state='{"global_step": 1')  # killed while writing it
    (tmp_path / "checkpoint-16.tmp").mkdir()
    (tmp_path / "checkpoint-18").write_text("not a folder")
    with caplog.at_level("WARNING"):
        assert last_complete_checkpoint(tmp_path) == str(ten)
    assert "checkpoint-14: incomplete" in caplog.text and "checkpoint-12: incomplete" in caplog.text


def test_resume_from_checkpoint_values(tmp_path, caplog):
    for never in (None, False, "", "false", "No", "0", "none"):
        assert resolve_resume_from_checkpoint(never, tmp_path) is None
    with caplog.at_level("WARNING"):
        assert resolve_resume_from_checkpoint("true", tmp_path) is None  # nothing to resume: start from scratch
    assert "no complete checkpoint" in caplog.text and "starts from scratch" in caplog.text
    four = fake_checkpoint(tmp_path, 4)
    for latest in (True, "true", "True", "latest", "1", "yes"):
        assert resolve_resume_from_checkpoint(latest, tmp_path) == str(four)
    assert resolve_resume_from_checkpoint(str(four), tmp_path / "elsewhere") == str(four)  # a path is taken as is
    with pytest.raises(ValueError, match="not a checkpoint folder"):
        resolve_resume_from_checkpoint(str(tmp_path / "checkpoint-9"), tmp_path)
    broken = fake_checkpoint(tmp_path, 6, state=None)
    with pytest.raises(ValueError, match="incomplete"):
        resolve_resume_from_checkpoint(str(broken), tmp_path)


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--resume_from_checkpoint"], "true"),  # bare flag, last
        (["--resume_from_checkpoint", "--seed", "3"], "true"),  # bare flag, then another flag
        (["--resume-from-checkpoint"], "true"),
        (["--resume_from_checkpoint", "true"], "true"),
        (["--resume_from_checkpoint", "runs/x/checkpoint-4"], "runs/x/checkpoint-4"),
        ([], None),
    ],
)
def test_train_command_parses_the_resume_flag(flags, expected):
    argv = [
        "--data_dir",
        "d",
        "--model_name_or_path",
        "m",
        "--output_dir",
        "o",
        "--use_cpu",
        "true",
        "--bf16",
        "false",
    ]
    argv += flags
    _, config = make_parser("train").parse_args_and_config(_expand_bare_resume_flag(argv))
    assert config.resume_from_checkpoint == expected


def done_stages(root):
    from adagrpo_trl.scripts import pipeline

    for folder, marker in (
        ("data", "catalog.json"),
        ("sft", pipeline.SFT_DONE_FILE),
        ("ranker", "quality_report.json"),
    ):
        (root / folder).mkdir(parents=True)
        (root / folder / marker).write_text("{}")  # the stages before training are done


def test_pipeline_resumes_a_method_killed_mid_training(tmp_path, monkeypatch):
    from adagrpo_trl import cli
    from adagrpo_trl.scripts import pipeline

    root = tmp_path / "run"
    done_stages(root)
    checkpoint = fake_checkpoint(root / "methods" / "adagrpo", 4)
    fake_checkpoint(root / "methods" / "adagrpo", 6, state=None)  # killed while saving its last checkpoint
    resumed_from = {}

    def train(script, args):
        resumed_from[Path(args.output_dir).name] = args.resume_from_checkpoint
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(args.output_dir) / "log_history.json").write_text("[]")

    monkeypatch.setattr(pipeline, "run_train", train)
    monkeypatch.setattr(pipeline, "run_evaluate", lambda args: {"hr@10": 0.1, "hallucination": 0.0})
    arguments = cli.PipelineArguments(
        output_dir=str(root),
        train={"use_cpu": True, "bf16": False},
        methods={"adagrpo": {}, "grpo": {"gate_mode": "always", "nll_coef": 0.0}},
        analyze=None,
    )
    pipeline.run_pipeline(arguments)
    assert resumed_from == {"adagrpo": str(checkpoint), "grpo": None}  # grpo never started: from scratch


def saved_run(method_dir, finished=True, **config):
    """A method folder as the Trainer leaves it: `training_args.bin`, finished or in its latest checkpoint."""
    from adagrpo_trl import AdaGRPOConfig

    config = {"seed": 0, "use_cpu": True, "bf16": False, "report_to": "none", **config}  # the pipeline's seed is 0
    args = AdaGRPOConfig(output_dir=str(method_dir), **config)
    folder = method_dir if finished else fake_checkpoint(method_dir, 4)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(args, folder / "training_args.bin")
    if finished:
        (method_dir / "log_history.json").write_text("[]")


def test_pipeline_refuses_method_runs_trained_with_other_arguments(tmp_path, monkeypatch):
    """A finished run is skipped and a killed one resumed, so either must have trained with the recipe's arguments."""
    from adagrpo_trl import cli
    from adagrpo_trl.checkpoints import saved_training_args, training_args_differences
    from adagrpo_trl.scripts import pipeline

    root = tmp_path / "run"
    done_stages(root)
    trained = []
    monkeypatch.setattr(pipeline, "run_train", lambda script, args: trained.append(Path(args.output_dir).name))
    monkeypatch.setattr(pipeline, "run_evaluate", lambda args: {"hr@10": 0.1, "hallucination": 0.0})
    train = {"use_cpu": True, "bf16": False, "learning_rate": 1e-4, "gate_tau": 0.5, "logging_steps": 5}
    methods = {"adagrpo": {}, "grpo": {"gate_mode": "always", "nll_coef": 0.0}}

    def run(**train_overrides):
        arguments = cli.PipelineArguments(
            output_dir=str(root), train={**train, **train_overrides}, methods=methods, analyze=None
        )
        return pipeline.run_pipeline(arguments)

    # finished with another τ (a key the recipe sets), resumable with another learning rate: both named, nothing trains
    saved_run(root / "methods" / "adagrpo", learning_rate=1e-4, gate_tau=0.25)
    saved_run(root / "methods" / "grpo", finished=False, learning_rate=3e-5, gate_mode="always", nll_coef=0.0)
    with pytest.raises(ValueError) as refused:
        run()
    message = str(refused.value)
    assert str(root / "methods" / "adagrpo") in message and "'gate_tau': (0.25, 0.5)" in message
    assert str(root / "methods" / "grpo") in message and "'learning_rate': (3e-05, 0.0001)" in message
    assert "nll_coef" not in message and "gate_mode" not in message and trained == []
    # an AdaGRPO key the recipe leaves at its default is compared too; a bookkeeping key (logging_steps) is not
    for name in ("adagrpo", "grpo"):
        shutil.rmtree(root / "methods" / name)
    saved_run(root / "methods" / "adagrpo", learning_rate=1e-4, gate_tau=0.5, gate_rho=0.25, logging_steps=1)
    with pytest.raises(ValueError, match=r"'gate_rho': \(0\.25, 0\.5\)") as refused:
        run()
    assert "logging_steps" not in str(refused.value) and trained == []
    # the recipe's arguments: the finished run is skipped and evaluated, the other method trains
    shutil.rmtree(root / "methods" / "adagrpo")
    saved_run(root / "methods" / "adagrpo", learning_rate=1e-4, gate_tau=0.5, logging_steps=1)
    assert set(run()) == {"sft", "adagrpo", "grpo"} and trained == ["grpo"]
    # a method folder linked on purpose (a run reused from elsewhere) is taken as it is
    shutil.rmtree(root / "methods" / "adagrpo")
    saved_run(tmp_path / "elsewhere" / "adagrpo", learning_rate=1e-4, gate_tau=0.9)
    (root / "methods" / "adagrpo").symlink_to(tmp_path / "elsewhere" / "adagrpo", target_is_directory=True)
    (root / "methods" / "grpo" / "log_history.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "methods" / "grpo" / "log_history.json").write_text("[]")
    run()
    assert trained == ["grpo"]
    # the comparison itself: enums by value, numbers up to rounding, lists element-wise, keys either side lacks skipped
    saved = saved_training_args(tmp_path / "elsewhere" / "adagrpo")
    assert (
        training_args_differences(
            saved,
            {"lr_scheduler_type": "linear", "learning_rate": 1e-4 + 1e-20},
            ["lr_scheduler_type", "learning_rate"],
        )
        == {}
    )
    assert training_args_differences(
        saved, {"gate_tau": 0.5, "no_such_key": 1}, ["gate_tau", "no_such_key", "other"]
    ) == {"gate_tau": (0.9, 0.5)}
    assert saved_training_args(tmp_path / "nothing") is None


# ---------------------------------------------------------------------------------------------------------------------
# Exact resumption and determinism, in process
# ---------------------------------------------------------------------------------------------------------------------


class GateRecorder(AdaGRPOTrainer):
    """Records the gate of every generation batch (one bool per local row)."""

    def _compute_gate(self, output, stash, ground_truth_ids, num_generations, mode):
        gate = super()._compute_gate(output, stash, ground_truth_ids, num_generations, mode)
        self.gates = [*getattr(self, "gates", []), (self.state.global_step, gate.cpu().clone())]
        return gate


def train_toy(output_dir, resume_from_checkpoint=None, **overrides):
    tokenizer = toy.make_tokenizer()
    kwargs = dict(gate_tau=1.0, max_steps=12, save_strategy="steps", save_steps=3, steps_per_generation=2)
    kwargs.update(overrides)
    trainer = GateRecorder(
        model=toy.make_model(tokenizer),
        reward_funcs=toy.target_reward,
        args=toy.tiny_config(output_dir, **kwargs),
        train_dataset=toy.make_dataset(),
        processing_class=tokenizer,
    )
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    return trainer


def test_resume_inside_a_generation_batch_and_across_epochs_is_exact(tmp_path):
    # 16 prompts, 4 per generation batch, each batch spans 2 optimizer steps: an epoch is 8 steps. checkpoint-3 is
    # saved in the middle of a generation batch, and the resumed run crosses the epoch boundary at step 8. The later
    # checkpoint-6 is incomplete (killed while saving), so the run resumes from checkpoint-3 and saves 6 again.
    full = train_toy(tmp_path / "full")
    assert (tmp_path / "full" / "checkpoint-3" / "generation_buffer.pt").is_file()  # mid-batch: buffer saved
    assert not (tmp_path / "full" / "checkpoint-6" / "generation_buffer.pt").exists()  # batch boundary: none needed
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    for step in (3, 6):
        os.rename(tmp_path / "full" / f"checkpoint-{step}", resumed_dir / f"checkpoint-{step}")
    # killed while writing checkpoint-6: its trainer_state.json, written last, is truncated
    state = resumed_dir / "checkpoint-6" / "trainer_state.json"
    state.write_text(state.read_text()[:40])
    checkpoint = resolve_resume_from_checkpoint("true", resumed_dir)
    assert checkpoint == str(resumed_dir / "checkpoint-3")
    resumed = train_toy(resumed_dir, resume_from_checkpoint=checkpoint)
    assert step_logs(resumed.state.log_history) == step_logs(full.state.log_history)  # bitwise: == on floats
    assert [log["step"] for log in step_logs(resumed.state.log_history)] == list(range(1, 13))
    assert_same_weights(dict(resumed.model.named_parameters()), dict(full.model.named_parameters()))
    # the resumed run generated the same batches from step 5 on and took the same gate decisions
    full_gates = {step: gate for step, gate in full.gates if step >= 4}
    resumed_gates = dict(resumed.gates)
    assert full_gates.keys() == resumed_gates.keys() == {4, 6, 8, 10}
    for step, gate in full_gates.items():
        assert torch.equal(gate, resumed_gates[step]), step


def test_same_seed_gives_identical_gates_metrics_and_weights(tmp_path):
    options = dict(
        max_steps=4, save_strategy="no", steps_per_generation=1, per_device_train_batch_size=16, gate_tau=0.5
    )
    runs = [train_toy(tmp_path / str(i), **options) for i in range(2)]
    first, second = runs
    logs = step_logs(first.state.log_history)
    assert len(logs) == 4 and logs == step_logs(second.state.log_history)
    assert len(first.gates) == len(second.gates) == 4
    for (step_a, gate_a), (step_b, gate_b) in zip(first.gates, second.gates, strict=True):
        assert step_a == step_b and torch.equal(gate_a, gate_b)
    # the gate is exercised: it admits some rows and rejects others
    assert any(gate.any() for _, gate in first.gates) and any(not gate.all() for _, gate in first.gates)
    assert_same_weights(dict(first.model.named_parameters()), dict(second.model.named_parameters()))


@pytest.mark.slow
def test_two_process_resume_inside_a_generation_batch_is_exact(tmp_path):
    """2 CPU processes (gloo): each saves and restores its own generation buffer and RNG state."""
    from .launching import run, torchrun

    script = str(Path(__file__).with_name("distributed_resume.py"))
    full_dir, resumed_dir = tmp_path / "full", tmp_path / "resumed"
    run(torchrun(2, script, "--output_dir", str(full_dir), "--out", str(tmp_path / "full.json")), tmp_path)
    checkpoint = full_dir / "checkpoint-3"
    assert {p.name for p in checkpoint.glob("generation_buffer_*.pt")} == {
        "generation_buffer_0.pt",
        "generation_buffer_1.pt",
    }
    resumed_dir.mkdir()
    os.rename(checkpoint, resumed_dir / "checkpoint-3")
    arguments = ["--output_dir", str(resumed_dir), "--out", str(tmp_path / "resumed.json")]
    arguments += ["--resume_from_checkpoint", str(resumed_dir / "checkpoint-3")]
    run(torchrun(2, script, *arguments), tmp_path)
    full, resumed = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("full", "resumed"))
    assert full["num_processes"] == resumed["num_processes"] == 2
    assert [log["step"] for log in resumed["logs"]] == list(range(1, 11))
    assert resumed["logs"] == full["logs"] and resumed["weights"] == full["weights"]  # bitwise


# ---------------------------------------------------------------------------------------------------------------------
# SIGKILL mid-run, then `adagrpo-trl train --resume_from_checkpoint true`
# ---------------------------------------------------------------------------------------------------------------------


class HashRanker:
    """A deterministic ranker for the subprocess runs (by dotted path); `RESUME_TEST_DELAY` slows every call."""

    def score(self, contexts, candidate_item_ids):
        time.sleep(float(os.environ.get("RESUME_TEST_DELAY", "0")))
        return [
            zlib.crc32(f"{context['history']}|{item}".encode()) % 1000 / 1000
            for context, item in zip(contexts, candidate_item_ids, strict=True)
        ]


@pytest.fixture(scope="module")
def prepared_run(tmp_path_factory):
    """A prepared data folder (the simulator, 2 SID levels) and a tiny untrained policy saved as the SFT checkpoint."""
    from transformers import Qwen2ForCausalLM

    from adagrpo_trl.data import simulate_exposure_biased_logs
    from adagrpo_trl.data.prepare import prepare_data
    from adagrpo_trl.tokenization import small_qwen2_config

    root = tmp_path_factory.mktemp("resume")
    simulated = simulate_exposure_biased_logs(num_users=40, num_items=30, seq_len=(5, 8), seed=0)
    prepared = prepare_data(simulated.log, simulated.items, num_levels=2, max_history=4, output_dir=root / "data")
    torch.manual_seed(0)
    config = small_qwen2_config(prepared.tokenizer, hidden_size=16, num_attention_heads=2, num_key_value_heads=1)
    Qwen2ForCausalLM(config).save_pretrained(root / "sft")
    prepared.tokenizer.save_pretrained(root / "sft")
    sid_length = max(len(prepared.tokenizer(s, add_special_tokens=False)["input_ids"]) for s in prepared.catalog.sids)
    return root, sid_length


def train_command(root, sid_length, output_dir):
    options = {
        "data_dir": root / "data",
        "model_name_or_path": root / "sft",
        "reward_funcs": "tests.test_resume:HashRanker",
        "output_dir": output_dir,
        "constrained_rollouts": "true",
        "max_train_samples": 16,
        "per_device_train_batch_size": 8,
        "num_generations": 4,
        "steps_per_generation": 2,  # a generation batch spans 2 optimizer steps ...
        "save_steps": 3,  # ... so checkpoint-3 and checkpoint-9 are saved in the middle of one
        "save_strategy": "steps",
        "max_steps": 12,  # 16 prompts, 4 per generation batch: epochs end at steps 8 and 16
        "max_completion_length": sid_length + 1,
        "num_cross_negatives": 2,
        "gate_tau": 1.0,
        "gate_rho": 0.6,
        "learning_rate": 1e-2,
        "logging_steps": 1,
        "seed": 0,
        "use_cpu": "true",
        "bf16": "false",
        "activation_checkpointing": "false",
        "report_to": "none",
    }
    command = [sys.executable, "-m", "adagrpo_trl.cli", "train"]
    for key, value in options.items():
        command += [f"--{key}", str(value)]
    return command


def environment(**extra):
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "ADAGRPO_LOG_LEVEL": "WARNING",
        **extra,
    }


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_from_the_latest_checkpoint_is_exact(prepared_run, tmp_path):
    root, sid_length = prepared_run
    full_dir, killed_dir = tmp_path / "full", tmp_path / "killed"
    logs = {name: open(tmp_path / f"{name}.log", "w") for name in ("full", "killed", "resumed")}  # noqa: SIM115
    full = killed = None
    try:
        # The uninterrupted reference and the run to kill, side by side (single-threaded each).
        full = subprocess.Popen(
            train_command(root, sid_length, full_dir),
            cwd=ROOT,
            env=environment(),
            stdout=logs["full"],
            stderr=subprocess.STDOUT,
        )
        killed = subprocess.Popen(
            train_command(root, sid_length, killed_dir),
            cwd=ROOT,
            env=environment(RESUME_TEST_DELAY="0.3"),  # ~0.6 s per generation batch: time to kill between saves
            stdout=logs["killed"],
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 300
        while last_complete_checkpoint(killed_dir) is None:
            assert killed.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
        os.kill(killed.pid, signal.SIGKILL)
        assert killed.wait(60) == -signal.SIGKILL
        assert full.wait(300) == 0, (tmp_path / "full.log").read_text()[-3000:]

        checkpoint = last_complete_checkpoint(killed_dir)
        resume_step = int(checkpoint.rsplit("-", 1)[1])
        assert resume_step < 12 and not (killed_dir / "log_history.json").exists()  # killed before the end
        # odd steps are in the middle of a generation batch: the checkpoint holds the buffered rollouts
        assert (Path(checkpoint) / "generation_buffer.pt").is_file() == (resume_step % 2 == 1)
        resumed = subprocess.run(
            [*train_command(root, sid_length, killed_dir), "--resume_from_checkpoint", "true"],
            cwd=ROOT,
            env=environment(),
            stdout=logs["resumed"],
            stderr=subprocess.STDOUT,
            timeout=300,
        )
        assert resumed.returncode == 0, (tmp_path / "resumed.log").read_text()[-3000:]
    finally:
        for process in (full, killed):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(30)
        for log in logs.values():
            log.close()

    expected = step_logs(json.loads((full_dir / "log_history.json").read_text()))
    actual = step_logs(json.loads((killed_dir / "log_history.json").read_text()))
    assert [log["step"] for log in actual] == list(range(1, 13))
    for want, got in zip(expected, actual, strict=True):
        assert got == want, f"step {want['step']} (resumed from step {resume_step})"
    logged = set().union(*expected)
    assert {"loss", "reward", "gate/rate", "gate/unscorable_rate", "loss/nll", "rewards/ranker/failures"} <= logged
    assert_same_weights(load_file(killed_dir / "model.safetensors"), load_file(full_dir / "model.safetensors"))
