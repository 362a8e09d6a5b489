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
"""Helpers shared by the command modules: logging set-up, row subsampling, `--accelerate_config` launching."""

import logging
import os
from collections.abc import Sequence
from typing import Any

from .recipe import resolve_accelerate_config


def setup_logging() -> None:
    """Logs at `ADAGRPO_LOG_LEVEL` (default `INFO`) with timestamps, as every `adagrpo-trl` command does."""
    logging.basicConfig(level=os.environ.get("ADAGRPO_LOG_LEVEL", "INFO"), format="%(asctime)s %(name)s: %(message)s")


def maybe_subsample(dataset: Any, max_samples: int | None, seed: int) -> Any:
    """At most `max_samples` rows of `dataset`, drawn with `seed` (all of them when `max_samples` is `None`)."""
    if max_samples is None or max_samples >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(max_samples))


def expand_bare_resume_flag(argv: Sequence[str]) -> list[str]:
    """`--resume_from_checkpoint` without a value (last, or followed by another `--flag`) means `true`."""
    argv = list(argv)
    expanded = []
    for index, token in enumerate(argv):
        expanded.append(token)
        is_flag = token in ("--resume_from_checkpoint", "--resume-from-checkpoint")
        if is_flag and (index + 1 == len(argv) or argv[index + 1].startswith("--")):
            expanded.append("true")
    return expanded


# Flags of `accelerate launch` a training command takes next to `--accelerate_config`.
_LAUNCH_FLAGS = ("--num_processes", "--mixed_precision", "--main_process_port")


def launch_with_accelerate(module: str, argv: Sequence[str]) -> bool:
    """
    Runs `python -m <module> <argv>` under `accelerate launch --config_file <config>` when `argv` has
    `--accelerate_config NAME_OR_PATH` (a packaged name such as `multi_cpu`, `ddp`, `zero2`, `zero3`, or a file; see
    [`~adagrpo_trl.scripts.recipe.resolve_accelerate_config`]), as TRL's `trl <command> --accelerate_config` does;
    `--num_processes`, `--mixed_precision` and `--main_process_port` go to `accelerate launch`. Uses accelerate's own
    launch API.

    Args:
        module (`str`):
            The command module, e.g. `adagrpo_trl.scripts.train`.
        argv (`Sequence[str]`):
            The command's arguments.

    Returns:
        `bool`: `True` if it launched (the processes have finished), `False` if `argv` has no `--accelerate_config`.

    Example:

    ```python
    >>> launch_with_accelerate("adagrpo_trl.scripts.train", ["--config", "ml-100k", "--accelerate_config", "multi_cpu", "--num_processes", "2"])
    ```
    """
    argv = list(argv)
    if "--accelerate_config" not in argv:
        return False
    index = argv.index("--accelerate_config")
    if index + 1 >= len(argv):
        raise ValueError(
            "Expected a value after `--accelerate_config` (a packaged name such as `multi_cpu`, or a file)."
        )
    config_file = resolve_accelerate_config(argv[index + 1])
    rest = argv[:index] + argv[index + 2 :]
    launch_args = ["--config_file", str(config_file)]
    for flag in _LAUNCH_FLAGS:
        if flag in rest:
            position = rest.index(flag)
            if position + 1 >= len(rest):
                raise ValueError(f"Expected a value after `{flag}`.")
            launch_args += [flag, rest[position + 1]]
            rest = rest[:position] + rest[position + 2 :]
    from accelerate.commands import launch as accelerate_launch

    parsed = accelerate_launch.launch_command_parser().parse_args([*launch_args, "--module", module, *rest])
    accelerate_launch.launch_command(parsed)
    return True


def end_distributed() -> None:
    """
    Destroys the default process group at the end of a finished run in a launched worker (`WORLD_SIZE` > 1). A worker
    that exits with the group alive can abort in the C++ teardown ("terminate called without an active exception")
    after its work is saved, which fails the whole launch. In-process calls (no launched workers) are left alone.
    """
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
