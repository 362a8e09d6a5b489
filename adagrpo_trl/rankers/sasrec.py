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
_FIT_STATE_NAME = "fit_state.pt"
_FORMAT = "adagrpo_trl.SASRecRanker"
_VERSION = 2
_READABLE_VERSIONS = (1, 2)
LOSSES = ("auto", "softmax", "sampled_softmax", "bce")
AUTO_SOFTMAX_MAX_ITEMS = 100_000  # "auto" uses the full softmax up to this vocabulary size


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
    """
    The SASRec network: item + position embeddings, pre-LN causal transformer blocks, tied item embeddings, and
    optional side features (a mean of feature-token embeddings added to an item's embedding, and a user vector added to
    the sequence's hidden states).
    """

    def __init__(self, num_embeddings: int, config: SASRecConfig, num_features: int = 0, max_item_features: int = 0):
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
        # Side features: feature 0 is padding. `item_features[i]` lists item i's feature ids (padded with 0).
        self.feature_embedding: nn.EmbeddingBag | None = None
        self.register_buffer(
            "item_features", torch.zeros(num_embeddings, max_item_features, dtype=torch.long), persistent=True
        )
        if num_features:
            self.feature_embedding = nn.EmbeddingBag(num_features + 1, config.hidden_size, mode="mean", padding_idx=0)
            nn.init.normal_(self.feature_embedding.weight, std=0.1 * config.hidden_size**-0.5)
            with torch.no_grad():
                self.feature_embedding.weight[0].zero_()

    def item_vectors(self, indices: torch.LongTensor | None = None) -> torch.Tensor:
        """Embeddings of items (all rows when `indices` is None), side features included."""
        if indices is None:
            vectors = self.item_embedding.weight
            feature_ids = self.item_features
        else:
            vectors = self.item_embedding(indices)
            feature_ids = self.item_features[indices]
        if self.feature_embedding is None or feature_ids.shape[-1] == 0:
            return vectors
        flat = feature_ids.reshape(-1, feature_ids.shape[-1])
        return vectors + self.feature_embedding(flat).view(*vectors.shape)

    def user_vectors(self, feature_ids: torch.LongTensor) -> torch.Tensor:
        """The user vectors of rows of user feature ids (padded with 0; an all-padding row gives zeros)."""
        if self.feature_embedding is None or feature_ids.shape[-1] == 0:
            return torch.zeros(len(feature_ids), self.config.hidden_size, device=feature_ids.device)
        return self.feature_embedding(feature_ids)

    def forward(self, sequences: torch.LongTensor, user_features: torch.LongTensor | None = None) -> torch.Tensor:
        """
        Hidden states of left-padded item sequences.

        Args:
            sequences (`torch.LongTensor` of shape `(batch, max_len)`):
                Item indices, left-padded with `PAD`, most recent item last.
            user_features (`torch.LongTensor` of shape `(batch, num_user_features)`, *optional*):
                Feature ids of each row's user (padded with 0); their mean embedding is added to every hidden state.

        Returns:
            `torch.Tensor` of shape `(batch, max_len, hidden_size)`: position `t` summarises items `≤ t`.
        """
        batch, length = sequences.shape
        positions = torch.arange(length, device=sequences.device)
        hidden = self.item_vectors(sequences) * math.sqrt(self.config.hidden_size)
        hidden = self.dropout(hidden + self.position_embedding(positions))
        is_pad = sequences == PAD
        # Causal, and no attention to padding keys; every position may attend to itself so no row is fully masked.
        blocked = torch.triu(torch.ones(length, length, dtype=torch.bool, device=sequences.device), diagonal=1)
        blocked = blocked.unsqueeze(0) | is_pad.unsqueeze(1)
        blocked = blocked & ~torch.eye(length, dtype=torch.bool, device=sequences.device).unsqueeze(0)
        mask = blocked.repeat_interleave(self.config.num_heads, dim=0)
        hidden = self.final_norm(self.encoder(hidden, mask=mask))
        if user_features is not None:
            hidden = hidden + self.user_vectors(user_features).unsqueeze(1)
        return hidden * (~is_pad).unsqueeze(-1)


class SASRecRanker:
    """
    A SASRec ranker: reads a user's history (item ids, oldest first) and scores candidate items.

    The public object is a plain class (the torch module is `self.model`), so it can be wrapped by
    [`~adagrpo_trl.rewards.RankerReward`] without TRL mistaking it for a reward model. Item ids are strings; ids
    outside the vocabulary built by [`fit`] (or seen fewer than `min_count` times) share the UNK bucket, whose
    embedding starts at zero: an untrained UNK candidate scores 0.

    Scores are logits: of the next item over the catalog (`loss="softmax"` or `"sampled_softmax"`, the default), or of
    "the user interacts with this item next" (`loss="bce"`). Only their order matters to AdaGRPO's gate;
    `transform="sigmoid"` in [`~adagrpo_trl.rewards.RankerReward`] maps them to (0, 1) for GRPO's advantages.

    Side features (optional, given to [`fit`]): categorical item attributes (e.g. genres, year) and user attributes
    (e.g. age, gender, occupation), as lists of tokens such as `"genre=Drama"`. A user's attributes are looked up by
    the context's `user_column` value when scoring.

    Args:
        config ([`SASRecConfig`], *optional*):
            Hyper-parameters; defaults to `SASRecConfig()`.
        item_ids (`Sequence[str]`, *optional*):
            Vocabulary. Usually built by [`fit`]; given here, the model is initialised at once (without side features).
        device (`str` or `torch.device`, *optional*):
            Where the model lives and scores; defaults to CUDA when available, else CPU.
        history_column (`str`, *optional*, defaults to `"history"`):
            The context key holding the history in [`score`].
        user_column (`str`, *optional*, defaults to `"user_id"`):
            The context key holding the user id (read only when the ranker has user features).

    Example:

    ```python
    from adagrpo_trl.rankers import SASRecRanker

    ranker = SASRecRanker().fit([["i1", "i2", "i3"], ["i2", "i3", "i4"]], epochs=20)
    ranker.score([{"history": ["i1", "i2"]}] * 2, ["i3", "i4"])
    ranker.save("ranker")
    ranker = SASRecRanker.load("ranker")
    ```

    See docs/rankers.md for the training objectives and the teacher report.
    """

    def __init__(
        self,
        config: SASRecConfig | None = None,
        item_ids: Sequence[str] | None = None,
        device: str | torch.device | None = None,
        history_column: str = "history",
        user_column: str = "user_id",
    ):
        self.config = config if config is not None else SASRecConfig()
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.history_column = history_column
        self.user_column = user_column
        self.item_ids: list[str] = []
        self._index: dict[str, int] = {}
        self.model: SASRecModel | None = None
        self.feature_vocab: list[str] = []
        self.item_feature_tokens: dict[str, list[str]] = {}
        self.user_feature_tokens: dict[str, list[str]] = {}
        self._user_feature_ids: dict[str, list[int]] = {}
        self.training_log: list[dict[str, float]] = []
        self.best_epoch: int | None = None
        self.training_args: dict[str, Any] = {}
        if item_ids is not None:
            self._init_vocab(item_ids)

    def __repr__(self) -> str:
        return f"SASRecRanker(num_items={len(self.item_ids)}, max_len={self.config.max_len}, device={self.device})"

    def _init_vocab(
        self,
        item_ids: Sequence[str],
        item_features: Mapping[str, Sequence[str]] | None = None,
        user_features: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        item_ids = [str(i) for i in item_ids]
        if len(set(item_ids)) != len(item_ids):
            raise ValueError("SASRecRanker item_ids must be distinct.")
        self.item_ids = item_ids
        self._index = {item: i + 2 for i, item in enumerate(item_ids)}
        self.item_feature_tokens = {str(k): [str(t) for t in v] for k, v in (item_features or {}).items()}
        self.user_feature_tokens = {str(k): [str(t) for t in v] for k, v in (user_features or {}).items()}
        tokens = {t for v in self.item_feature_tokens.values() for t in v}
        tokens |= {t for v in self.user_feature_tokens.values() for t in v}
        self.feature_vocab = sorted(tokens)
        feature_index = {token: i + 1 for i, token in enumerate(self.feature_vocab)}
        width = max((len(v) for v in self.item_feature_tokens.values()), default=0)
        self.model = SASRecModel(len(item_ids) + 2, self.config, len(self.feature_vocab), width).to(self.device)
        if width:
            table = torch.zeros(len(item_ids) + 2, width, dtype=torch.long)
            for item, feature_tokens in self.item_feature_tokens.items():
                if item in self._index and feature_tokens:
                    table[self._index[item], : len(feature_tokens)] = torch.tensor(
                        [feature_index[t] for t in feature_tokens]
                    )
            self.model.item_features.copy_(table.to(self.device))
        self._user_feature_ids = {
            user: [feature_index[t] for t in feature_tokens]
            for user, feature_tokens in self.user_feature_tokens.items()
        }

    @property
    def has_user_features(self) -> bool:
        """Whether the ranker reads user attributes (looked up by the context's `user_column`)."""
        return bool(self._user_feature_ids)

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

    def _encode_users(self, user_ids: Sequence[Any] | None, num_rows: int) -> torch.LongTensor | None:
        if not self.has_user_features:
            return None
        width = max(len(v) for v in self._user_feature_ids.values())
        out = torch.zeros(num_rows, width, dtype=torch.long)
        for row, user in enumerate(user_ids if user_ids is not None else [None] * num_rows):
            ids = self._user_feature_ids.get(str(user), []) if user is not None else []
            if ids:
                out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    # -- training ------------------------------------------------------------------------------------------------

    def fit(
        self,
        sequences: Iterable[Sequence[Any]],
        epochs: int = 20,
        batch_size: int = 128,
        lr: float = 1e-3,
        loss: str = "auto",
        num_negatives: int | None = None,
        negative_sampling: str = "uniform",
        popularity_alpha: float = 1.0,
        weight_decay: float = 0.0,
        seed: int = 0,
        show_progress: bool = True,
        user_ids: Sequence[Any] | None = None,
        item_features: Mapping[str, Sequence[str]] | None = None,
        user_features: Mapping[str, Sequence[str]] | None = None,
        eval_examples: Sequence[Mapping[str, Any]] | None = None,
        patience: int | None = None,
        eval_k: int = 10,
        checkpoint_dir: str | os.PathLike | None = None,
    ) -> SASRecRanker:
        """
        Trains the ranker on interaction sequences (item ids, oldest first), predicting every next item.

        Objectives (`loss`):
        - `"softmax"`: cross-entropy of the next item over the whole vocabulary (the strong default; cost grows with
          the catalog).
        - `"sampled_softmax"`: cross-entropy against `num_negatives` (default 256) items shared by the batch, drawn by
          `negative_sampling`, with the log-q correction of popularity sampling; for very large catalogs.
        - `"bce"`: binary cross-entropy of the next item against `num_negatives` (default 1) sampled negatives per
          position (the original SASRec objective; weak).
        - `"auto"`: `"softmax"` up to 100,000 items, `"sampled_softmax"` beyond.

        The vocabulary is built from `sequences` (items seen at least `config.min_count` times) unless the ranker
        already has one. Sequences longer than `max_len + 1` are cut, from the end, into windows of `max_len + 1`
        items that overlap by one, so every transition is trained once per epoch.

        With `eval_examples`, the full-ranking HR@`eval_k` over the vocabulary (history not masked) is measured after
        every epoch; the ranker keeps the weights of the best epoch, and stops after `patience` epochs without a gain.

        Args:
            sequences (`Iterable[Sequence[str]]`):
                One sequence per user: the training split only (keep validation/test items out).
            epochs (`int`, *optional*, defaults to `20`):
                Passes over the data (at most, with early stopping).
            batch_size (`int`, *optional*, defaults to `128`):
                Windows per optimizer step.
            lr (`float`, *optional*, defaults to `1e-3`):
                Adam learning rate.
            loss (`str`, *optional*, defaults to `"auto"`):
                `"softmax"`, `"sampled_softmax"`, `"bce"` or `"auto"`, see above.
            num_negatives (`int`, *optional*):
                Negatives of `"bce"` (per position, default 1) or `"sampled_softmax"` (per batch, default 256).
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
            user_ids (`Sequence[str]`, *optional*):
                The user of each sequence (needed with `user_features`).
            item_features, user_features (`Mapping[str, Sequence[str]]`, *optional*):
                Side features: item id / user id -> categorical tokens (e.g. `["genre=Drama", "year=1995"]`).
            eval_examples (`Sequence[dict]`, *optional*):
                Validation rows (`history`, `target_item`, and `user_id` with user features) for the best epoch.
            patience (`int`, *optional*):
                Epochs without a validation gain before stopping (needs `eval_examples`; `None` runs every epoch).
            eval_k (`int`, *optional*, defaults to `10`):
                Cut-off of the validation HR.
            checkpoint_dir (`str`, *optional*):
                After every epoch the whole training state (weights, optimizer, RNG states, the best epoch so far) is
                saved there, atomically; a later `fit` with the same data and settings resumes from it and ends
                exactly where an uninterrupted run would (`epochs` may be raised to train on).

        Returns:
            [`SASRecRanker`]: `self`, trained and in eval mode (with the best epoch's weights under validation).
        """
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {list(LOSSES)}, got loss={loss!r}.")
        if negative_sampling not in ("uniform", "popularity"):
            raise ValueError(
                f"negative_sampling must be 'uniform' or 'popularity', got negative_sampling={negative_sampling!r}."
            )
        for name, value in (("epochs", epochs), ("batch_size", batch_size), ("eval_k", eval_k)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {name}={value!r}.")
        for name, value in (("num_negatives", num_negatives), ("patience", patience)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be an integer >= 1 or None, got {name}={value!r}.")
        if patience is not None and not eval_examples:
            raise ValueError("patience needs eval_examples (validation rows) to measure the best epoch.")
        sequences = [[str(item) for item in seq] for seq in sequences]
        if user_ids is not None and len(user_ids) != len(sequences):
            raise ValueError(f"Got {len(user_ids)} user_ids for {len(sequences)} sequences.")
        if user_features and user_ids is None:
            raise ValueError("user_features needs user_ids (the user of each sequence).")
        counts = Counter(item for seq in sequences for item in seq)
        if not counts:
            raise ValueError("SASRecRanker.fit got no interactions.")
        if self.model is not None and (item_features or user_features):
            raise ValueError("Side features are set when the vocabulary is built: fit a new SASRecRanker.")
        vocab = sorted(item for item, c in counts.items() if c >= self.config.min_count)
        if loss == "auto":
            size = len(self.item_ids) if self.model is not None else len(vocab)
            loss = "softmax" if size <= AUTO_SOFTMAX_MAX_ITEMS else "sampled_softmax"
        if loss == "softmax" and num_negatives is not None:
            raise ValueError(f"num_negatives applies to loss='bce' or 'sampled_softmax', not {loss!r}.")
        if num_negatives is None:
            num_negatives = 1 if loss == "bce" else 256
        self.training_args = {
            "loss": loss,
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "num_negatives": None if loss == "softmax" else num_negatives,
            "negative_sampling": negative_sampling,
            "seed": seed,
            "patience": patience,
        }
        # Seeded initialisation and dropout without touching the caller's global RNG state.
        cuda_devices = []
        if self.device.type == "cuda":
            cuda_devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(seed)
            if self.model is None:
                self._init_vocab(vocab, item_features, user_features)
            self._fit(
                sequences,
                list(user_ids) if user_ids is not None else None,
                counts,
                epochs,
                batch_size,
                lr,
                loss,
                num_negatives,
                negative_sampling,
                popularity_alpha,
                weight_decay,
                seed,
                show_progress,
                list(eval_examples) if eval_examples else None,
                patience,
                eval_k,
                checkpoint_dir,
            )
        return self

    def _negative_weights(self, counts: Counter, negative_sampling: str, popularity_alpha: float) -> torch.Tensor:
        weights = torch.zeros(len(self.item_ids) + 2, dtype=torch.float64)
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
        return weights

    def _fit(
        self,
        sequences: list[list[str]],
        user_ids: list[Any] | None,
        counts: Counter,
        epochs: int,
        batch_size: int,
        lr: float,
        loss_name: str,
        num_negatives: int,
        negative_sampling: str,
        popularity_alpha: float,
        weight_decay: float,
        seed: int,
        show_progress: bool,
        eval_examples: list[Mapping[str, Any]] | None,
        patience: int | None,
        eval_k: int,
        checkpoint_dir: str | os.PathLike | None = None,
    ) -> None:
        windows, window_users = self._training_windows(sequences, user_ids)
        if not windows:
            raise ValueError("SASRecRanker.fit needs at least one sequence with two or more items.")
        inputs = torch.full((len(windows), self.config.max_len), PAD, dtype=torch.long)
        targets = torch.full((len(windows), self.config.max_len), PAD, dtype=torch.long)
        for row, window in enumerate(windows):
            n = len(window) - 1
            inputs[row, -n:] = torch.tensor(window[:-1])
            targets[row, -n:] = torch.tensor(window[1:])
        users = self._encode_users(window_users, len(windows))

        weights = self._negative_weights(counts, negative_sampling, popularity_alpha)
        log_q = torch.log(weights / weights.sum()).float().to(self.device)  # log-q correction of sampled softmax
        generator = torch.Generator().manual_seed(seed)
        model = self.model
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        num_batches = math.ceil(len(windows) / batch_size)
        self.training_log, self.best_epoch = [], None
        best_value, best_state, stale, start = -math.inf, None, 0, 0
        # What a checkpoint must agree on to be resumed (not `epochs`: a resumed run may train longer).
        fingerprint = {
            "windows": len(windows),
            "items": len(self.item_ids),
            "config": dataclasses.asdict(self.config),
            **{k: v for k, v in self.training_args.items() if k != "epochs"},
        }
        state_path = os.path.join(checkpoint_dir, _FIT_STATE_NAME) if checkpoint_dir is not None else None
        if state_path is not None and os.path.exists(state_path):
            saved = torch.load(state_path, map_location=self.device, weights_only=False)
            if saved["fingerprint"] != fingerprint:
                raise ValueError(
                    f"{state_path} was written by another training run ({saved['fingerprint']}); this one is "
                    f"{fingerprint}. Remove it or use another checkpoint_dir."
                )
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            generator.set_state(saved["generator"])
            torch.set_rng_state(saved["torch_rng"])
            start, stale, best_value = saved["epoch"], saved["stale"], saved["best_value"]
            best_state, self.best_epoch, self.training_log = saved["best_state"], saved["best_epoch"], saved["log"]
            logger.info("SASRec: resumed from %s after epoch %d.", state_path, start)
            if patience is not None and stale >= patience:
                start = epochs  # it had stopped early
        progress = tqdm(
            range(start, epochs), desc=f"SASRec ({loss_name})", disable=not show_progress, leave=False, initial=start
        )
        for epoch in progress:
            permutation = torch.randperm(len(windows), generator=generator)
            total = 0.0
            for b in range(num_batches):
                rows = permutation[b * batch_size : (b + 1) * batch_size]
                seq, pos = inputs[rows].to(self.device), targets[rows].to(self.device)
                user = users[rows].to(self.device) if users is not None else None
                hidden = model(seq, user)
                valid = pos != PAD
                if loss_name == "softmax":
                    logits = hidden[valid] @ model.item_vectors().T
                    logits[:, PAD] = -torch.inf
                    loss = F.cross_entropy(logits, pos[valid])
                elif loss_name == "sampled_softmax":
                    neg = torch.multinomial(weights, num_negatives, replacement=True, generator=generator)
                    neg = neg.to(self.device)
                    h, p = hidden[valid], pos[valid]
                    pos_logits = (h * model.item_vectors(p)).sum(-1, keepdim=True) - log_q[p].unsqueeze(-1)
                    neg_logits = h @ model.item_vectors(neg).T - log_q[neg]
                    neg_logits = neg_logits.masked_fill(neg.unsqueeze(0) == p.unsqueeze(1), -torch.inf)
                    logits = torch.cat([pos_logits, neg_logits], dim=1)
                    loss = F.cross_entropy(logits, torch.zeros(len(p), dtype=torch.long, device=self.device))
                else:
                    neg = torch.multinomial(
                        weights, pos.numel() * num_negatives, replacement=True, generator=generator
                    )
                    neg = neg.view(*pos.shape, num_negatives).to(self.device)
                    pos_logits = (hidden * model.item_vectors(pos)).sum(-1)
                    neg_logits = (hidden.unsqueeze(2) * model.item_vectors(neg)).sum(-1)
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
            entry = {"epoch": epoch + 1, "loss": total / num_batches}
            if eval_examples:
                value = self.full_ranking_hit_rate(eval_examples, k=eval_k)
                model.train()
                entry[f"eval_hr@{eval_k}"] = value
                if value > best_value:
                    best_value, stale, self.best_epoch = value, 0, epoch + 1
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                else:
                    stale += 1
            self.training_log.append(entry)
            progress.set_postfix({k: f"{v:.4f}" for k, v in entry.items() if k != "epoch"})
            logger.info("SASRec epoch %d: %s", epoch + 1, entry)
            if state_path is not None:
                fit_state = {
                    "fingerprint": fingerprint,
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "stale": stale,
                    "best_value": best_value,
                    "best_state": best_state,
                    "best_epoch": self.best_epoch,
                    "log": self.training_log,
                }
                os.makedirs(checkpoint_dir, exist_ok=True)
                atomic_write(state_path, lambda path, fit_state=fit_state: torch.save(fit_state, path))
            if patience is not None and stale >= patience:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()

    def _training_windows(
        self, sequences: list[list[str]], user_ids: list[Any] | None
    ) -> tuple[list[list[int]], list[Any] | None]:
        span = self.config.max_len + 1
        windows, users = [], []
        for row, seq in enumerate(sequences):
            indices = [self.item_index(item) for item in seq]
            end = len(indices)
            while end >= 2:
                windows.append(indices[max(0, end - span) : end])
                users.append(user_ids[row] if user_ids is not None else None)
                end -= span - 1
        return windows, (users if user_ids is not None else None)

    # -- scoring -------------------------------------------------------------------------------------------------

    def _last_hidden(self, contexts: Sequence[Mapping[str, Any]], batch_size: int) -> tuple[torch.Tensor, list[int]]:
        """The last hidden state of each distinct (history, user) of `contexts`, and each context's row in it."""
        max_len = self.config.max_len
        unique: dict[tuple, int] = {}
        inverse = []
        for context in contexts:
            history = context.get(self.history_column) if isinstance(context, Mapping) else None
            user = context.get(self.user_column) if self.has_user_features and isinstance(context, Mapping) else None
            items = tuple(self.item_index(item) for item in (list(history)[-max_len:] if history is not None else []))
            inverse.append(unique.setdefault((items, None if user is None else str(user)), len(unique)))
        keys = list(unique)
        sequences = torch.full((len(keys), max_len), PAD, dtype=torch.long)
        for row, (indices, _) in enumerate(keys):
            if indices:
                sequences[row, max_len - len(indices) :] = torch.tensor(indices, dtype=torch.long)
        users = self._encode_users([user for _, user in keys], len(keys))
        chunks = []
        for start in range(0, len(keys), batch_size):
            user = users[start : start + batch_size].to(self.device) if users is not None else None
            chunks.append(self.model(sequences[start : start + batch_size].to(self.device), user)[:, -1])
        hidden = torch.cat(chunks) if chunks else torch.zeros(0, self.config.hidden_size, device=self.device)
        return hidden, inverse

    def _check_ready(self) -> None:
        if self.model is None:
            raise RuntimeError("SASRecRanker has no vocabulary yet: call fit() or load() first.")

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
                One dict per pair with the history (item ids, oldest first) under `history_column` (and the user id
                under `user_column` when the ranker has user features); other keys are ignored. A missing or empty
                history reads as no history.
            candidate_item_ids (`Sequence[str]`):
                One item id per pair.
            batch_size (`int`, *optional*, defaults to `1024`):
                Distinct histories per forward pass.

        Returns:
            `list[float]`: one score (a logit) per pair.
        """
        self._check_ready()
        if len(contexts) != len(candidate_item_ids):
            raise ValueError(f"Got {len(contexts)} contexts for {len(candidate_item_ids)} candidates.")
        if not contexts:
            return []
        self.model.eval()
        last, inverse = self._last_hidden(contexts, batch_size)
        inverse = torch.tensor(inverse, dtype=torch.long, device=self.device)
        candidates = torch.tensor([self.item_index(item) for item in candidate_item_ids], dtype=torch.long)
        candidates = candidates.to(self.device)
        scores: list[float] = []
        for start in range(0, len(candidates), batch_size):  # bounded memory for very long calls
            pairs = slice(start, start + batch_size)
            products = last[inverse[pairs]] * self.model.item_vectors(candidates[pairs])
            scores.extend(products.sum(-1).float().cpu().tolist())
        return scores

    @torch.no_grad()
    def score_matrix(
        self, contexts: Sequence[Mapping[str, Any]], candidate_item_ids: Sequence[Any], batch_size: int = 512
    ) -> np.ndarray:
        """
        Scores every candidate in every context: the fast path of full-catalog rankings (the teacher report).

        Args:
            contexts (`Sequence[Mapping[str, Any]]`):
                As in [`score`].
            candidate_item_ids (`Sequence[str]`):
                The candidates, shared by every context (e.g. the whole catalog).
            batch_size (`int`, *optional*, defaults to `512`):
                Distinct histories per forward pass.

        Returns:
            `np.ndarray` of shape `(len(contexts), len(candidate_item_ids))`, float32.
        """
        self._check_ready()
        self.model.eval()
        if not contexts:
            return np.zeros((0, len(candidate_item_ids)), dtype=np.float32)
        last, inverse = self._last_hidden(contexts, batch_size)
        candidates = torch.tensor([self.item_index(item) for item in candidate_item_ids], dtype=torch.long)
        table = self.model.item_vectors(candidates.to(self.device))
        scores = (last @ table.T).float().cpu().numpy()
        return scores[np.asarray(inverse, dtype=np.int64)]

    @torch.no_grad()
    def full_ranking_hit_rate(
        self, examples: Sequence[Mapping[str, Any]], k: int = 10, target_column: str = "target_item"
    ) -> float:
        """
        HR@`k` of the rows' targets ranked among the whole vocabulary (history not masked; ties pessimistic): the
        validation metric of [`fit`]. A target outside the vocabulary is a miss.
        """
        self._check_ready()
        self.model.eval()
        examples = list(examples)
        if not examples:
            return math.nan
        hits = 0
        for start in range(0, len(examples), 512):
            chunk = examples[start : start + 512]
            last, inverse = self._last_hidden(chunk, 512)
            scores = last[torch.tensor(inverse, device=self.device)] @ self.model.item_vectors().T
            scores[:, :2] = -torch.inf  # PAD and UNK are not items
            target = torch.tensor([self.item_index(row[target_column]) for row in chunk], device=self.device)
            target_scores = scores.gather(1, target.unsqueeze(1))
            rank = (scores >= target_scores).sum(1)  # the target itself counts once
            hits += int(((rank <= k) & (target >= 2)).sum())
        return hits / len(examples)

    # -- persistence ---------------------------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike) -> None:
        """
        Saves the weights (`model.safetensors`) and the config with the vocabulary, side features and training log
        (`config.json`), atomically.
        """
        if self.model is None:
            raise RuntimeError("Nothing to save: the SASRecRanker has not been fitted.")
        os.makedirs(directory, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        config = {
            "format": _FORMAT,
            "version": _VERSION,
            "config": dataclasses.asdict(self.config),
            "history_column": self.history_column,
            "user_column": self.user_column,
            "item_ids": self.item_ids,
            "item_features": self.item_feature_tokens,
            "user_features": self.user_feature_tokens,
            "training": self.training_args,
            "training_log": self.training_log,
            "best_epoch": self.best_epoch,
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
        if saved.get("version") not in _READABLE_VERSIONS:
            raise ValueError(
                f"{config_path} has version {saved.get('version')!r}; this code reads {list(_READABLE_VERSIONS)}."
            )
        ranker = cls(
            SASRecConfig(**saved["config"]),
            device=device,
            history_column=saved.get("history_column", "history"),
            user_column=saved.get("user_column", "user_id"),
        )
        ranker._init_vocab(saved["item_ids"], saved.get("item_features"), saved.get("user_features"))
        state = load_file(os.path.join(directory, _WEIGHTS_NAME), device=str(ranker.device))
        if "item_features" not in state:  # version 1 had no side features
            state["item_features"] = ranker.model.item_features
        ranker.model.load_state_dict(state)
        ranker.model.eval()
        ranker.training_args = saved.get("training", {})
        ranker.training_log = saved.get("training_log", [])
        ranker.best_epoch = saved.get("best_epoch")
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


def train_ranker_from_prepared(
    prepared: Any,
    config: SASRecConfig | None = None,
    item_feature_fields: Sequence[str] = (),
    user_feature_fields: Sequence[str] = (),
    full_history: bool = True,
    output_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    **fit_kwargs: Any,
) -> SASRecRanker:
    """
    Trains a [`SASRecRanker`] on what `adagrpo-trl prepare` wrote: the training part of each user's sequence only
    (validation and test items never reach the weights), the best epoch chosen on the validation rows (their targets
    are used for selection only), with optional side features from the `.item` / `.user` attributes.

    Args:
        prepared ([`~adagrpo_trl.data.PreparedData`]):
            The prepared data.
        config ([`SASRecConfig`], *optional*):
            Model hyper-parameters (`max_len` is the history the ranker reads: up to the user's full past).
        item_feature_fields, user_feature_fields (`Sequence[str]`, *optional*):
            Attribute fields used as side features (e.g. `["genre", "release_year"]`, `["age", "gender",
            "occupation"]`); see [`~adagrpo_trl.data.attribute_tokens`].
        full_history (`bool`, *optional*, defaults to `True`):
            Validate on the users' full histories (as the reward reads them with `user_histories`), not the prompts'.
        output_dir (`str`, *optional*):
            Where to save the ranker.
        device (`str` or `torch.device`, *optional*):
            Training device.
        **fit_kwargs:
            [`SASRecRanker.fit`] options (`epochs`, `loss`, `lr`, `patience`, ...).

    Raises:
        `ValueError`: for data prepared without training sequences, or an unknown side-feature field.
    """
    from ..data.loaders import attribute_tokens

    if not prepared.train_sequences:
        raise ValueError("The prepared data has no training sequences; prepare it again with this version.")
    validation = list(prepared.datasets["validation"])
    user_ids = [row["user_id"] for row in validation]  # one row per user, in the order of train_sequences
    if len(user_ids) != len(prepared.train_sequences):
        raise ValueError(
            f"{len(prepared.train_sequences)} training sequences but {len(user_ids)} validation users: the prepared "
            "folder is inconsistent; prepare it again."
        )
    item_features = attribute_tokens(
        prepared.attribute_table("item"), "item_id", item_feature_fields, "the .item data"
    )
    user_features = attribute_tokens(
        prepared.attribute_table("user"), "user_id", user_feature_fields, "the .user data"
    )
    if (
        full_history
        and prepared.user_histories is not None
        and "target_position" in prepared.datasets["validation"].column_names
    ):
        validation = prepared.user_histories.with_full_history(validation)
    ranker = SASRecRanker(config, device=device).fit(
        prepared.train_sequences,
        user_ids=user_ids if user_features else None,
        item_features=item_features or None,
        user_features=user_features or None,
        eval_examples=validation,
        **fit_kwargs,
    )
    if output_dir is not None:
        ranker.save(output_dir)
        logger.info("Saved the SASRec ranker to %s", output_dir)
    return ranker
