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
"""The `adagrpo-trl` command line: help, recipes, the ranker stages and a tiny end-to-end pipeline."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from adagrpo_trl.cli import COMMANDS, make_parser, run
from adagrpo_trl.scripts.recipe import split_recipe_section


# The packaged tiny simulator recipe, by name (adagrpo_trl/recipes/synthetic/pipeline_tiny.yaml).
TINY = "synthetic/pipeline_tiny"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_help_exits_zero(command):
    done = subprocess.run(
        [sys.executable, "-m", "adagrpo_trl.cli", command, "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"adagrpo-trl {command}" in done.stdout


def test_unknown_command_and_unknown_recipe_key(tmp_path):
    with pytest.raises(SystemExit, match="unknown command 'trian'"):
        run(["trian"])
    recipe = tmp_path / "prepare.yaml"
    recipe.write_text("dataset: synthetic\noutput_dir: out\nmax_histroy: 5\n")
    with pytest.raises(ValueError, match="max_histroy"):
        make_parser("prepare").parse_args_and_config(["--config", str(recipe)])


def test_pipeline_section_with_an_unknown_key():
    with pytest.raises(ValueError, match="Unknown key 'epoch' in the pipeline's 'ranker' section"):
        split_recipe_section("ranker", {"epoch": 3})


@pytest.mark.parametrize("command", ["sft", "train", "pipeline"])
def test_a_command_module_runs_as_a_script(command):
    # `python -m adagrpo_trl.scripts.<command>` (what `accelerate launch -m` runs) parses like `adagrpo-trl <command>`
    done = subprocess.run(
        [sys.executable, "-m", COMMANDS[command], "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"usage: adagrpo-trl {command}" in done.stdout


def test_old_cli_names_still_import():
    from adagrpo_trl import cli
    from adagrpo_trl.checkpoints import last_complete_checkpoint
    from adagrpo_trl.scripts import configs, pipeline, train

    assert cli.PolicyArguments is configs.SFTScriptArguments is cli.SFTScriptArguments
    assert cli.PipelineArguments is configs.PipelineArguments and cli.run_pipeline is pipeline.run_pipeline
    assert cli.run_train is train.run_train and cli.last_complete_checkpoint is last_complete_checkpoint
    with pytest.raises(AttributeError):
        cli.no_such_name  # noqa: B018


def test_analyze_takes_the_gate_names_and_the_old_ones_with_a_warning():
    from adagrpo_trl.scripts.configs import AnalyzeArguments

    (args,) = make_parser("analyze").parse_args_and_config(
        ["--model_path", "m", "--data_dir", "d", "--ranker_path", "r", "--gate_tau", "0.5", "--gate_rho", "0.25"]
    )
    assert (args.gate_tau, args.gate_rho) == (0.5, 0.25)
    with pytest.warns(FutureWarning) as warned:
        old = AnalyzeArguments(model_path="m", data_dir="d", ranker_path="r", tau=0.5, rho=0.25)
    messages = [str(warning.message) for warning in warned]
    assert any("`tau` is deprecated, use `gate_tau`" in m for m in messages)
    assert any("`rho` is deprecated, use `gate_rho`" in m for m in messages)
    assert (old.gate_tau, old.gate_rho, old.tau, old.rho) == (0.5, 0.25, None, None)


@pytest.mark.slow
def test_tiny_pipeline_end_to_end_and_resume(tmp_path, capsys):
    output = tmp_path / "run"
    methods = run(["pipeline", "--config", TINY, "--output_dir", str(output)])
    assert {"sft", "adagrpo", "grpo"} <= set(methods) <= {"sft", "adagrpo", "grpo", "adagrpo@best", "grpo@best"}
    # the validation metrics were logged during training and the best checkpoint recorded
    best = json.loads((output / "methods" / "adagrpo" / "best_checkpoint.json").read_text())
    assert best["metric_for_best_model"] == "eval_hr@10" and [h["step"] for h in best["history"]] == [2, 4]
    history = json.loads((output / "methods" / "adagrpo" / "log_history.json").read_text())
    assert [log["step"] for log in history if "eval_hr@10" in log] == [2, 4]
    # the stratified analysis of the SFT model: bucket shares add up to one
    analysis = json.loads((output / "report" / "analysis_sft.json").read_text())
    assert analysis["num_samples"] == 30
    assert sum(bucket["share"] for bucket in analysis["buckets"]) == pytest.approx(1.0)
    assert sum(bucket["count"] for bucket in analysis["fine_buckets"]) == 30
    report = json.loads((output / "report" / "results.json").read_text())
    for name in ("sft", "adagrpo", "grpo"):
        metrics = report["methods"][name]
        assert 0 <= metrics["hallucination"] <= 1 and 0 <= metrics["hr@10"] <= metrics["constrained/hr@10"] + 1
    assert report["gate_rate"]["grpo"] == 1.0  # gate_mode=always
    assert 0 <= report["gate_rate"]["adagrpo"] <= 1
    for png in ("frontier.png", "training_curves.png"):
        assert (output / "report" / png).read_bytes()[:4] == b"\x89PNG"
    table = (output / "report" / "results.md").read_text()
    assert "| adagrpo |" in table and "| sft |" in table
    # the ranker stage printed its head/torso/tail quality table
    printed = capsys.readouterr().out
    for bucket in ("| head |", "| torso |", "| tail |"):
        assert bucket in printed
    # a second run finds every stage done and only rewrites the report
    before = (output / "methods" / "adagrpo" / "log_history.json").stat().st_mtime_ns
    run(["pipeline", "--config", TINY, "--output_dir", str(output)])
    assert (output / "methods" / "adagrpo" / "log_history.json").stat().st_mtime_ns == before


def write_tiny_train_recipe(path, pipeline_dir, output_dir, **overrides):
    """A two-step `adagrpo-trl train` recipe on the data and SFT model of a tiny pipeline run."""
    recipe = {
        "data_dir": str(pipeline_dir / "data"),
        "model_name_or_path": str(pipeline_dir / "sft"),
        "output_dir": str(output_dir),
        "max_train_samples": 64,
        "max_steps": 2,
        "num_generations": 4,
        "per_device_train_batch_size": 16,
        "max_completion_length": 4,
        "num_cross_negatives": 2,
        "use_cpu": True,
        "bf16": False,
        "activation_checkpointing": False,
        "save_strategy": "no",
        "logging_steps": 1,
        "report_to": "none",
        **overrides,
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.slow
def test_train_with_an_http_ranker_named_in_a_recipe(tmp_path):
    """`reward_funcs: [http]`: the ranker trained by the pipeline, served by `adagrpo-trl serve-ranker`."""
    output = tmp_path / "run"
    run(["pipeline", "--config", TINY, "--output_dir", str(output)])
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adagrpo_trl.cli",
            "serve-ranker",
            "--ranker_dir",
            str(output / "ranker"),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import httpx

        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            import time

            time.sleep(0.2)
        recipe = write_tiny_train_recipe(
            tmp_path / "train.yaml",
            output,
            tmp_path / "http-run",
            reward_funcs=["http"],
            ranker_url=f"http://127.0.0.1:{port}",
            gate_tau=0.5,
            gate_rho=0.6,
        )
        run(["train", "--config", str(recipe)])
    finally:
        server.terminate()
        server.wait(timeout=30)
    history = json.loads((tmp_path / "http-run" / "log_history.json").read_text())
    logs = [log for log in history if "gate/rate" in log]
    assert len(logs) == 2
    assert all(log["gate/unscorable_rate"] == 0 for log in logs)  # the gate's ground truths were scored over HTTP
    assert all(log["rewards/ranker/failures"] == 0 for log in logs)


@pytest.mark.slow
def test_train_on_two_processes_with_a_packaged_accelerate_config(tmp_path):
    """`adagrpo-trl train --config synthetic --accelerate_config multi_cpu --num_processes 2`: accelerate's launch."""
    from tests.launching import free_port

    output = tmp_path / "run"
    run(["pipeline", "--config", TINY, "--output_dir", str(output)])
    done = subprocess.run(
        [sys.executable, "-m", "adagrpo_trl.cli", "train", "--config", "synthetic", "--accelerate_config", "multi_cpu",
         "--num_processes", "2", "--main_process_port", str(free_port()), "--data_dir", str(output / "data"),
         "--model_name_or_path", str(output / "sft"), "--ranker_path", str(output / "ranker"),
         "--output_dir", str(tmp_path / "ddp"), "--max_steps", "2", "--save_strategy", "no",
         "--recommendation_eval_steps", "0"],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    history = json.loads((tmp_path / "ddp" / "log_history.json").read_text())
    # 2 processes x 16 completions = 8 prompts of the 256 per step: twice the epoch fraction of one process
    assert history[0]["epoch"] == pytest.approx(2 * 16 / 4 / 256)


def test_pipeline_refuses_several_processes(tmp_path, monkeypatch):
    # The stages share folders without synchronising processes: under `accelerate launch` the pipeline says so.
    from adagrpo_trl.scripts.configs import PipelineArguments
    from adagrpo_trl.scripts.pipeline import run_pipeline

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match=r"WORLD_SIZE=2.*only `train` under `accelerate launch`"):
        run_pipeline(PipelineArguments(output_dir=str(tmp_path / "run")))
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_train_on_hit_plus_ranker_with_the_gate_judging_the_biased_ranker(tmp_path):
    """Issue-16 options from a recipe: a hit + ranker reward, the gate on the ranker alone, valid-only R1/R2, λ > 0."""
    output = tmp_path / "run"
    run(["pipeline", "--config", TINY, "--output_dir", str(output)])
    teacher = json.loads((output / "ranker" / "teacher_report.json").read_text())
    assert teacher["num_examples"] == teacher["unmasked"]["overall"]["examples"] > 0
    recipe = write_tiny_train_recipe(
        tmp_path / "train.yaml",
        output,
        tmp_path / "hit-run",
        reward_funcs=["hit", "sasrec"],
        ranker_path=str(output / "ranker"),
        reward_weights=[1.0, 1.0],
        gate_reward_weights=[0.0, 1.0],
        gate_candidates="valid",
        popularity_bias=0.5,
    )
    run(["train", "--config", str(recipe)])
    logs = [log for log in json.loads((tmp_path / "hit-run" / "log_history.json").read_text()) if "gate/rate" in log]
    assert len(logs) == 2 and all("rewards/hit/mean" in log and "rewards/ranker/mean" in log for log in logs)
    assert all(log["gate/unscorable_rate"] == 0 for log in logs)
    bad = yaml.safe_load(recipe.read_text()) | {"gate_reward_weights": [1.0, 1.0], "output_dir": str(tmp_path / "bad")}
    recipe.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError, match="'hit' scores the ground truth at its maximum"):
        run(["train", "--config", str(recipe)])
