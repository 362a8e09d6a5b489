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
Checkpoint resolution for resumable training: the latest complete `checkpoint-<step>` folder of a run, and the meaning
of `resume_from_checkpoint` values (`true`, `false`, a path), shared by `adagrpo-trl train` and the pipeline.
"""

import json
import logging
import os
from pathlib import Path


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
