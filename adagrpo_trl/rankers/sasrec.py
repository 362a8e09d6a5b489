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
The built-in "production ranker": SASRec ([Kang & McAuley, 2018](https://huggingface.co/papers/1808.09781)), a causal
transformer over a user's item history that scores candidate items by a dot product, trained on logged sequences with
sampled negatives. Trained on exposure-biased logs it is accurate on popular items and noisy on rare ones, which is the
sample-dependent reward reliability that AdaGRPO's gate is built for;
[`~adagrpo_trl.rankers.ranker_quality_report`] measures it by item popularity bucket.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from ..utils import atomic_write, atomic_write_json


logger = logging.getLogger(__name__)

PAD, UNK = 0, 1  # reserved item indices
_CONFIG_NAME = "config.json"
_WEIGHTS_NAME = "model.safetensors"
_FORMAT = "adagrpo_trl.SASRecRanker"
_VERSION = 1


@dataclasses.dataclass
class SASRecConfig:
    """
    Hyper-parameters of [`SASRecRanker`].

    Args:
        max_len (`int`, *optional*, defaults to `50`):
            History items the model reads (the most recent ones).
        hidden_size (`int`, *optional*, defaults to `64`):
            Item and position embedding size.
        num_layers (`int`, *optional*, defaults to `2`):
            Transformer blocks.
        num_heads (`int`, *optional*, defaults to `2`):
            Attention heads; must divide `hidden_size`.
        dropout (`float`, *optional*, defaults to `0.2`):
            Dropout on embeddings and inside the blocks (training only).
        min_count (`int`, *optional*, defaults to `1`):
            Items seen fewer times in the training sequences share the UNK bucket (so the bucket is trained).
    """

    max_len: int = 50
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    dropout: float = 0.2
    min_count: int = 1

    def __post_init__(self):
        for name in ("max_len", "hidden_size", "num_layers", "num_heads", "min_count"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SASRecConfig.{name} must be an integer >= 1, got {name}={value!r}.")
        if self.hidden_size % self.num_heads != 0:
            raise ValueError(
                f"SASRecConfig.hidden_size={self.hidden_size} must be a multiple of num_heads={self.num_heads}."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SASRecConfig.dropout must be in [0, 1), got dropout={self.dropout!r}.")


class SASRecModel(nn.Module):
    """The SASRec network: item + position embeddings, pre-LN causal transformer blocks, tied item embeddings."""

    def __init__(self, num_embeddings: int, config: SASRecConfig):
        super().__init__()
        self.config = config
        self.item_embedding = nn.Embedding(num_embeddings, config.hidden_size, padding_idx=PAD)
        self.position_embedding = nn.Embedding(config.max_len, config.hidden_size)
        self.dropout = nn.Dropout(config.dropout)
        layer = nn.TransformerEncoderLayer(
            d_model=config.hidden_size,
            nhead=config.num_heads,
            dim_feedforward=config.hidden_size * 4,
            dropout=config.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
        self.final_norm = nn.LayerNorm(config.hidden_size)
        nn.init.normal_(self.item_embedding.weight, std=config.hidden_size**-0.5)
        with torch.no_grad():
            self.item_embedding.weight[PAD].zero_()
            self.item_embedding.weight[UNK].zero_()  # unseen candidates score 0 until the bucket is trained

    def forward(self, sequences: torch.LongTensor) -> torch.Tensor:
        """
        Hidden states of left-padded item sequences.

        Args:
            sequences (`torch.LongTensor` of shape `(batch, max_len)`):
                Item indices, left-padded with `PAD`, most recent item last.

        Returns:
            `torch.Tensor` of shape `(batch, max_len, hidden_size)`: position `t` summarises items `≤ t`.
        """
        batch, length = sequences.shape
        positions = torch.arange(length, device=sequences.device)
        hidden = self.item_embedding(sequences) * math.sqrt(self.config.hidden_size)
        hidden = self.dropout(hidden + self.position_embedding(positions))
        is_pad = sequences == PAD
        # Causal, and no attention to padding keys; every position may attend to itself so no row is fully masked.
        blocked = torch.triu(torch.ones(length, length, dtype=torch.bool, device=sequences.device), diagonal=1)
        blocked = blocked.unsqueeze(0) | is_pad.unsqueeze(1)
        blocked = blocked & ~torch.eye(length, dtype=torch.bool, device=sequences.device).unsqueeze(0)
        mask = blocked.repeat_interleave(self.config.num_heads, dim=0)
        hidden = self.encoder(hidden, mask=mask)
        return self.final_norm(hidden) * (~is_pad).unsqueeze(-1)


class SASRecRanker:
    """
    A SASRec ranker: reads a user's history (item ids, oldest first) and scores candidate items.

    The public object is a plain class (the torch module is `self.model`), so it can be wrapped by
    [`~adagrpo_trl.RankerReward`] without TRL mistaking it for a reward model. Item ids are strings; ids
    outside the vocabulary built by [`fit`] (or seen fewer than `min_count` times) share the UNK bucket, whose
    embedding starts at zero: an untrained UNK candidate scores 0.

    Scores are logits of "the user interacts with this item next" (the model is trained with a binary cross-entropy
    between the next item and sampled negatives), so `transform="sigmoid"` turns them into probabilities.

    Args:
        config ([`SASRecConfig`], *optional*):
            Hyper-parameters; defaults to `SASRecConfig()`.
        item_ids (`Sequence[str]`, *optional*):
            Vocabulary. Usually built by [`fit`]; given here, the model is initialised at once.
        device (`str` or `torch.device`, *optional*):
            Where the model lives and scores; defaults to CUDA when available, else CPU.
        history_column (`str`, *optional*, defaults to `"history"`):
            The context key holding the history in [`score`].

    Example:

    ```python
    from adagrpo_trl.rankers import SASRecRanker

    ranker = SASRecRanker().fit([["i1", "i2", "i3"], ["i2", "i3", "i4"]], epochs=20)
    ranker.score([{"history": ["i1", "i2"]}] * 2, ["i3", "i4"])
    ranker.save("ranker")
    ranker = SASRecRanker.load("ranker")
    ```
    """

    def __init__(
        self,
        config: SASRecConfig | None = None,
        item_ids: Sequence[str] | None = None,
        device: str | torch.device | None = None,
        history_column: str = "history",
    ):
        self.config = config if config is not None else SASRecConfig()
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.history_column = history_column
        self.item_ids: list[str] = []
        self._index: dict[str, int] = {}
        self.model: SASRecModel | None = None
        if item_ids is not None:
            self._init_vocab(item_ids)

    def __repr__(self) -> str:
        return f"SASRecRanker(num_items={len(self.item_ids)}, max_len={self.config.max_len}, device={self.device})"

    def _init_vocab(self, item_ids: Sequence[str]) -> None:
        item_ids = [str(i) for i in item_ids]
        if len(set(item_ids)) != len(item_ids):
            raise ValueError("SASRecRanker item_ids must be distinct.")
        self.item_ids = item_ids
        self._index = {item: i + 2 for i, item in enumerate(item_ids)}
        self.model = SASRecModel(len(item_ids) + 2, self.config).to(self.device)

    def item_index(self, item_id: Any) -> int:
        """The embedding row of an item id (`UNK` = 1 for an unknown item)."""
        return self._index.get(str(item_id), UNK)

    def _encode_histories(self, histories: Sequence[Sequence[Any]]) -> torch.LongTensor:
        max_len = self.config.max_len
        out = torch.full((len(histories), max_len), PAD, dtype=torch.long)
        for row, history in enumerate(histories):
            indices = [self.item_index(item) for item in list(history)[-max_len:]]
            if indices:
                out[row, max_len - len(indices) :] = torch.tensor(indices, dtype=torch.long)
        return out

    # -- training ------------------------------------------------------------------------------------------------

    def fit(
        self,
        sequences: Iterable[Sequence[Any]],
        epochs: int = 20,
        batch_size: int = 128,
        lr: float = 1e-3,
        num_negatives: int = 1,
        negative_sampling: str = "uniform",
        popularity_alpha: float = 1.0,
        weight_decay: float = 0.0,
        seed: int = 0,
        show_progress: bool = True,
    ) -> SASRecRanker:
        """
        Trains the ranker on interaction sequences (item ids, oldest first), predicting every next item against
        sampled negatives with a binary cross-entropy.

        The vocabulary is built from `sequences` (items seen at least `config.min_count` times) unless the ranker
        already has one. Sequences longer than `max_len + 1` are cut, from the end, into windows of `max_len + 1`
        items that overlap by one, so every transition is trained once per epoch.

        Args:
            sequences (`Iterable[Sequence[str]]`):
                One sequence per user: the training split only (keep validation/test items out).
            epochs (`int`, *optional*, defaults to `20`):
                Passes over the data.
            batch_size (`int`, *optional*, defaults to `128`):
                Windows per optimizer step.
            lr (`float`, *optional*, defaults to `1e-3`):
                Adam learning rate.
            num_negatives (`int`, *optional*, defaults to `1`):
                Negatives sampled per positive (a negative equal to the positive is masked out).
            negative_sampling (`str`, *optional*, defaults to `"uniform"`):
                `"uniform"` over the vocabulary, or `"popularity"`: proportional to `count ** popularity_alpha`, as
                when negatives are impressions of a popularity-biased system.
            popularity_alpha (`float`, *optional*, defaults to `1.0`):
                Exponent of popularity sampling.
            weight_decay (`float`, *optional*, defaults to `0.0`):
                AdamW weight decay.
            seed (`int`, *optional*, defaults to `0`):
                Seeds initialisation (when the vocabulary is built here), shuffling, dropout and negatives.
            show_progress (`bool`, *optional*, defaults to `True`):
                A tqdm progress bar over epochs.

        Returns:
            [`SASRecRanker`]: `self`, trained and in eval mode.
        """
        if negative_sampling not in ("uniform", "popularity"):
            raise ValueError(
                f"negative_sampling must be 'uniform' or 'popularity', got negative_sampling={negative_sampling!r}."
            )
        for name, value in (("epochs", epochs), ("batch_size", batch_size), ("num_negatives", num_negatives)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {name}={value!r}.")
        sequences = [[str(item) for item in seq] for seq in sequences]
        counts = Counter(item for seq in sequences for item in seq)
        if not counts:
            raise ValueError("SASRecRanker.fit got no interactions.")
        # Seeded initialisation and dropout without touching the caller's global RNG state.
        cuda_devices = []
        if self.device.type == "cuda":
            cuda_devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(seed)
            self._fit(
                sequences,
                counts,
                epochs,
                batch_size,
                lr,
                num_negatives,
                negative_sampling,
                popularity_alpha,
                weight_decay,
                seed,
                show_progress,
            )
        return self

    def _fit(
        self,
        sequences: list[list[str]],
        counts: Counter,
        epochs: int,
        batch_size: int,
        lr: float,
        num_negatives: int,
        negative_sampling: str,
        popularity_alpha: float,
        weight_decay: float,
        seed: int,
        show_progress: bool,
    ) -> None:
        if self.model is None:
            self._init_vocab(sorted(item for item, c in counts.items() if c >= self.config.min_count))
        num_embeddings = len(self.item_ids) + 2

        windows = self._training_windows(sequences)
        if not windows:
            raise ValueError("SASRecRanker.fit needs at least one sequence with two or more items.")
        inputs = torch.full((len(windows), self.config.max_len), PAD, dtype=torch.long)
        targets = torch.full((len(windows), self.config.max_len), PAD, dtype=torch.long)
        for row, window in enumerate(windows):
            n = len(window) - 1
            inputs[row, -n:] = torch.tensor(window[:-1])
            targets[row, -n:] = torch.tensor(window[1:])

        weights = torch.zeros(num_embeddings, dtype=torch.float64)
        if negative_sampling == "uniform":
            weights[2:] = 1.0
            if self.config.min_count > 1:
                weights[UNK] = 1.0
        else:
            for item, c in counts.items():
                weights[self.item_index(item)] += float(c) ** popularity_alpha
            weights[PAD] = 0.0
        if weights.sum() <= 0:
            raise ValueError("No item can be sampled as a negative.")

        generator = torch.Generator().manual_seed(seed)
        model = self.model
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        num_batches = math.ceil(len(windows) / batch_size)
        progress = tqdm(range(epochs), desc="SASRec", disable=not show_progress, leave=False)
        for epoch in progress:
            permutation = torch.randperm(len(windows), generator=generator)
            total, count = 0.0, 0
            for b in range(num_batches):
                rows = permutation[b * batch_size : (b + 1) * batch_size]
                seq, pos = inputs[rows], targets[rows]
                neg = torch.multinomial(weights, pos.numel() * num_negatives, replacement=True, generator=generator)
                neg = neg.view(*pos.shape, num_negatives)
                seq, pos, neg = seq.to(self.device), pos.to(self.device), neg.to(self.device)
                hidden = model(seq)
                pos_logits = (hidden * model.item_embedding(pos)).sum(-1)
                neg_logits = (hidden.unsqueeze(2) * model.item_embedding(neg)).sum(-1)
                valid = pos != PAD
                neg_valid = valid.unsqueeze(-1) & (neg != pos.unsqueeze(-1))
                loss_pos = F.binary_cross_entropy_with_logits(
                    pos_logits, torch.ones_like(pos_logits), reduction="none"
                )
                loss_neg = F.binary_cross_entropy_with_logits(
                    neg_logits, torch.zeros_like(neg_logits), reduction="none"
                )
                loss = ((loss_pos * valid).sum() + (loss_neg * neg_valid).sum()) / valid.sum().clamp(min=1)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    model.item_embedding.weight[PAD].zero_()
                total += loss.item()
                count += 1
            progress.set_postfix(loss=f"{total / count:.4f}")
            logger.debug("SASRec epoch %d: loss %.4f", epoch, total / count)
        model.eval()

    def _training_windows(self, sequences: list[list[str]]) -> list[list[int]]:
        span = self.config.max_len + 1
        windows = []
        for seq in sequences:
            indices = [self.item_index(item) for item in seq]
            end = len(indices)
            while end >= 2:
                windows.append(indices[max(0, end - span) : end])
                end -= span - 1
        return windows

    # -- scoring -------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def score(
        self, contexts: Sequence[Mapping[str, Any]], candidate_item_ids: Sequence[Any], batch_size: int = 1024
    ) -> list[float]:
        """
        Scores `(context, candidate)` pairs: the dot product of the history's last hidden state and the candidate's
        embedding. Each distinct history is encoded once per call, however many candidates it is paired with (the K
        rollouts of a prompt, or its ground truth and cross-query negatives, share one history).

        Args:
            contexts (`Sequence[Mapping[str, Any]]`):
                One dict per pair with the history (item ids, oldest first) under `history_column`; other keys are
                ignored. A missing or empty history reads as no history.
            candidate_item_ids (`Sequence[str]`):
                One item id per pair.
            batch_size (`int`, *optional*, defaults to `1024`):
                Distinct histories per forward pass.

        Returns:
            `list[float]`: one score (a logit) per pair.
        """
        if self.model is None:
            raise RuntimeError("SASRecRanker has no vocabulary yet: call fit() or load() first.")
        if len(contexts) != len(candidate_item_ids):
            raise ValueError(f"Got {len(contexts)} contexts for {len(candidate_item_ids)} candidates.")
        if not contexts:
            return []
        self.model.eval()
        # The encoder reads only the (truncated, indexed) history: encode each distinct one once.
        max_len = self.config.max_len
        unique: dict[tuple[int, ...], int] = {}
        inverse = []
        for context in contexts:
            history = context.get(self.history_column) if isinstance(context, Mapping) else None
            key = tuple(self.item_index(item) for item in (list(history)[-max_len:] if history is not None else []))
            inverse.append(unique.setdefault(key, len(unique)))
        sequences = torch.full((len(unique), max_len), PAD, dtype=torch.long)
        for row, indices in enumerate(unique):
            if indices:
                sequences[row, max_len - len(indices) :] = torch.tensor(indices, dtype=torch.long)
        last = torch.cat(
            [
                self.model(sequences[start : start + batch_size].to(self.device))[:, -1]
                for start in range(0, len(sequences), batch_size)
            ]
        )
        inverse = torch.tensor(inverse, dtype=torch.long, device=self.device)
        candidates = torch.tensor([self.item_index(item) for item in candidate_item_ids], dtype=torch.long)
        candidates = candidates.to(self.device)
        scores: list[float] = []
        for start in range(0, len(candidates), batch_size):  # bounded memory for very long calls
            pairs = slice(start, start + batch_size)
            products = last[inverse[pairs]] * self.model.item_embedding(candidates[pairs])
            scores.extend(products.sum(-1).float().cpu().tolist())
        return scores

    # -- persistence ---------------------------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> None:
        """Saves the weights (`model.safetensors`) and the config with the vocabulary (`config.json`), atomically."""
        if self.model is None:
            raise RuntimeError("Nothing to save: the SASRecRanker has not been fitted.")
        os.makedirs(directory, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        config = {
            "format": _FORMAT,
            "version": _VERSION,
            "config": dataclasses.asdict(self.config),
            "history_column": self.history_column,
            "item_ids": self.item_ids,
        }
        weights_path = os.path.join(directory, _WEIGHTS_NAME)
        atomic_write(weights_path, lambda path: save_file(state, path, metadata={"format": "pt"}))
        atomic_write_json(os.path.join(directory, _CONFIG_NAME), config, indent=1)

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str | torch.device | None = None) -> SASRecRanker:
        """Loads a ranker saved by [`save`], on `device` (defaults to CUDA when available, else CPU)."""
        config_path = os.path.join(directory, _CONFIG_NAME)
        with open(config_path, encoding="utf-8") as f:
            saved = json.load(f)
        if saved.get("format") != _FORMAT:
            raise ValueError(f"{config_path} is not a SASRecRanker config (format={saved.get('format')!r}).")
        if saved.get("version") != _VERSION:
            raise ValueError(f"{config_path} has version {saved.get('version')!r}; this code reads {_VERSION}.")
        ranker = cls(
            SASRecConfig(**saved["config"]),
            item_ids=saved["item_ids"],
            device=device,
            history_column=saved.get("history_column", "history"),
        )
        state = load_file(os.path.join(directory, _WEIGHTS_NAME), device=str(ranker.device))
        ranker.model.load_state_dict(state)
        ranker.model.eval()
        return ranker


# ---------------------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------------------


def sequences_from_logs(
    logs: Any,
    user_column: str = "user_id",
    item_column: str = "item_id",
    time_column: str = "timestamp",
    holdout: int = 0,
) -> list[list[str]]:
    """
    Per-user item sequences (oldest first) from an interaction log.

    Args:
        logs (`pandas.DataFrame`):
            One row per interaction with user, item and timestamp columns. Ties in time keep the log's order.
        holdout (`int`, *optional*, defaults to `0`):
            Items dropped from the end of every user's sequence; `2` drops the validation and test items of a
            leave-one-out split.

    Returns:
        `list[list[str]]`: one sequence per user (users in order of first appearance), item ids as strings.
    """
    missing = [c for c in (user_column, item_column, time_column) if c not in logs.columns]
    if missing:
        raise ValueError(f"The log has no column(s) {missing}; columns: {list(logs.columns)}.")
    if isinstance(holdout, bool) or not isinstance(holdout, int) or holdout < 0:
        raise ValueError(f"holdout must be an integer >= 0, got holdout={holdout!r}.")
    ordered = logs.assign(_row=np.arange(len(logs))).sort_values([time_column, "_row"], kind="stable")
    sequences = []
    for _, group in ordered.groupby(user_column, sort=False):
        items = [str(i) for i in group[item_column].tolist()]
        if holdout:
            items = items[:-holdout]
        sequences.append(items)
    return sequences


def train_ranker(
    data: Any,
    config: SASRecConfig | None = None,
    output_dir: str | os.PathLike | None = None,
    holdout: int = 0,
    device: str | torch.device | None = None,
    **fit_kwargs: Any,
) -> SASRecRanker:
    """
    Trains a [`SASRecRanker`] on a log or on sequences, and optionally saves it.

    Args:
        data (`pandas.DataFrame` or `Iterable[Sequence[str]]`):
            An interaction log with `user_id`, `item_id`, `timestamp` columns (see [`sequences_from_logs`]), or
            per-user item sequences, oldest first. Pass the training split only.
        config ([`SASRecConfig`], *optional*):
            Model hyper-parameters.
        output_dir (`str`, *optional*):
            Where to [`~SASRecRanker.save`] the trained ranker.
        holdout (`int`, *optional*, defaults to `0`):
            Items dropped from the end of each user's log sequence (logs only).
        device (`str` or `torch.device`, *optional*):
            Training and scoring device.
        **fit_kwargs:
            Passed to [`~SASRecRanker.fit`] (`epochs`, `batch_size`, `lr`, `num_negatives`, `negative_sampling`,
            `seed`, ...).

    Returns:
        [`SASRecRanker`]: the trained ranker.
    """
    if hasattr(data, "columns"):
        sequences = sequences_from_logs(data, holdout=holdout)
    else:
        if holdout:
            raise ValueError("holdout applies to logs; cut the sequences yourself.")
        sequences = [list(seq) for seq in data]
    ranker = SASRecRanker(config, device=device).fit(sequences, **fit_kwargs)
    if output_dir is not None:
        ranker.save(output_dir)
        logger.info("Saved the SASRec ranker to %s", output_dir)
    return ranker
