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
Checkpoint resolution for resumable training: the latest complete `checkpoint-<step>` folder of a run, the meaning of
`resume_from_checkpoint` values (`true`, `false`, a path), shared by `adagrpo-trl train` and the pipeline, and the
training arguments a run (finished or resumable) saved, to compare with the ones a rerun asks for.
"""

import json
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


logger = logging.getLogger(__name__)

_RESUME_LATEST = ("true", "yes", "1", "latest")
_RESUME_NEVER = ("", "false", "no", "0", "none")


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """
    The latest complete `checkpoint-<step>` folder of `output_dir`, or `None` if it has none.

    The Trainer writes a checkpoint's `trainer_state.json` after the model, optimizer, scheduler, RNG (and AdaGRPO's
    generation buffer) files, so a folder whose `trainer_state.json` parses is complete; one without it, or with a
    truncated one (a run killed while saving), is skipped with a warning. transformers' `get_last_checkpoint` would
    return it and the resumed run would fail or silently restart at step 0.
    """
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    steps = {}
    for path in folder.iterdir():
        step = path.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-")
        if path.is_dir() and step != path.name and step.isdigit():
            steps[path] = int(step)
    for path in sorted(steps, key=steps.get, reverse=True):
        try:
            json.loads((path / "trainer_state.json").read_text())
        except (OSError, ValueError):
            logger.warning("Skipping %s: incomplete checkpoint (no readable trainer_state.json).", path)
            continue
        return str(path)
    return None


def resolve_resume_from_checkpoint(value: str | bool | None, output_dir: str | os.PathLike) -> str | None:
    """
    The checkpoint `adagrpo-trl train --resume_from_checkpoint VALUE` resumes from (`None`: start from scratch).

    - `true` (also `yes`, `1`, `latest`, a YAML `true` or the bare flag): the latest complete checkpoint of
      `output_dir` (see [`last_complete_checkpoint`]). If there is none, a warning says so and training starts from
      scratch, so the same command line serves the first launch and every restart of a preemptible job.
    - `false`, `no`, `0`, `none`, empty or unset: start from scratch.
    - anything else: the path of a checkpoint folder, which must exist and be complete (`ValueError` otherwise).
    """
    if value is None or value is False:
        return None
    text = "true" if value is True else str(value).strip()
    if text.lower() in _RESUME_NEVER:
        return None
    if text.lower() in _RESUME_LATEST:
        checkpoint = last_complete_checkpoint(output_dir)
        if checkpoint is None:
            logger.warning(
                "resume_from_checkpoint: no complete checkpoint in %s; training starts from scratch.", output_dir
            )
        else:
            logger.info("Resuming from %s, the latest complete checkpoint of %s.", checkpoint, output_dir)
        return checkpoint
    path = Path(text)
    if not path.is_dir():
        raise ValueError(
            f"resume_from_checkpoint={text!r} is not a checkpoint folder. Use a checkpoint-<step> folder, or `true` "
            f"for the latest one in output_dir ({output_dir})."
        )
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        raise ValueError(
            f"resume_from_checkpoint={text!r} is incomplete (no readable trainer_state.json): the run that wrote it "
            "was probably killed while saving. Pass an earlier checkpoint, or `true` for the latest complete one."
        ) from None
    return text


def saved_training_args(output_dir: str | os.PathLike) -> Any | None:
    """
    The training arguments (`TrainingArguments`, e.g. an [`AdaGRPOConfig`]) a run in `output_dir` trained with: its
    final `training_args.bin`, or while it is unfinished its latest complete checkpoint's (the one a resume continues).
    `None` when nothing was saved yet.
    """
    import torch

    source = Path(output_dir) / "training_args.bin"
    if not source.exists():
        checkpoint = last_complete_checkpoint(output_dir)
        if checkpoint is None or not (Path(checkpoint) / "training_args.bin").exists():
            return None
        source = Path(checkpoint) / "training_args.bin"
    # A pickled dataclass of transformers / TRL / adagrpo_trl written by the Trainer of this run folder.
    return torch.load(source, weights_only=False)


def training_args_differences(saved: Any, wanted: Any, keys: Iterable[str]) -> dict[str, tuple[Any, Any]]:
    """
    `{key: (saved value, wanted value)}` for each of `keys` on which two training arguments disagree; `wanted` is an
    arguments object or a `dict`. A key either side lacks is not compared. Numbers compare up to float rounding, enums
    by their value (`"cosine"` equals `SchedulerType.COSINE`), lists element by element.

    Example:

    ```python
    >>> training_args_differences(saved_training_args("runs/x/methods/adagrpo"), {"gate_tau": 0.5}, ["gate_tau"])
    {'gate_tau': (0.25, 0.5)}
    ```
    """

    def value(args: Any, key: str) -> tuple[bool, Any]:
        if isinstance(args, dict):
            return key in args, args.get(key)
        return hasattr(args, key), getattr(args, key, None)

    differences = {}
    for key in keys:
        (has_saved, saved_value), (has_wanted, wanted_value) = value(saved, key), value(wanted, key)
        if has_saved and has_wanted and not _same_value(saved_value, wanted_value):
            differences[key] = (saved_value, wanted_value)
    return differences


def _same_value(saved: Any, wanted: Any) -> bool:
    if isinstance(saved, (int, float)) and isinstance(wanted, (int, float)) and not isinstance(saved, bool):
        return math.isclose(float(saved), float(wanted), rel_tol=1e-12, abs_tol=0.0)
    if isinstance(saved, (list, tuple)) and isinstance(wanted, (list, tuple)):
        return len(saved) == len(wanted) and all(_same_value(a, b) for a, b in zip(saved, wanted, strict=True))
    return getattr(saved, "value", saved) == getattr(wanted, "value", wanted)  # enums compare by their value
