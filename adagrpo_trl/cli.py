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
The `adagrpo-trl` console script: `adagrpo-trl <command> [--config recipe] [--key value ...]` runs the command's
module in `adagrpo_trl/scripts/` (each also runs as `python -m adagrpo_trl.scripts.<command>`).

    adagrpo-trl pipeline --config ml-100k               # the packaged recipe adagrpo_trl/recipes/ml-100k/pipeline.yaml
    adagrpo-trl prepare --config ml-100k                # the stages one by one: see adagrpo_trl/recipes/ml-100k/README.md
    adagrpo-trl sft --config ml-100k
    adagrpo-trl train-ranker --config ml-100k
    adagrpo-trl train --config ml-100k/train/grpo --accelerate_config multi_cpu --num_processes 2
    adagrpo-trl evaluate --config ml-100k --model_path runs/ml-100k/methods/adagrpo
    adagrpo-trl serve-ranker --ranker_dir runs/ml-100k/ranker --port 8000
    accelerate launch --config_file <accelerate.yaml> -m adagrpo_trl.cli train --config ...
"""

import importlib
import sys
from collections.abc import Sequence
from typing import Any


# Command name -> its module (each has make_parser(), main(argv) and DESCRIPTION).
COMMANDS: dict[str, str] = {
    "prepare": "adagrpo_trl.scripts.prepare",
    "sft": "adagrpo_trl.scripts.sft",
    "train-ranker": "adagrpo_trl.scripts.train_ranker",
    "serve-ranker": "adagrpo_trl.scripts.serve_ranker",
    "train": "adagrpo_trl.scripts.train",
    "evaluate": "adagrpo_trl.scripts.evaluate",
    "analyze": "adagrpo_trl.scripts.analyze",
    "pipeline": "adagrpo_trl.scripts.pipeline",
}

# Names that lived here before the commands became modules -> their module now (imported on first use).
_MOVED = {
    **dict.fromkeys(
        (
            "AnalyzeArguments",
            "EvaluateArguments",
            "PipelineArguments",
            "PolicyArguments",
            "PrepareArguments",
            "RankerArguments",
            "SFTScriptArguments",
            "ServeArguments",
            "TrainScriptArguments",
        ),
        "adagrpo_trl.scripts.configs",
    ),
    **dict.fromkeys(("check_recipe_file", "check_recipe_values"), "adagrpo_trl.scripts.recipe"),
    **dict.fromkeys(("last_complete_checkpoint", "resolve_resume_from_checkpoint"), "adagrpo_trl.checkpoints"),
    "_expand_bare_resume_flag": "adagrpo_trl.scripts.utils",
    "run_prepare": "adagrpo_trl.scripts.prepare",
    "run_sft": "adagrpo_trl.scripts.sft",
    "run_train_ranker": "adagrpo_trl.scripts.train_ranker",
    "run_serve_ranker": "adagrpo_trl.scripts.serve_ranker",
    "run_train": "adagrpo_trl.scripts.train",
    "run_evaluate": "adagrpo_trl.scripts.evaluate",
    "run_analyze": "adagrpo_trl.scripts.analyze",
    "run_pipeline": "adagrpo_trl.scripts.pipeline",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        attribute = "expand_bare_resume_flag" if name == "_expand_bare_resume_flag" else name
        return getattr(importlib.import_module(_MOVED[name]), attribute)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _command_module(command: str) -> Any:
    if command not in COMMANDS:
        raise ValueError(f"Unknown command {command!r}; expected one of {sorted(COMMANDS)}.")
    return importlib.import_module(COMMANDS[command])


def make_parser(command: str) -> Any:
    """The parser of a command (its module's `make_parser()`, a [`~adagrpo_trl.scripts.recipe.RecipeParser`])."""
    return _command_module(command).make_parser()


def _usage() -> str:
    lines = ["usage: adagrpo-trl <command> [--config recipe] [--key value ...]", "", "commands:"]
    lines += [f"  {name:<14}{_command_module(name).DESCRIPTION}" for name in COMMANDS]
    lines += [
        "",
        "`adagrpo-trl <command> --help` lists a command's arguments; --config takes a YAML file or a packaged recipe",
        "name (`ml-100k`, `ml-100k/train/grpo`); `sft` and `train` take --accelerate_config (`multi_cpu`, `ddp`, ...).",
    ]
    return "\n".join(lines)


def run(argv: Sequence[str]) -> Any:
    """Runs one command (`argv` without the program name) and returns what its `run_<command>` function returns."""
    argv = list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())  # noqa: T201
        return None
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(_usage(), file=sys.stderr)  # noqa: T201
        raise SystemExit(f"adagrpo-trl: unknown command {command!r}")
    return _command_module(command).main(rest)


def main() -> None:
    """Console entry point `adagrpo-trl`."""
    run(sys.argv[1:])


if __name__ == "__main__":
    main()
