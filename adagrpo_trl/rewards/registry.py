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
The reward registry: reward names used by recipes and the command line (`"sasrec"`, `"http"`, or a dotted path
`my_pkg.module:my_ranker`) resolved to TRL reward functions by [`get_reward_funcs`], like the reward registry of TRL's
scripts.
"""

import inspect
from collections.abc import Callable
from typing import Any

from ..rankers.base import resolve_dotted_path
from ..rankers.sasrec import SASRecRanker
from .hit import HitReward
from .ranker_reward import RankerReward


_REWARD_KEYS = tuple(
    name for name in inspect.signature(RankerReward.__init__).parameters if name not in ("self", "ranker", "catalog")
)


def _require_catalog(catalog: Any, name: str) -> None:
    if catalog is None:
        raise ValueError(f"The {name!r} reward needs catalog=... (an ItemCatalog) to map completions to items.")


def sasrec_reward(
    catalog: Any = None, ranker_path: str | None = None, device: str | None = None, **reward_kwargs: Any
) -> RankerReward:
    """
    `"sasrec"`: a [`RankerReward`] around a saved [`SASRecRanker`].

    Args:
        catalog (`ItemCatalog`):
            Maps completions to items.
        ranker_path (`str`):
            Directory written by [`SASRecRanker.save`] (or `train_ranker(..., output_dir=...)`).
        device (`str`, *optional*):
            Scoring device; defaults to CUDA when available.
        **reward_kwargs:
            [`RankerReward`] options (`transform`, `invalid_reward`, `on_failure`, ...).
    """
    _require_catalog(catalog, "sasrec")
    if ranker_path is None:
        raise ValueError("The 'sasrec' reward needs ranker_path=... (a directory saved by SASRecRanker.save).")
    return RankerReward(SASRecRanker.load(ranker_path, device=device), catalog, **reward_kwargs)


def http_reward(
    catalog: Any = None,
    url: str | None = None,
    request_batch_size: int = 256,
    request_timeout: float = 10.0,
    max_retries: int = 3,
    backoff: float = 0.5,
    max_backoff: float = 8.0,
    concurrency: int = 4,
    headers: dict[str, str] | None = None,
    **reward_kwargs: Any,
) -> RankerReward:
    """
    `"http"`: a [`RankerReward`] around an [`HTTPRanker`] client of a ranker service.

    Args:
        catalog (`ItemCatalog`):
            Maps completions to items.
        url (`str`):
            Base URL of the service (`serve-ranker`, or `python -m adagrpo_trl.rankers.http`).
        request_batch_size, request_timeout, max_retries, backoff, max_backoff, concurrency, headers:
            [`HTTPRanker`]'s `batch_size`, `timeout`, `max_retries`, `backoff`, `max_backoff`, `concurrency` and
            `headers`.
        **reward_kwargs:
            [`RankerReward`] options; its `batch_size` (pairs handed to the client at once, split into concurrent
            requests of `request_batch_size`) defaults to `request_batch_size * concurrency` here.
    """
    _require_catalog(catalog, "http")
    if url is None:
        raise ValueError("The 'http' reward needs url=... (the base URL of the ranker service).")
    from ..rankers.http import HTTPRanker  # imports HTTPX: only when an "http" reward is built

    client = HTTPRanker(
        url,
        batch_size=request_batch_size,
        timeout=request_timeout,
        max_retries=max_retries,
        backoff=backoff,
        max_backoff=max_backoff,
        concurrency=concurrency,
        headers=headers,
    )
    reward_kwargs.setdefault("batch_size", request_batch_size * concurrency)
    return RankerReward(client, catalog, **reward_kwargs)


def hit_reward(catalog: Any = None) -> HitReward:
    """
    `"hit"`: a [`HitReward`] (1 for the row's ground-truth item, 0 otherwise). Pair it with a ranker reward and
    `gate_reward_weights` that give it weight 0, so the gate judges the ranker alone.
    """
    _require_catalog(catalog, "hit")
    return HitReward(catalog)


# Reward names for recipes and the command line, like the reward registry of TRL's scripts.
REWARD_FACTORIES: dict[str, Callable[..., Any]] = {"sasrec": sasrec_reward, "http": http_reward, "hit": hit_reward}


def _accepted_keys(factory: Callable[..., Any]) -> set[str]:
    params = inspect.signature(factory).parameters
    keys = {name for name, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        keys |= set(_REWARD_KEYS)
    return keys


def dotted_path_reward(
    path: str, catalog: Any = None, ranker_kwargs: dict[str, Any] | None = None, **reward_kwargs: Any
) -> Any:
    """
    A reward from a dotted path `"pkg.module:attr"`:

    - an object with a `score` method (a ranker) → wrapped in a [`RankerReward`];
    - a class → instantiated with `ranker_kwargs`; if the instance has `score` it is wrapped like a ranker, otherwise
      it is returned as a reward function;
    - any other callable → returned unchanged as a TRL reward function (as TRL's scripts do).
    """
    obj = resolve_dotted_path(path)
    if isinstance(obj, type):
        obj = obj(**(ranker_kwargs or {}))
    elif ranker_kwargs:
        raise ValueError(f"ranker_kwargs apply to a class, but {path!r} is a {type(obj).__name__}.")
    if callable(getattr(obj, "score", None)):
        _require_catalog(catalog, path)
        return RankerReward(obj, catalog, **reward_kwargs)
    if not callable(obj):
        raise ValueError(f"{path!r} is neither a ranker (no `score` method) nor a callable reward function.")
    return obj


def get_reward_funcs(names: str | list[str], **kwargs: Any) -> list[Any]:
    """
    Reward functions from names, for recipes: `"sasrec"`, `"http"`, `"hit"` (see [`REWARD_FACTORIES`]) or a dotted path
    `"pkg.module:attr"` (see [`dotted_path_reward`]).

    Args:
        names (`str` or `list[str]`):
            Reward names.
        **kwargs:
            Options, each handed to every factory that takes it: `catalog`, `ranker_path`, `device` (sasrec), `url`,
            `request_batch_size`, `request_timeout`, `max_retries`, `backoff`, `max_backoff`, `concurrency`, `headers`
            (http), `ranker_kwargs` (dotted-path classes) and the [`RankerReward`] options (`invalid_reward`,
            `transform`, `num_generations`, `batch_size`, `on_failure`, `timeout`, `tokenizer`, `context_columns`,
            `deduplicate`, `name`, `user_histories`, `popularity_bias`, `item_counts`); `"hit"` takes `catalog` only. An option that no requested reward takes raises a `TypeError`.

    Returns:
        `list`: one reward function per name.

    Raises:
        `ValueError`: for an unknown name (listing the valid ones) or a missing option.

    Example:

    ```python
    reward_funcs = get_reward_funcs(["sasrec"], catalog=catalog, ranker_path="ranker", transform="sigmoid")
    ```
    """
    if isinstance(names, str):
        names = [names]
    factories = []
    for name in names:
        if name in REWARD_FACTORIES:
            factories.append((REWARD_FACTORIES[name], {}))
        elif "." in name or ":" in name:
            factories.append((dotted_path_reward, {"path": name}))
        else:
            raise ValueError(
                f"Unknown reward {name!r}. Valid names: {sorted(REWARD_FACTORIES)}, or a dotted path "
                "'package.module:attribute' to a ranker or reward function."
            )
    accepted = [_accepted_keys(factory) - set(fixed) for factory, fixed in factories]
    unused = sorted(set(kwargs).difference(*accepted))
    if unused:
        raise TypeError(f"Option(s) {unused} are taken by none of the rewards {names}.")
    return [
        factory(**fixed, **{k: v for k, v in kwargs.items() if k in keys})
        for (factory, fixed), keys in zip(factories, accepted, strict=True)
    ]
