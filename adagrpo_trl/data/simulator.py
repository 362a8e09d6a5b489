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
A synthetic, exposure-biased interaction log with known ground truth: a hermetic dataset for tests and a controlled
reward-noise axis for benchmarks.

The generative process, per user and step `t`:

1. **Intent.** `z_t = normalize((1 - λ) · u + λ · v_prev)`: the user's latent preference `u` drifts towards the
   previous item's factor `v_prev` (`λ = sequential_strength`; at `t = 0`, `z_0 = u`). The next item therefore depends
   on the previous one, and next-item prediction beats popularity.
2. **Exposure.** The system shows a slate of `slate_size` items not yet consumed, sampled without replacement from
   `q = exposure_bias · p_pop + (1 - exposure_bias) · uniform`, where `p_pop` is a Zipf law over a random popularity
   order (`p_pop(rank r) ∝ r ** -popularity_skew`). `exposure_bias` is the probability that a shown slot comes from
   the popularity distribution: the higher it is, the more the log concentrates on the head.
3. **Choice.** The user picks one slate item with probability `softmax(<z_t, v_i> / choice_temperature)`.

Only the choices are logged. Popular items are shown, hence chosen and logged, far more often than rare ones, so a
ranker trained on the log sees many examples of the head and few of the tail: accurate on popular items and noisy on
rare ones, more so as `exposure_bias` grows. All factors are unit vectors; everything is drawn from one seeded
`numpy.random.Generator`, so a seed gives the same log on any machine.
"""

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm


logger = logging.getLogger(__name__)

_BATCH_SIZE = 1024  # users simulated together (memory: batch × num_items); part of the RNG stream, keep it fixed


@dataclass
class SimulatedLogs:
    """
    A simulated log and its ground truth, from [`simulate_exposure_biased_logs`].

    Args:
        log (`pd.DataFrame`):
            Columns `user_id`, `item_id`, `timestamp` (float seconds), sorted by time (ties by user).
        items (`pd.DataFrame`):
            Columns `item_id`, `text` (e.g. `"item 12 genre_3 genre_17"`: the item's two dominant latent directions)
            and `popularity` (`p_pop`).
        item_features (`np.ndarray` of shape `(num_items, latent_dim)`):
            Observed content features: the item factors plus Gaussian noise (`feature_noise`).
        user_factors (`np.ndarray` of shape `(num_users, latent_dim)`):
            True user preferences `u` (unit rows), aligned with `user_ids`.
        item_factors (`np.ndarray` of shape `(num_items, latent_dim)`):
            True item factors `v` (unit rows), aligned with `item_ids`.
        item_popularity (`np.ndarray` of shape `(num_items,)`):
            `p_pop`, the Zipf popularity distribution (sums to 1).
        exposure_probability (`np.ndarray` of shape `(num_items,)`):
            `q`, the exposure distribution of a slate slot (sums to 1).
        user_ids (`list[str]`):
            `"u0"`, `"u1"`, ...
        item_ids (`list[str]`):
            `"i0"`, `"i1"`, ...
        sequential_strength (`float`):
            `λ`.
        choice_temperature (`float`):
            The softmax temperature of the choice.
    """

    log: pd.DataFrame
    items: pd.DataFrame
    item_features: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray
    item_popularity: np.ndarray
    exposure_probability: np.ndarray
    user_ids: list[str]
    item_ids: list[str]
    sequential_strength: float
    choice_temperature: float

    def intent(self, user_index: int, previous_item_index: int | None = None) -> np.ndarray:
        """The intent vector `z_t` of a user after `previous_item_index` (`None`: the first step)."""
        intent = self.user_factors[user_index]
        if previous_item_index is not None:
            intent = (1 - self.sequential_strength) * intent + self.sequential_strength * self.item_factors[
                previous_item_index
            ]
        return intent / max(np.linalg.norm(intent), 1e-12)

    def preference_scores(self, user_index: int, previous_item_index: int | None = None) -> np.ndarray:
        """
        The true choice logits `<z_t, v_i> / choice_temperature` of every item (before exposure): the oracle relevance
        a perfect ranker would output.
        """
        return self.item_factors @ self.intent(user_index, previous_item_index) / self.choice_temperature


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def simulate_exposure_biased_logs(
    num_users: int = 1000,
    num_items: int = 500,
    seq_len: tuple[int, int] = (5, 30),
    popularity_skew: float = 1.0,
    exposure_bias: float = 0.8,
    latent_dim: int = 16,
    slate_size: int = 20,
    sequential_strength: float = 0.6,
    choice_temperature: float = 0.1,
    feature_noise: float = 0.1,
    seed: int = 0,
) -> SimulatedLogs:
    """
    Simulates an exposure-biased interaction log with sequential structure (see the module docstring).

    Args:
        num_users (`int`, *optional*, defaults to `1000`):
            Number of users.
        num_items (`int`, *optional*, defaults to `500`):
            Number of items.
        seq_len (`tuple[int, int]`, *optional*, defaults to `(5, 30)`):
            Inclusive range of the per-user sequence length, drawn uniformly. Items are not repeated within a user, so
            the maximum must not exceed `num_items`.
        popularity_skew (`float`, *optional*, defaults to `1.0`):
            Zipf exponent of the popularity distribution (`0`: uniform).
        exposure_bias (`float`, *optional*, defaults to `0.8`):
            Probability that a slate slot is drawn from the popularity distribution instead of uniformly, in `[0, 1]`.
        latent_dim (`int`, *optional*, defaults to `16`):
            Dimension of the user and item factors.
        slate_size (`int`, *optional*, defaults to `20`):
            Items shown per step.
        sequential_strength (`float`, *optional*, defaults to `0.6`):
            `λ` in `[0, 1]`: weight of the previous item in the intent (`0`: no sequential structure).
        choice_temperature (`float`, *optional*, defaults to `0.1`):
            Softmax temperature of the choice among the slate (lower: more deterministic).
        feature_noise (`float`, *optional*, defaults to `0.1`):
            Standard deviation (per coordinate, times `1 / sqrt(latent_dim)`) of the noise in `item_features`.
        seed (`int`, *optional*, defaults to `0`):
            Seed of every random draw.

    Returns:
        [`SimulatedLogs`].
    """
    low, high = (int(value) for value in seq_len)
    checks = [
        (num_users >= 1, f"num_users must be >= 1, got {num_users}."),
        (num_items >= 2, f"num_items must be >= 2, got {num_items}."),
        (1 <= low <= high, f"seq_len must be (low, high) with 1 <= low <= high, got {seq_len}."),
        (high <= num_items, f"seq_len's maximum {high} exceeds num_items={num_items} (items do not repeat)."),
        (popularity_skew >= 0, f"popularity_skew must be >= 0, got {popularity_skew}."),
        (0 <= exposure_bias <= 1, f"exposure_bias must be in [0, 1], got {exposure_bias}."),
        (latent_dim >= 1, f"latent_dim must be >= 1, got {latent_dim}."),
        (slate_size >= 1, f"slate_size must be >= 1, got {slate_size}."),
        (0 <= sequential_strength <= 1, f"sequential_strength must be in [0, 1], got {sequential_strength}."),
        (choice_temperature > 0, f"choice_temperature must be > 0, got {choice_temperature}."),
        (feature_noise >= 0, f"feature_noise must be >= 0, got {feature_noise}."),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)

    rng = np.random.default_rng(seed)
    item_factors = _unit_rows(rng.standard_normal((num_items, latent_dim)))
    user_factors = _unit_rows(rng.standard_normal((num_users, latent_dim)))
    ranks = rng.permutation(num_items) + 1  # popularity rank of each item
    popularity = ranks.astype(np.float64) ** -popularity_skew
    popularity /= popularity.sum()
    exposure = exposure_bias * popularity + (1 - exposure_bias) / num_items
    log_exposure = np.log(exposure)
    lengths = rng.integers(low, high + 1, size=num_users)
    item_features = item_factors + feature_noise / np.sqrt(latent_dim) * rng.standard_normal(item_factors.shape)

    batch_size = _BATCH_SIZE
    choices = np.full((num_users, high), -1, dtype=np.int64)
    num_batches = (num_users + batch_size - 1) // batch_size
    for start in tqdm(
        range(0, num_users, batch_size), desc="Simulating users", total=num_batches, disable=num_batches < 4
    ):
        users = np.arange(start, min(start + batch_size, num_users))
        batch = len(users)
        consumed = np.zeros((batch, num_items), dtype=bool)
        intent = user_factors[users]
        for step in range(high):
            active = lengths[users] > step
            # slate: Gumbel top-k over the exposure distribution = sampling without replacement from q
            keys = log_exposure + rng.gumbel(size=(batch, num_items))
            keys[consumed] = -np.inf
            size = min(slate_size, num_items - step)
            slate = np.argpartition(-keys, size - 1, axis=1)[:, :size]
            logits = np.einsum("bd,bkd->bk", intent, item_factors[slate]) / choice_temperature
            picked = slate[np.arange(batch), np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)]
            choices[users[active], step] = picked[active]
            consumed[np.arange(batch)[active], picked[active]] = True
            intent = _unit_rows(
                (1 - sequential_strength) * user_factors[users] + sequential_strength * item_factors[picked]
            )

    # timestamps: each user starts at a random time and acts at irregular integer intervals
    starts = rng.integers(0, 10_000_000, size=num_users)
    gaps = rng.integers(1, 3_600, size=(num_users, high))
    times = starts[:, None] + np.cumsum(gaps, axis=1)
    user_index, position = np.nonzero(choices >= 0)
    user_ids = [f"u{index}" for index in range(num_users)]
    item_ids = [f"i{index}" for index in range(num_items)]
    log = pd.DataFrame(
        {
            "user_id": np.asarray(user_ids, dtype=object)[user_index],
            "item_id": np.asarray(item_ids, dtype=object)[choices[user_index, position]],
            "timestamp": times[user_index, position].astype(np.float64),
            "_user": user_index,
        }
    )
    log = log.sort_values(["timestamp", "_user"], kind="stable").drop(columns="_user").reset_index(drop=True)

    # text: the two dominant signed latent directions of each item, e.g. "genre_3 genre_17"
    signed = np.concatenate([item_factors, -item_factors], axis=1)
    top = np.argsort(-signed, axis=1, kind="stable")[:, :2]
    texts = [f"item {index} genre_{top[index, 0]} genre_{top[index, 1]}" for index in range(num_items)]
    items = pd.DataFrame({"item_id": item_ids, "text": texts, "popularity": popularity})
    logger.info(
        "Simulated %d interactions of %d users on %d items (exposure_bias=%s, popularity_skew=%s).",
        len(log),
        num_users,
        num_items,
        exposure_bias,
        popularity_skew,
    )
    return SimulatedLogs(
        log=log,
        items=items,
        item_features=item_features,
        user_factors=user_factors,
        item_factors=item_factors,
        item_popularity=popularity,
        exposure_probability=exposure,
        user_ids=user_ids,
        item_ids=item_ids,
        sequential_strength=float(sequential_strength),
        choice_temperature=float(choice_temperature),
    )
