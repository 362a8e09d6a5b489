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
"""Sequence helpers shared by the trainer's gate and the stratified analysis, and atomic file writes."""

import contextlib
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F


def cut_after_eos(completion_ids: torch.Tensor, eos_token_ids: int | Sequence[int]) -> list[list[int]]:
    """Each row of generated ids up to and including its first EOS (the whole row if it has none)."""
    eos_ids = [eos_token_ids] if isinstance(eos_token_ids, int) else list(eos_token_ids)
    is_eos = torch.isin(completion_ids, torch.tensor(eos_ids, device=completion_ids.device))
    lengths = torch.where(
        is_eos.any(dim=1),
        is_eos.int().argmax(dim=1) + 1,
        torch.full_like(is_eos[:, 0], is_eos.size(1), dtype=torch.long),
    )
    return [row[:n].tolist() for row, n in zip(completion_ids.cpu(), lengths.cpu().tolist(), strict=True)]


def target_token_logps(
    model: Any,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    target_ids: torch.Tensor,
    target_mask: torch.Tensor,
) -> torch.Tensor:
    """
    Per-token log π(target | prompt) with the model's plain forward (no temperature, no fused head), in float32.

    Args:
        model: A causal LM accepting `logits_to_keep`.
        prompt_ids, prompt_mask (`torch.Tensor` of shape `(B, P)`): Left-padded prompts.
        target_ids, target_mask (`torch.Tensor` of shape `(B, T)`): Right-padded targets.

    Returns:
        `torch.Tensor` of shape `(B, T)` (padded positions hold the log-prob of the pad token; mask them).
    """
    input_ids = torch.cat([prompt_ids, target_ids], dim=1)
    attention_mask = torch.cat([prompt_mask, target_mask], dim=1)
    length = target_ids.size(1)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=length + 1).logits
    logits = logits[:, -length - 1 : -1].float()
    return torch.gather(F.log_softmax(logits, dim=-1), 2, target_ids.unsqueeze(-1)).squeeze(-1)


# ---------------------------------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------------------------------


def _fsync_directory(directory: str) -> None:
    """Best effort: makes a rename in `directory` durable (not possible on every platform or file system)."""
    with contextlib.suppress(OSError, AttributeError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def atomic_write(path: str | os.PathLike, writer: Callable[[str], None]) -> None:
    """
    Writes a file atomically: `writer(temporary_path)` writes a temporary file in the destination's folder, which is
    flushed to disk and then replaces `path` with `os.replace` (atomic within one file system). Readers see the
    previous file or the new one, never a partial file.

    If `writer` (or the flush) raises, `path` keeps its previous content, the temporary file is removed and the error
    propagates. If the process is killed mid-write, `path` keeps its previous content and a hidden `.<name>.*.tmp` file
    may remain beside it.

    Args:
        path (`str` or `os.PathLike`):
            The destination file. Its folder is created if needed.
        writer (`Callable[[str], None]`):
            Writes the whole content to the path it is given (e.g. `lambda tmp: figure.savefig(tmp, format="png")`).
            The temporary name does not end with the destination's extension: pass formats explicitly.

    Example:

    ```python
    from adagrpo_trl.utils import atomic_write

    atomic_write("model.safetensors", lambda tmp: save_file(state_dict, tmp))
    ```
    """
    path = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(path)
    os.makedirs(directory, exist_ok=True)
    while True:
        temporary = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
        try:  # created like a regular file (0o666 minus the umask), unlike tempfile.mkstemp's 0o600
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        writer(temporary)
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Writes `text` to `path` atomically (see [`atomic_write`])."""

    def write(temporary: str) -> None:
        with open(temporary, "w", encoding=encoding) as file:
            file.write(text)

    atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike, obj: Any, **dumps_kwargs: Any) -> None:
    """
    Writes `obj` as JSON (UTF-8, newline-terminated) to `path` atomically (see [`atomic_write`]). `dumps_kwargs` go to
    `json.dumps` (e.g. `indent=2`, `default=str`); the object is serialised before anything is written, so an
    unserialisable object leaves no trace.
    """
    atomic_write_text(path, json.dumps(obj, **dumps_kwargs) + "\n")


def atomic_write_dir(path: str | os.PathLike, writer: Callable[[str], None]) -> None:
    """
    Writes a folder atomically enough for a kill at any time to leave a complete folder: `writer(staging_path)` fills
    a hidden temporary sibling folder, which then takes the place of `path` by two renames (`path` →
    `.<name>.old`, staging → `path`), after which the old folder is deleted.

    If `writer` raises, `path` is untouched and the staging folder is removed. A kill while `writer` runs leaves `path`
    untouched (and a hidden `.<name>.*.tmp` folder). A kill between the two renames (microseconds) leaves the previous
    folder complete at `.<name>.old`; the next `atomic_write_dir` to the same `path` puts it back first.

    Args:
        path (`str` or `os.PathLike`):
            The destination folder.
        writer (`Callable[[str], None]`):
            Writes the folder's whole content into the (existing, empty) folder it is given.
    """
    path = os.path.abspath(os.fspath(path))
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    previous = os.path.join(parent, f".{name}.old")
    if not os.path.exists(path) and os.path.isdir(previous):
        os.replace(previous, path)  # an earlier swap was interrupted between its two renames
    staging = tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=parent)
    os.chmod(staging, 0o777 & ~_umask())
    try:
        writer(staging)
        if os.path.exists(path):
            shutil.rmtree(previous, ignore_errors=True)
            os.replace(path, previous)
            os.replace(staging, path)
            shutil.rmtree(previous, ignore_errors=True)
        else:
            os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_directory(parent)


def _umask() -> int:
    """The process umask, read without changing it where the platform allows (Linux), else assumed to be 0o022."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    return 0o022
