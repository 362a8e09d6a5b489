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
Semantic IDs (SIDs) from item features: residual k-means codes plus a dedup level.

Level 0 clusters the item features with k-means; each further level clusters the residuals (feature minus the centroid
of every earlier level), so similar items share SID prefixes. Residual codes alone collide (two items with the same
codes at every level), so a last *dedup* level numbers the items of each collision group `0, 1, 2, ...` (in catalog
order) and every SID is unique. The collision rate before dedup and the code usage of every level are reported, the
two usual symptoms of a bad tokenizer (notes/genrec-pitfalls.md).

Built-in features: TF-IDF of item text reduced with truncated SVD ([`item_text_features`]), item-item co-occurrence
within user sequences reduced with truncated SVD ([`cooccurrence_features`]), and both concatenated
([`default_item_features`]). Any `(num_items, dim)` matrix works as well, e.g. embeddings from a file
([`load_item_embeddings`]); [`build_item_features`] mixes the sources named by a spec such as `"text+cooccurrence"`.
[`~adagrpo_trl.sid_report.sid_quality_report`] says how good the resulting SIDs are.
"""

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from tqdm.auto import tqdm

from .sid import codes_to_sids, sid_vocabulary  # codes_to_sids is re-exported: it lived here before


logger = logging.getLogger(__name__)

MINIBATCH_THRESHOLD = 50_000  # catalogs larger than this use MiniBatchKMeans


@dataclass
class SemanticIDResult:
    """
    Semantic IDs of a catalog, from [`build_semantic_ids`].

    Args:
        item_ids (`list[str]`):
            The item ids, in the order of the feature rows.
        codes (`np.ndarray` of shape `(num_items, num_levels + 1)`):
            Integer codes; the last column is the dedup level. Every row is distinct.
        codebook_sizes (`list[int]`):
            The codebook size of each column (the dedup column's size is the largest collision group), i.e. the number
            of SID tokens each level needs in the vocabulary.
        collision_rate_before_dedup (`float`):
            Fraction of items that the residual codes alone do not identify: `1 - (#distinct residual code tuples) /
            num_items`, i.e. the fraction of items with a non-zero dedup code.
        code_usage (`list[float]`):
            Per residual level, the fraction of its codebook that some item uses (1.0 = no dead codes).
        num_items (`int`):
            The catalog size.
    """

    item_ids: list[str]
    codes: np.ndarray
    codebook_sizes: list[int]
    collision_rate_before_dedup: float
    code_usage: list[float]
    num_items: int

    @property
    def num_levels(self) -> int:
        """Number of SID levels, dedup level included."""
        return int(self.codes.shape[1])

    def sids(self) -> list[str]:
        """The SID string of each item, e.g. `"<a_3><b_0><c_7><d_0>"`."""
        return codes_to_sids(self.codes)

    def item_to_sid(self) -> dict[str, str]:
        """Item id -> SID string."""
        return dict(zip(self.item_ids, self.sids(), strict=True))

    def sid_tokens(self) -> list[str]:
        """Every SID token the catalog's codebooks need, level by level (for a tokenizer's vocabulary)."""
        return sid_vocabulary(self.codebook_sizes)

    def to_catalog(self):
        """The [`~adagrpo_trl.catalog.ItemCatalog`] of these SIDs (`ItemCatalog.from_codes(item_ids, codes)`)."""
        from .catalog import ItemCatalog

        return ItemCatalog.from_codes(self.item_ids, self.codes)

    def summary(self) -> dict[str, object]:
        """A JSON-friendly summary for logs and reports."""
        return {
            "num_items": self.num_items,
            "num_levels": self.num_levels,
            "codebook_sizes": list(self.codebook_sizes),
            "collision_rate_before_dedup": self.collision_rate_before_dedup,
            "code_usage": list(self.code_usage),
            "max_dedup_code": int(self.codes[:, -1].max()) if self.num_items else 0,
        }


def default_codebook_size(num_items: int, num_levels: int, factor: float = 2.0) -> int:
    """
    `ceil(factor * num_items ** (1 / num_levels))` clipped to `[2, 256]`.

    With `factor=1` the residual levels have about as many cells as items, and k-means leaves most items colliding
    (63% on MovieLens-100K with 3 levels of 12 codes, 34% with 24); `factor=2` gives `2 ** num_levels` times more
    cells than items, so the dedup level stays small, at the cost of a few more SID tokens.
    """
    if num_items < 1 or num_levels < 1:
        raise ValueError(f"num_items and num_levels must be positive, got {num_items} and {num_levels}.")
    if factor <= 0:
        raise ValueError(f"factor must be positive, got {factor}.")
    # round before ceil so that exact powers (e.g. 1000 ** (1/3)) do not become one too large
    return int(min(256, max(2, math.ceil(round(factor * num_items ** (1.0 / num_levels), 9)))))


def _check_features(features: np.ndarray, name: str = "features") -> np.ndarray:
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (num_items, dim), got shape {features.shape}.")
    if features.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 items): at least one item is needed.")
    if features.shape[1] == 0:
        raise ValueError(f"{name} has 0 columns: each item needs at least one feature.")
    if not (np.issubdtype(features.dtype, np.floating) or np.issubdtype(features.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric, got dtype {features.dtype}.")
    features = features.astype(np.float64)
    finite = np.isfinite(features)
    if not finite.all():
        row, column = (int(index) for index in np.argwhere(~finite)[0])
        raise ValueError(
            f"{name} has a non-finite value {features[row, column]} at row {row}, column {column} "
            f"({int((~finite.all(axis=1)).sum())} row(s) affected)."
        )
    return features


def _check_item_ids(item_ids: Sequence[str], num_rows: int) -> list[str]:
    item_ids = list(item_ids)
    if len(item_ids) != num_rows:
        raise ValueError(f"features has {num_rows} rows but item_ids has {len(item_ids)} ids; they must match.")
    first_seen: dict[str, int] = {}
    for index, item_id in enumerate(item_ids):
        if not isinstance(item_id, str):
            raise ValueError(f"item_ids must be strings, got {type(item_id).__name__} {item_id!r} at index {index}.")
        if item_id in first_seen:
            raise ValueError(f"Duplicate item id {item_id!r} at index {index} (first at index {first_seen[item_id]}).")
        first_seen[item_id] = index
    return item_ids


def _kmeans(data: np.ndarray, num_clusters: int, seed: int, n_init: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and centroids of `data` with at most `num_clusters` clusters (fewer if there are fewer distinct rows)."""
    distinct = np.unique(data, axis=0)
    if len(distinct) <= num_clusters:
        # each distinct point is its own cluster: k-means would only warn and return duplicate centroids
        _, labels = np.unique(data, axis=0, return_inverse=True)
        return labels.reshape(-1).astype(np.int64), distinct
    if len(data) > MINIBATCH_THRESHOLD:
        model = MiniBatchKMeans(
            n_clusters=num_clusters, random_state=seed, n_init=n_init, batch_size=4096, max_iter=100
        )
    else:
        model = KMeans(n_clusters=num_clusters, random_state=seed, n_init=n_init)
    labels = model.fit_predict(data)
    return labels.astype(np.int64), model.cluster_centers_


def build_semantic_ids(
    features: np.ndarray,
    item_ids: Sequence[str],
    num_levels: int = 3,
    codebook_size: int | None = None,
    seed: int = 0,
    n_init: int = 4,
) -> SemanticIDResult:
    """
    Builds semantic IDs with residual k-means and a dedup level.

    Deterministic: the same features, ids and `seed` give the same codes (k-means of level `l` uses
    `random_state=seed + l`). Catalogs with more than 50,000 items use `MiniBatchKMeans`.

    Args:
        features (`np.ndarray` of shape `(num_items, dim)`):
            Item features, finite. Scale matters (k-means is Euclidean): L2-normalise rows or blocks first, as
            [`default_item_features`] does.
        item_ids (`Sequence[str]`):
            The id of each row, distinct strings.
        num_levels (`int`, *optional*, defaults to `3`):
            Residual k-means levels (the dedup level comes on top), in `[1, 25]`.
        codebook_size (`int`, *optional*):
            Codes per residual level, at least 2. Defaults to `ceil(2 * num_items ** (1 / num_levels))` clipped to
            `[2, 256]` ([`default_codebook_size`]).
        seed (`int`, *optional*, defaults to `0`):
            Seed of the k-means initialisation.
        n_init (`int`, *optional*, defaults to `4`):
            k-means restarts per level (the best inertia is kept).

    Returns:
        [`SemanticIDResult`]: codes of shape `(num_items, num_levels + 1)`, all rows distinct.

    Raises:
        `ValueError`: empty or non-finite features (naming the first bad row), a row count that differs from
        `len(item_ids)`, duplicate or non-string item ids (naming the id), or bad `num_levels`/`codebook_size`.
    """
    if not isinstance(num_levels, int) or not 1 <= num_levels <= 25:
        raise ValueError(
            f"num_levels must be an integer in [1, 25] (one more level is added for dedup), got {num_levels!r}."
        )
    features = _check_features(features)
    item_ids = _check_item_ids(item_ids, features.shape[0])
    num_items = features.shape[0]
    if codebook_size is None:
        codebook_size = default_codebook_size(num_items, num_levels)
    elif not isinstance(codebook_size, int) or isinstance(codebook_size, bool) or codebook_size < 2:
        raise ValueError(
            "codebook_size must be an integer >= 2 (a single code per level tells no items apart), "
            f"got {codebook_size!r}."
        )

    residual = features.copy()
    codes = np.zeros((num_items, num_levels + 1), dtype=np.int64)
    code_usage = []
    for level in tqdm(range(num_levels), desc="Residual k-means", disable=num_items < 10_000):
        labels, centroids = _kmeans(residual, codebook_size, seed + level, n_init)
        codes[:, level] = labels
        residual = residual - centroids[labels]
        code_usage.append(len(np.unique(labels)) / codebook_size)

    # dedup level: the rank of each item within its group of identical residual codes, in catalog order
    _, group, counts = np.unique(codes[:, :num_levels], axis=0, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    order = np.argsort(group, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    dedup = np.empty(num_items, dtype=np.int64)
    dedup[order] = np.arange(num_items) - np.repeat(starts, counts)
    codes[:, num_levels] = dedup
    collision_rate = 1.0 - len(counts) / num_items
    result = SemanticIDResult(
        item_ids=item_ids,
        codes=codes,
        codebook_sizes=[codebook_size] * num_levels + [int(counts.max())],
        collision_rate_before_dedup=float(collision_rate),
        code_usage=code_usage,
        num_items=num_items,
    )
    logger.info(
        "Semantic IDs: %d items, %d levels x %d codes + dedup (max group %d), collision rate before dedup %.4f, "
        "code usage %s.",
        num_items,
        num_levels,
        codebook_size,
        int(counts.max()),
        collision_rate,
        [round(usage, 3) for usage in code_usage],
    )
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Built-in item features
# ---------------------------------------------------------------------------------------------------------------------


def _svd(matrix: sparse.spmatrix | np.ndarray, dim: int, seed: int) -> np.ndarray:
    """Truncated SVD to at most `dim` components (fewer when the matrix is smaller), scaled by the singular values."""
    num_rows, num_columns = matrix.shape
    components = min(dim, num_rows - 1, num_columns - 1)
    if components < 1:  # too small to reduce: return the matrix itself, densified and cut to `dim` columns
        dense = matrix.toarray() if sparse.issparse(matrix) else np.asarray(matrix)
        return dense[:, :dim].astype(np.float64)
    svd = TruncatedSVD(n_components=components, algorithm="randomized", n_iter=7, random_state=seed)
    return svd.fit_transform(matrix).astype(np.float64)


def item_text_features(
    texts: Sequence[str], dim: int = 64, max_features: int = 50_000, min_df: int = 1, seed: int = 0
) -> np.ndarray:
    """
    TF-IDF of item text (e.g. `"Toy Story 1995 Animation Children's Comedy"`: title, year, genres) reduced with
    truncated SVD.

    Args:
        texts (`Sequence[str]`):
            One text per item. Empty texts get all-zero rows.
        dim (`int`, *optional*, defaults to `64`):
            Output dimension (smaller if the vocabulary or catalog is smaller).
        max_features (`int`, *optional*, defaults to `50000`):
            Vocabulary size cap of the TF-IDF.
        min_df (`int`, *optional*, defaults to `1`):
            Minimum number of items a word must appear in.
        seed (`int`, *optional*, defaults to `0`):
            Seed of the randomized SVD.

    Returns:
        `np.ndarray` of shape `(len(texts), <= dim)`.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: at least one item text is needed.")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"texts must be strings, got {type(text).__name__} {text!r} at index {index}.")
    vectorizer = TfidfVectorizer(
        lowercase=True, token_pattern=r"(?u)\b\w+\b", sublinear_tf=True, max_features=max_features, min_df=min_df
    )
    try:
        tfidf = vectorizer.fit_transform(texts)
    except ValueError as error:  # empty vocabulary
        raise ValueError(f"Could not build text features: {error} (are all item texts empty?).") from None
    return _svd(tfidf, dim, seed)


def cooccurrence_matrix(
    sequences: Sequence[Sequence[str]], item_ids: Sequence[str], window: int | None = 10
) -> sparse.csr_matrix:
    """
    Symmetric item-item co-occurrence counts: two interactions of one user count once per pair when at most `window`
    positions apart (`None`: anywhere in the sequence, quadratic in the sequence length).

    Raises:
        `ValueError`: if a sequence contains an item that is not in `item_ids` (naming it and the sequence).
    """
    if window is not None and window < 1:
        raise ValueError(f"window must be a positive integer or None, got {window!r}.")
    index = {item_id: position for position, item_id in enumerate(item_ids)}
    rows, columns = [], []
    for sequence_index, sequence in enumerate(tqdm(sequences, desc="Co-occurrence", disable=len(sequences) < 10_000)):
        try:
            positions = np.fromiter((index[item] for item in sequence), dtype=np.int64, count=len(sequence))
        except KeyError as error:
            raise ValueError(
                f"Sequence {sequence_index} contains item {error.args[0]!r}, which is not in item_ids."
            ) from None
        span = len(positions) - 1 if window is None else min(window, len(positions) - 1)
        for offset in range(1, span + 1):
            rows.append(positions[:-offset])
            columns.append(positions[offset:])
    num_items = len(index)
    if rows:
        rows_array, columns_array = np.concatenate(rows), np.concatenate(columns)
    else:
        rows_array = columns_array = np.zeros(0, dtype=np.int64)
    counts = sparse.coo_matrix(
        (np.ones(len(rows_array), dtype=np.float64), (rows_array, columns_array)), shape=(num_items, num_items)
    ).tocsr()
    counts = counts + counts.T
    counts.setdiag(0)  # an item repeated in a sequence does not co-occur with itself
    counts.eliminate_zeros()
    return counts


def cooccurrence_features(
    sequences: Sequence[Sequence[str]],
    item_ids: Sequence[str],
    dim: int = 64,
    window: int | None = 10,
    seed: int = 0,
) -> np.ndarray:
    """
    Collaborative item features: item-item co-occurrence within user sequences ([`cooccurrence_matrix`]),
    `log1p`-damped and row-normalised, reduced with truncated SVD.

    Pass *training* sequences (e.g. [`~adagrpo_trl.data.splits.LeaveOneOutSplit.train_sequences`]), not full
    ones: otherwise the SIDs encode co-occurrences with validation and test targets.

    Args:
        sequences (`Sequence[Sequence[str]]`):
            Item ids of each user, in order.
        item_ids (`Sequence[str]`):
            The catalog, in the order of the output rows. Items that never occur get all-zero rows.
        dim (`int`, *optional*, defaults to `64`):
            Output dimension (smaller if the catalog is smaller).
        window (`int` or `None`, *optional*, defaults to `10`):
            Co-occurrence window in positions.
        seed (`int`, *optional*, defaults to `0`):
            Seed of the randomized SVD.

    Returns:
        `np.ndarray` of shape `(len(item_ids), <= dim)`.
    """
    item_ids = list(item_ids)
    if not item_ids:
        raise ValueError("item_ids is empty: at least one item is needed.")
    counts = cooccurrence_matrix(sequences, item_ids, window).astype(np.float64)
    counts.data = np.log1p(counts.data)
    norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).reshape(-1))
    norms[norms == 0] = 1.0
    counts = sparse.diags(1.0 / norms) @ counts
    return _svd(counts.tocsr(), dim, seed)


def _normalize_rows(block: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(block, axis=1, keepdims=True)
    return block / np.where(norms == 0, 1.0, norms)


def default_item_features(
    item_ids: Sequence[str],
    texts: Sequence[str] | None = None,
    sequences: Sequence[Sequence[str]] | None = None,
    text_dim: int = 32,
    cooccurrence_dim: int = 32,
    text_weight: float = 1.0,
    cooccurrence_weight: float = 1.0,
    window: int | None = 10,
    seed: int = 0,
) -> np.ndarray:
    """
    The built-in item features: text ([`item_text_features`]) and co-occurrence ([`cooccurrence_features`]) blocks,
    each row-L2-normalised and multiplied by its weight, concatenated. Either block may be left out, not both.

    Args:
        item_ids (`Sequence[str]`):
            The catalog.
        texts (`Sequence[str]`, *optional*):
            One text per item, aligned with `item_ids`.
        sequences (`Sequence[Sequence[str]]`, *optional*):
            Training sequences of item ids.
        text_dim (`int`, *optional*, defaults to `32`):
            Text block dimension.
        cooccurrence_dim (`int`, *optional*, defaults to `32`):
            Co-occurrence block dimension.
        text_weight (`float`, *optional*, defaults to `1.0`):
            Weight of the text block.
        cooccurrence_weight (`float`, *optional*, defaults to `1.0`):
            Weight of the co-occurrence block.
        window (`int` or `None`, *optional*, defaults to `10`):
            Co-occurrence window.
        seed (`int`, *optional*, defaults to `0`):
            Seed of both SVDs.

    Returns:
        `np.ndarray` of shape `(len(item_ids), <= text_dim + cooccurrence_dim)`.
    """
    item_ids = list(item_ids)
    if texts is None and sequences is None:
        raise ValueError("default_item_features needs texts, sequences or both.")
    blocks = []
    if texts is not None:
        texts = list(texts)
        if len(texts) != len(item_ids):
            raise ValueError(f"texts has {len(texts)} entries but item_ids has {len(item_ids)}; they must match.")
        blocks.append(text_weight * _normalize_rows(item_text_features(texts, dim=text_dim, seed=seed)))
    if sequences is not None:
        blocks.append(
            cooccurrence_weight
            * _normalize_rows(
                cooccurrence_features(sequences, item_ids, dim=cooccurrence_dim, window=window, seed=seed)
            )
        )
    return np.concatenate(blocks, axis=1)


# ---------------------------------------------------------------------------------------------------------------------
# Feature sources: which blocks make up the item features, and user-supplied embeddings
# ---------------------------------------------------------------------------------------------------------------------

FEATURE_SOURCES = ("text", "cooccurrence", "embeddings")
DEFAULT_FEATURE_SOURCES = "text+cooccurrence"


def parse_feature_sources(spec: str) -> tuple[str, ...]:
    """
    The sources of a feature spec: names of [`FEATURE_SOURCES`] joined with `+`, e.g. `"text+cooccurrence"`.

    Raises:
        `ValueError`: an empty spec, an unknown or repeated source (naming it and the valid ones).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(
            f"The SID feature sources must be a non-empty string such as 'text+cooccurrence', got {spec!r}."
        )
    sources = tuple(part.strip() for part in spec.split("+"))
    valid = ", ".join(repr(name) for name in FEATURE_SOURCES)
    for part in sources:
        if part not in FEATURE_SOURCES:
            raise ValueError(
                f"Unknown SID feature source {part!r} in {spec!r}; valid sources are {valid}, or a '+' mix of them "
                "such as 'text+cooccurrence'."
            )
    if len(set(sources)) != len(sources):
        raise ValueError(f"The SID feature sources {spec!r} name a source twice.")
    return sources


def load_item_embeddings(
    path: str | os.PathLike, item_ids_path: str | os.PathLike | None = None
) -> tuple[np.ndarray, list[str]]:
    """
    Item embeddings from a file: a `.npy` matrix with its item ids in a text file (one id per line, in row order), or
    a CSV/Parquet table with an `item_id` column and either one column of vectors (lists) or numeric columns.

    Args:
        path (`str` or `os.PathLike`):
            `.npy`, `.csv` or `.parquet` file.
        item_ids_path (`str` or `os.PathLike`, *optional*):
            `.npy` only: the ids file; defaults to the same path with the suffix `.txt` (`emb.npy` -> `emb.txt`).

    Returns:
        `tuple[np.ndarray, list[str]]`: the `(num_items, dim)` matrix and the item id of each row.

    Raises:
        `FileNotFoundError`: a missing file. `ValueError`: an unknown suffix, row/id counts that differ, no
        `item_id` column or non-numeric vectors.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No item embeddings file at {path}.")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        ids_path = Path(item_ids_path) if item_ids_path is not None else path.with_suffix(".txt")
        if not ids_path.exists():
            raise FileNotFoundError(f"{path} needs its item ids, one per line, in {ids_path}: no such file.")
        matrix = np.load(path, allow_pickle=False)
        item_ids = [line.strip() for line in ids_path.read_text().splitlines() if line.strip()]
        if matrix.ndim != 2 or matrix.shape[0] != len(item_ids):
            raise ValueError(
                f"{path} has shape {matrix.shape} but {ids_path} lists {len(item_ids)} item ids; one row per id."
            )
        return matrix, item_ids
    if suffix == ".csv":
        table = pd.read_csv(path)
    elif suffix in (".parquet", ".pq"):
        table = pd.read_parquet(path)
    else:
        raise ValueError(f"Item embeddings must be a .npy, .csv or .parquet file, got {path}.")
    if "item_id" not in table.columns:
        raise ValueError(f"{path} lacks the column 'item_id'; got {list(table.columns)}.")
    vectors = table.drop(columns="item_id")
    if vectors.shape[1] == 1 and vectors.iloc[:, 0].map(lambda value: isinstance(value, list | np.ndarray)).all():
        matrix = np.stack([np.asarray(value, dtype=np.float64) for value in vectors.iloc[:, 0]])
    else:
        non_numeric = [column for column in vectors.columns if not pd.api.types.is_numeric_dtype(vectors[column])]
        if non_numeric or vectors.shape[1] == 0:
            raise ValueError(
                f"{path}: the columns besides 'item_id' must be numeric (or one column of vectors), "
                f"got non-numeric {non_numeric or list(vectors.columns)}."
            )
        matrix = vectors.to_numpy(dtype=np.float64)
    return matrix, table["item_id"].astype(str).tolist()


def build_item_features(
    item_ids: Sequence[str],
    sources: str = DEFAULT_FEATURE_SOURCES,
    texts: Sequence[str] | None = None,
    sequences: Sequence[Sequence[str]] | None = None,
    embeddings: np.ndarray | None = None,
    embedding_item_ids: Sequence[str] | None = None,
    cooccurrence_weight: float = 1.0,
    text_dim: int = 32,
    cooccurrence_dim: int = 32,
    window: int | None = 10,
    seed: int = 0,
) -> np.ndarray:
    """
    Item features from the sources a spec names: each block row-L2-normalised (user-supplied embeddings alone are used
    as given), the co-occurrence block multiplied by `cooccurrence_weight` (the others by 1), concatenated in the
    order text, co-occurrence, embeddings. `"text+cooccurrence"` with `cooccurrence_weight=1` is
    [`default_item_features`].

    Args:
        item_ids (`Sequence[str]`):
            The catalog, in the order of the output rows.
        sources (`str`, *optional*, defaults to `"text+cooccurrence"`):
            `"text"`, `"cooccurrence"`, `"embeddings"` or a `+` mix ([`parse_feature_sources`]).
        texts (`Sequence[str]`, *optional*):
            One text per item (needed by `"text"`).
        sequences (`Sequence[Sequence[str]]`, *optional*):
            Training sequences (needed by `"cooccurrence"`).
        embeddings (`np.ndarray`, *optional*):
            User-supplied item vectors (needed by `"embeddings"`), one row per id of `embedding_item_ids`, which must
            cover the catalog (extra rows are ignored).
        embedding_item_ids (`Sequence[str]`, *optional*):
            The item id of each row of `embeddings`.
        cooccurrence_weight (`float`, *optional*, defaults to `1.0`):
            Weight of the co-occurrence block in a mix.
        text_dim, cooccurrence_dim, window, seed:
            As in [`default_item_features`].

    Returns:
        `np.ndarray` of shape `(len(item_ids), d)`.

    Raises:
        `ValueError`: an unknown source (naming it), a source whose input is missing, embeddings that miss an item.
    """
    parsed = parse_feature_sources(sources)
    if not cooccurrence_weight > 0:
        raise ValueError(f"cooccurrence_weight must be positive, got {cooccurrence_weight!r}.")
    item_ids = list(item_ids)
    blocks = []
    if "text" in parsed:
        if texts is None:
            raise ValueError(f"SID feature source 'text' (in {sources!r}) needs item texts, and none were given.")
        blocks.append(default_item_features(item_ids, texts=texts, text_dim=text_dim, seed=seed))
    if "cooccurrence" in parsed:
        if sequences is None:
            raise ValueError(f"SID feature source 'cooccurrence' (in {sources!r}) needs training sequences.")
        blocks.append(
            cooccurrence_weight
            * default_item_features(
                item_ids, sequences=sequences, cooccurrence_dim=cooccurrence_dim, window=window, seed=seed
            )
        )
    if "embeddings" in parsed:
        if embeddings is None or embedding_item_ids is None:
            raise ValueError(
                f"SID feature source 'embeddings' (in {sources!r}) needs embeddings and their item ids "
                "(e.g. from load_item_embeddings)."
            )
        matrix = _check_features(embeddings, "embeddings")
        row_of = {str(item): row for row, item in enumerate(embedding_item_ids)}
        if len(row_of) != matrix.shape[0]:
            raise ValueError(
                f"embeddings has {matrix.shape[0]} rows but {len(row_of)} distinct item ids; one row per id."
            )
        uncovered = [item for item in item_ids if item not in row_of]
        if uncovered:
            raise ValueError(f"{len(uncovered)} item(s) of the log have no feature row, e.g. {uncovered[0]!r}.")
        block = matrix[[row_of[item] for item in item_ids]]
        blocks.append(_normalize_rows(block) if len(parsed) > 1 else block)  # alone: used as given
    return np.concatenate(blocks, axis=1)
