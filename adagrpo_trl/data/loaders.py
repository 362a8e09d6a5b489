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
Interaction-log loaders: RecBole atomic files (`.inter`, `.item`) and CSV/Parquet logs, normalised to one schema.

Every loader returns a log with exactly the columns `user_id` (`str`), `item_id` (`str`) and `timestamp`
(`float64`, seconds), in the order of the source file (that order breaks timestamp ties downstream), and, where the
source has item text, an item table with `item_id` (`str`), `text` (`str`) and the source's item fields.

Errors are `ValueError`s that name the file, the line (1-based, header included), the field and the value. Fields and
columns other than the required ones (e.g. `rating`) are ignored. Files must be UTF-8: invalid bytes raise an error
naming the line and the byte offset (no silent replacement characters, which would change item texts and ids).
"""

import bz2
import csv
import gzip
import io
import logging
import lzma
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


logger = logging.getLogger(__name__)

LOG_COLUMNS = ["user_id", "item_id", "timestamp"]
ATOMIC_TYPES = ("token", "token_seq", "float", "float_seq")


def _decode_utf8(data: bytes, source: str) -> str:
    """Decodes UTF-8 (a BOM is dropped), naming the line of the first invalid byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ValueError(
            f"{source}: line {line} is not valid UTF-8 (byte {data[error.start : error.start + 1]!r} at file offset "
            f"{error.start}). Re-encode the file as UTF-8."
        ) from None


def text_column_as_str(
    values: pd.Series,
    source: str,
    field: str,
    line_numbers: Sequence[int] | None = None,
    keys: Sequence[str] | None = None,
) -> list[str]:
    """
    A text column as Python strings: missing values become `""`, `bytes` (e.g. a Parquet binary column) are decoded as
    strict UTF-8, anything else goes through `str`.

    Args:
        values (`pd.Series`):
            The column.
        source (`str`):
            The file (or table) name used in error messages.
        field (`str`):
            The column name used in error messages.
        line_numbers (`Sequence[int]`, *optional*):
            The file line of each value, for the message.
        keys (`Sequence[str]`, *optional*):
            An id of each value (e.g. the item id), for the message; the row index is named otherwise.

    Raises:
        `ValueError`: for bytes that are not UTF-8, naming `source`, the row, `field` and the byte offset.
    """
    texts = []
    for row, value in enumerate(values.tolist()):
        if isinstance(value, bytes | bytearray):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError as error:
                if line_numbers is not None:
                    where = f"line {line_numbers[row]}"
                elif keys is not None:
                    where = f"row {row} (item {keys[row]!r})"
                else:
                    where = f"row {row}"
                raise ValueError(
                    f"{source}: {where}: field {field!r} is not valid UTF-8 (byte {value[error.start : error.start + 1]!r}"
                    f" at offset {error.start} of the value). Re-encode it as UTF-8."
                ) from None
        elif value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            value = ""
        texts.append(value if isinstance(value, str) else str(value))
    return texts


# ---------------------------------------------------------------------------------------------------------------------
# RecBole atomic files
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class AtomicFile:
    """
    A parsed RecBole atomic file.

    Args:
        frame (`pd.DataFrame`):
            One column per field, named without the type suffix; `float` fields as `float64` (an empty value is
            `NaN`), every other type as `str`.
        field_types (`dict[str, str]`):
            The type of each field (`"token"`, `"token_seq"`, `"float"` or `"float_seq"`).
        line_numbers (`np.ndarray`):
            The file line (1-based) of each row, for error messages.
        source (`str`):
            The file name used in error messages.
    """

    frame: pd.DataFrame
    field_types: dict[str, str]
    line_numbers: np.ndarray
    source: str


def parse_atomic(data: bytes, source: str = "<bytes>") -> AtomicFile:
    """
    Parses a RecBole atomic file (`.inter`, `.item`, `.user`, ...): a tab-separated header of `name:type` fields
    (types `token`, `token_seq`, `float`, `float_seq`) followed by one record per line. `\\n` and `\\r\\n` line ends are
    both accepted; blank lines are skipped.

    Args:
        data (`bytes`):
            The file content, UTF-8.
        source (`str`, *optional*, defaults to `"<bytes>"`):
            The name used in error messages (a path or an archive member).

    Returns:
        [`AtomicFile`]: the records (`float` fields as `float64`, others as `str`), field types and line numbers.

    Raises:
        `ValueError`: empty file, malformed header, a record with the wrong number of fields, an unparsable `float`
        value or invalid UTF-8, naming `source`, the line, the field and the value.
    """
    text = _decode_utf8(data, source)
    lines = text.split("\n")
    if not text.strip():
        raise ValueError(f"{source}: the file is empty (expected a header line of 'name:type' fields).")
    header_index = next(index for index, line in enumerate(lines) if line.strip())
    names, types = [], []
    for field in lines[header_index].rstrip("\r").split("\t"):
        name, sep, kind = field.partition(":")
        if not sep or not name or kind not in ATOMIC_TYPES:
            raise ValueError(
                f"{source}: line {header_index + 1}: malformed header field {field!r}; expected 'name:type' with type "
                f"one of {list(ATOMIC_TYPES)}."
            )
        if name in names:
            raise ValueError(f"{source}: line {header_index + 1}: duplicate header field {name!r}.")
        names.append(name)
        types.append(kind)

    rows, line_numbers = [], []
    for index in range(header_index + 1, len(lines)):
        line = lines[index].rstrip("\r")
        if not line.strip():
            continue
        values = line.split("\t")
        if len(values) != len(names):
            raise ValueError(
                f"{source}: line {index + 1}: expected {len(names)} tab-separated fields {names}, got {len(values)}: "
                f"{line[:200]!r}."
            )
        rows.append(values)
        line_numbers.append(index + 1)
    if not rows:
        raise ValueError(f"{source}: the file has a header but no records.")

    columns = {}
    for position, (name, kind) in enumerate(zip(names, types, strict=True)):
        raw = [row[position] for row in rows]
        if kind == "float":
            try:  # fast path: every value is a number
                parsed = np.asarray(raw, dtype=np.float64)
                if not np.isnan(parsed).any():
                    columns[name] = parsed
                    continue
            except ValueError:
                pass
            values = pd.to_numeric(pd.Series(raw, dtype=object).replace("", np.nan), errors="coerce")
            bad = values.isna().to_numpy() & (np.asarray(raw, dtype=object) != "")
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"{source}: line {line_numbers[row]}: field {name!r} ({kind}) has unparsable value {raw[row]!r}."
                )
            columns[name] = values.astype("float64").to_numpy()
        else:
            columns[name] = raw
    return AtomicFile(
        frame=pd.DataFrame(columns),
        field_types=dict(zip(names, types, strict=True)),
        line_numbers=np.asarray(line_numbers, dtype=np.int64),
        source=source,
    )


def read_atomic_file(path: str | os.PathLike) -> AtomicFile:
    """Reads a RecBole atomic file from disk; see [`parse_atomic`]."""
    path = Path(path)
    return parse_atomic(path.read_bytes(), str(path))


def _require_fields(atomic: AtomicFile, fields: Sequence[str]) -> None:
    missing = [field for field in fields if field not in atomic.frame.columns]
    if missing:
        raise ValueError(
            f"{atomic.source}: missing required field(s) {missing}; the header has "
            f"{[f'{name}:{kind}' for name, kind in atomic.field_types.items()]}."
        )


def normalize_atomic_log(inter: AtomicFile) -> pd.DataFrame:
    """
    Turns a parsed `.inter` file into the normalised log (`user_id`, `item_id`, `timestamp`); other fields (e.g.
    `rating`) are ignored.

    Raises:
        `ValueError`: if `user_id`, `item_id` or `timestamp` is missing, or a row has an empty id or timestamp.
    """
    _require_fields(inter, ["user_id", "item_id", "timestamp"])
    frame, source, line_numbers = inter.frame, inter.source, inter.line_numbers
    timestamp = frame["timestamp"]
    if not pd.api.types.is_float_dtype(timestamp):
        timestamp = _parse_timestamps(timestamp, source, "timestamp", line_numbers)
    for name in ("user_id", "item_id"):
        empty = (frame[name] == "").to_numpy()
        if empty.any():
            row = int(np.flatnonzero(empty)[0])
            raise ValueError(f"{source}: line {line_numbers[row]}: field {name!r} is empty.")
    timestamp = timestamp.to_numpy(dtype="float64")
    missing = np.isnan(timestamp)
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise ValueError(f"{source}: line {line_numbers[row]}: field 'timestamp' is empty.")
    return pd.DataFrame(
        {
            "user_id": frame["user_id"].astype(str).to_numpy(),
            "item_id": frame["item_id"].astype(str).to_numpy(),
            "timestamp": timestamp,
        }
    )


def _render(value: object) -> str:
    """Raw text of an item field; integral floats (e.g. `release_year:float`) render as `"1995"`, not `"1995.0"`."""
    if isinstance(value, float):
        if np.isnan(value):
            return ""
        return str(int(value)) if value.is_integer() else str(value)
    return str(value)


def normalize_atomic_items(item: AtomicFile) -> pd.DataFrame:
    """
    Turns a parsed `.item` file into the item table: `item_id`, `text` (every other field's value joined with spaces
    in header order, e.g. `"Toy Story 1995 Animation Children's Comedy"`) and the fields themselves.

    Raises:
        `ValueError`: if `item_id` is missing or empty, or an item id appears twice (naming the id and both lines).
    """
    _require_fields(item, ["item_id"])
    frame, source, line_numbers = item.frame, item.source, item.line_numbers
    first_line: dict[str, int] = {}
    for row, item_id in enumerate(frame["item_id"].tolist()):
        if item_id == "":
            raise ValueError(f"{source}: line {line_numbers[row]}: field 'item_id' is empty.")
        if item_id in first_line:
            raise ValueError(
                f"{source}: line {line_numbers[row]}: duplicate item id {item_id!r} (first at line "
                f"{first_line[item_id]})."
            )
        first_line[item_id] = int(line_numbers[row])
    others = [name for name in frame.columns if name != "item_id"]
    columns = [[_render(value) for value in frame[name].tolist()] for name in others]
    text = [" ".join(part for part in parts if part) for parts in zip(*columns, strict=True)] if others else []
    items = pd.DataFrame({"item_id": frame["item_id"].astype(str).to_numpy(), "text": text or [""] * len(frame)})
    for name in others:
        items[name] = frame[name].to_numpy()
    return items


def normalize_atomic_table(atomic: AtomicFile, key: str) -> pd.DataFrame:
    """
    A parsed attribute file (`.user`, or `.item` without the text column) as a table keyed by `key`, every value a
    string (see [`attribute_tokens`]).

    Raises:
        `ValueError`: if `key` is missing or empty, or a key appears twice (naming the value and both lines).
    """
    _require_fields(atomic, [key])
    frame, source, line_numbers = atomic.frame, atomic.source, atomic.line_numbers
    first_line: dict[str, int] = {}
    for row, value in enumerate(frame[key].astype(str).tolist()):
        if value == "":
            raise ValueError(f"{source}: line {line_numbers[row]}: field {key!r} is empty.")
        if value in first_line:
            raise ValueError(
                f"{source}: line {line_numbers[row]}: duplicate {key} {value!r} (first at line {first_line[value]})."
            )
        first_line[value] = int(line_numbers[row])
    return pd.DataFrame({name: [_render(v) for v in frame[name].tolist()] for name in frame.columns})


def attribute_tokens(
    table: pd.DataFrame | None, key: str, fields: Sequence[str], source: str = "the attribute table"
) -> dict[str, list[str]]:
    """
    Categorical side-feature tokens per row of an attribute table: `"<field>=<part>"` for every whitespace-separated
    part of each chosen field's value (a RecBole `token_seq` field such as `genre` gives several tokens, an empty
    value none).

    Args:
        table (`pd.DataFrame`):
            One row per user or item, with the `key` column.
        key (`str`):
            `"user_id"` or `"item_id"`.
        fields (`Sequence[str]`):
            The columns to use.
        source (`str`, *optional*):
            Named in errors.

    Raises:
        `ValueError`: for a missing table, or a field that is not a column (naming it and the columns there are).
    """
    fields = list(fields)
    if not fields:
        return {}
    if table is None:
        raise ValueError(f"Side-feature fields {fields} were asked for, but {source} is not available.")
    unknown = [name for name in fields if name not in table.columns or name == key]
    if unknown:
        known = [name for name in table.columns if name not in (key, "text")]
        raise ValueError(f"Unknown side-feature field(s) {unknown} in {source}; its fields are {known}.")
    tokens: dict[str, list[str]] = {}
    for row in table[[key, *fields]].astype(str).itertuples(index=False):
        tokens[row[0]] = [
            f"{name}={part}" for name, value in zip(fields, row[1:], strict=True) for part in value.split()
        ]
    return tokens


def check_known_items(
    log: pd.DataFrame,
    items: pd.DataFrame,
    unknown_items: str = "error",
    source: str = "<log>",
    line_numbers: Sequence[int] | None = None,
) -> pd.DataFrame:
    """
    Checks that every item of `log` is in `items`.

    Args:
        log (`pd.DataFrame`):
            The normalised log.
        items (`pd.DataFrame`):
            The item table (column `item_id`).
        unknown_items (`str`, *optional*, defaults to `"error"`):
            `"error"` raises a `ValueError` naming the first unknown item id and its line; `"drop"` removes those
            interactions and logs how many were dropped (at WARNING level).
        source (`str`, *optional*, defaults to `"<log>"`):
            The name used in messages.
        line_numbers (`Sequence[int]`, *optional*):
            The file line of each row of `log`, for the message (the row index is named otherwise).

    Returns:
        `pd.DataFrame`: `log`, possibly without the interactions with unknown items.
    """
    if unknown_items not in ("error", "drop"):
        raise ValueError(f"unknown_items must be 'error' or 'drop', got {unknown_items!r}.")
    known = log["item_id"].isin(set(items["item_id"].tolist())).to_numpy()
    if known.all():
        return log
    first = int(np.flatnonzero(~known)[0])
    if unknown_items == "error":
        where = f"line {line_numbers[first]}" if line_numbers is not None else f"row {first}"
        raise ValueError(
            f"{source}: {where}: item id {log['item_id'].iloc[first]!r} is not in the item table "
            f"({int((~known).sum())} interaction(s) with unknown items in total). Pass unknown_items='drop' to drop "
            "them."
        )
    logger.warning(
        "%s: dropped %d interaction(s) with items not in the item table (first: %r).",
        source,
        int((~known).sum()),
        log["item_id"].iloc[first],
    )
    return log.loc[known].reset_index(drop=True)


def load_recbole_atomic(
    inter: AtomicFile, item: AtomicFile | None = None, unknown_items: str = "error"
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """[`load_recbole`] on already parsed atomic files (e.g. archive members read with [`parse_atomic`])."""
    log = normalize_atomic_log(inter)
    items = None
    if item is not None:
        items = normalize_atomic_items(item)
        log = check_known_items(log, items, unknown_items, inter.source, inter.line_numbers)
    return log, items


def load_recbole(
    inter_path: str | os.PathLike, item_path: str | os.PathLike | None = None, unknown_items: str = "error"
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """
    Loads a RecBole dataset from atomic files.

    Args:
        inter_path (`str` or `os.PathLike`):
            The `.inter` file; it needs the fields `user_id`, `item_id` and `timestamp` (other fields, e.g. `rating`,
            are ignored: every interaction counts, whatever its rating).
        item_path (`str` or `os.PathLike`, *optional*):
            The `.item` file; it needs `item_id`. Every other field becomes part of the item text.
        unknown_items (`str`, *optional*, defaults to `"error"`):
            What to do with interactions whose item is not in the `.item` file: `"error"` (raise, naming the id and
            line) or `"drop"` (drop them, logging the count). Ignored without `item_path`.

    Returns:
        `tuple[pd.DataFrame, pd.DataFrame | None]`: the normalised log and the item table (`None` without
        `item_path`).
    """
    inter = read_atomic_file(inter_path)
    item = read_atomic_file(item_path) if item_path is not None else None
    return load_recbole_atomic(inter, item, unknown_items)


# ---------------------------------------------------------------------------------------------------------------------
# CSV / Parquet
# ---------------------------------------------------------------------------------------------------------------------


def _parse_timestamps(values: pd.Series, source: str, field: str, line_numbers: Sequence[int] | None) -> pd.Series:
    """
    Timestamps as float seconds: numbers are taken as they are (any unit, only their order matters downstream); if no
    value is numeric, values are parsed as dates (ISO 8601 and the like, naive ones taken as UTC) and converted to
    seconds since the epoch. Mixing numbers and dates, empty values and unparsable values raise.
    """

    def where(row: int) -> str:
        return f"line {line_numbers[row]}" if line_numbers is not None else f"row {row}"

    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numeric = values.astype("float64")
        bad = ~np.isfinite(numeric.to_numpy())
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{source}: {where(row)}: field {field!r} has invalid timestamp {values.iloc[row]!r}.")
        return numeric.reset_index(drop=True)
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values, utc=True)
        bad = parsed.isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{source}: {where(row)}: field {field!r} is empty.")
        return pd.Series((parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(), dtype="float64")

    strings = values.astype(object).where(values.notna(), "").astype(str).str.strip()
    empty = (strings == "").to_numpy()
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        raise ValueError(f"{source}: {where(row)}: field {field!r} is empty.")
    numeric = pd.to_numeric(strings, errors="coerce")
    is_number = numeric.notna().to_numpy() & np.isfinite(numeric.to_numpy(dtype="float64", na_value=np.nan))
    if is_number.all():
        return numeric.astype("float64").reset_index(drop=True)
    if is_number.any():  # a numeric column with a bad value: name that value
        row = int(np.flatnonzero(~is_number)[0])
        raise ValueError(
            f"{source}: {where(row)}: field {field!r} has unparsable timestamp {strings.iloc[row]!r} (the other values "
            "are numbers)."
        )
    parsed = pd.to_datetime(strings, errors="coerce", utc=True, format="mixed")
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{source}: {where(row)}: field {field!r} has unparsable timestamp {strings.iloc[row]!r} (expected a "
            "number or a date such as '2024-01-31T12:00:00')."
        )
    return pd.Series((parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(), dtype="float64")


def load_interactions(
    path: str | os.PathLike,
    user_column: str = "user",
    item_column: str = "item",
    timestamp_column: str = "timestamp",
    text_column: str | None = None,
    sep: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """
    Loads an interaction log from CSV/TSV (`.csv`, `.tsv`, anything else read as CSV; optionally `.gz`, `.bz2` or
    `.xz` compressed) or Parquet (`.parquet`, `.pq`). Columns other than the named ones are ignored. Text is strict
    UTF-8: a file (or a Parquet binary value) with invalid bytes is rejected, naming the line and byte offset, rather
    than decoded with replacement characters.

    Args:
        path (`str` or `os.PathLike`):
            The file. CSV files must be UTF-8 and have a header row.
        user_column (`str`, *optional*, defaults to `"user"`):
            The user column.
        item_column (`str`, *optional*, defaults to `"item"`):
            The item column.
        timestamp_column (`str`, *optional*, defaults to `"timestamp"`):
            The time column: numbers (any unit) or dates (ISO 8601 and the like; converted to seconds since the epoch).
        text_column (`str`, *optional*):
            An item-text column. The item table takes each item's first non-empty text.
        sep (`str`, *optional*):
            The CSV separator; defaults to a tab for `.tsv` and a comma otherwise.

    Returns:
        `tuple[pd.DataFrame, pd.DataFrame | None]`: the normalised log (`user_id`, `item_id`, `timestamp`) and, with
        `text_column`, the item table (`item_id`, `text`, in order of first appearance).

    Raises:
        `ValueError`: empty file, missing columns, empty ids, unparsable timestamps or invalid UTF-8, naming the file,
        the line (CSV; data rows start at line 2, assuming one record per line) or row (Parquet), the field and value.
    """
    path = Path(path)
    source = str(path)
    suffixes = [suffix.lower() for suffix in path.suffixes]
    is_parquet = any(suffix in (".parquet", ".pq") for suffix in suffixes)
    line_numbers = None
    if is_parquet:
        if path.stat().st_size == 0:
            raise ValueError(f"{source}: the file is empty.")
        frame = pd.read_parquet(path)
        if len(frame) == 0:
            raise ValueError(f"{source}: the file has no rows (columns: {list(frame.columns)}).")
    else:
        data = path.read_bytes()
        decompress = {".gz": gzip.decompress, ".bz2": bz2.decompress, ".xz": lzma.decompress}.get(
            suffixes[-1:][0] if suffixes else ""
        )
        if decompress is not None:
            data = decompress(data)
        text = _decode_utf8(data, source)
        if not text.strip():
            raise ValueError(f"{source}: the file is empty (expected a header row).")
        try:
            frame = pd.read_csv(
                io.StringIO(text),
                sep=sep or ("\t" if ".tsv" in suffixes else ","),
                dtype=str,
                keep_default_na=False,
                quoting=csv.QUOTE_MINIMAL,
            )
        except pd.errors.ParserError as error:
            raise ValueError(f"{source}: could not parse the file as CSV: {error}") from None
        if len(frame) == 0:
            raise ValueError(f"{source}: the file has a header but no rows (columns: {list(frame.columns)}).")
        line_numbers = list(range(2, len(frame) + 2))
    required = [user_column, item_column, timestamp_column] + ([text_column] if text_column else [])
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ValueError(
            f"{source}: missing column(s) {missing}; the file has {list(frame.columns)}. Set user_column, "
            "item_column, timestamp_column or text_column to the right names."
        )
    frame = frame.reset_index(drop=True)
    ids = {}
    for name, column in (("user_id", user_column), ("item_id", item_column)):
        values = frame[column]
        empty = (values.isna() | (values.astype(str).str.strip() == "")).to_numpy()
        if empty.any():
            row = int(np.flatnonzero(empty)[0])
            where = f"line {line_numbers[row]}" if line_numbers is not None else f"row {row}"
            raise ValueError(f"{source}: {where}: field {column!r} is empty.")
        # integral float ids (Parquet columns with nulls elsewhere) render as "12", not "12.0"
        if pd.api.types.is_float_dtype(values) and np.all(np.mod(values.to_numpy(), 1) == 0):
            values = values.astype("int64")
        if pd.api.types.infer_dtype(values, skipna=True) in ("bytes", "mixed"):  # e.g. a Parquet binary column
            ids[name] = np.asarray(text_column_as_str(values, source, column, line_numbers), dtype=object)
        else:
            ids[name] = values.astype(str).to_numpy()
    timestamp = _parse_timestamps(frame[timestamp_column], source, timestamp_column, line_numbers)
    log = pd.DataFrame({"user_id": ids["user_id"], "item_id": ids["item_id"], "timestamp": timestamp.to_numpy()})
    items = None
    if text_column is not None:
        text = text_column_as_str(frame[text_column], source, text_column, line_numbers)
        table = pd.DataFrame({"item_id": log["item_id"], "text": text})
        table["has_text"] = table["text"].str.strip() != ""
        # first non-empty text per item (items without any text get "")
        table = table.sort_values("has_text", ascending=False, kind="stable").drop_duplicates("item_id")
        order = pd.unique(log["item_id"])
        items = table.set_index("item_id").loc[order, ["text"]].reset_index()
    return log, items
