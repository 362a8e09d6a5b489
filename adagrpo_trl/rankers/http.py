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
A ranker as an HTTP service, because production rankers are services: a server (Starlette + Uvicorn) that serves any
ranker object, and [`HTTPRanker`], a client with batching, connection reuse, timeouts, bounded retries with
exponential backoff, and concurrent batches, usable wherever a ranker is (e.g. inside
[`~adagrpo_trl.RankerReward`]).

Protocol (JSON over HTTP):

- `GET /health` → `200 {"status": "ok", "ranker": "...", "max_batch": N, "max_body_bytes": N}`.
- `POST /score` with `{"contexts": [{...}, ...], "candidates": ["item", ...]}` (equal lengths, at most `max_batch`
  pairs, a body of at most `max_body_bytes`) → `200 {"scores": [float | null, ...]}`, one per pair; `null` stands for
  a non-finite score (JSON has no NaN). Errors answer `{"error": "<message>"}`: `400` for a body that is not JSON,
  `413` for a body or a batch over the limits, `422` for a well-formed body with missing or unknown keys, wrong types
  or a length mismatch, `500` when the ranker fails.

Run a server from the command line with `python -m adagrpo_trl.rankers.http --ranker-dir path/to/sasrec` (or
`--ranker my_pkg.module:my_ranker`); it binds to `127.0.0.1` unless told otherwise. The server has no
authentication: keep it on loopback or behind one.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .base import RankerError, resolve_dotted_path


logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 4096
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


# ---------------------------------------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------------------------------------


class _BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise _BadRequest(400, f"Invalid Content-Length header {declared!r}.") from None
        if size > limit:
            raise _BadRequest(413, f"Request body of {size} bytes exceeds the limit of {limit} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _BadRequest(413, f"Request body exceeds the limit of {limit} bytes.")
    return bytes(body)


def _validate_score_request(payload: Any, max_batch: int) -> tuple[list[dict[str, Any]], list[str]]:
    if not isinstance(payload, dict):
        raise _BadRequest(422, f"The body must be a JSON object, got {type(payload).__name__}.")
    missing = [key for key in ("contexts", "candidates") if key not in payload]
    if missing:
        raise _BadRequest(422, f"Missing key(s) {missing}; expected {{'contexts': [...], 'candidates': [...]}}.")
    unknown = sorted(set(payload) - {"contexts", "candidates"})
    if unknown:
        raise _BadRequest(422, f"Unknown key(s) {unknown}; expected only 'contexts' and 'candidates'.")
    contexts, candidates = payload["contexts"], payload["candidates"]
    if not isinstance(contexts, list) or not all(isinstance(c, dict) for c in contexts):
        raise _BadRequest(422, "'contexts' must be a list of JSON objects.")
    if not isinstance(candidates, list) or not all(isinstance(c, str) for c in candidates):
        raise _BadRequest(422, "'candidates' must be a list of item id strings.")
    if len(contexts) != len(candidates):
        raise _BadRequest(
            422, f"'contexts' and 'candidates' must have the same length, got {len(contexts)} and {len(candidates)}."
        )
    if len(candidates) > max_batch:
        raise _BadRequest(413, f"{len(candidates)} pairs exceed the server's max_batch={max_batch}.")
    return contexts, candidates


def create_app(
    ranker: Any, max_batch: int = DEFAULT_MAX_BATCH, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> Starlette:
    """
    The ASGI app that serves `ranker` (see the module docstring for the protocol).

    Args:
        ranker (`Ranker`):
            Any object with `score(contexts, candidate_item_ids) -> Sequence[float]`. Calls are serialised (one at a
            time, in a worker thread), so the ranker needs not be thread-safe.
        max_batch (`int`, *optional*, defaults to `4096`):
            Most pairs per request (more → `413`).
        max_body_bytes (`int`, *optional*, defaults to `16 MiB`):
            Largest request body (more → `413`).

    Returns:
        `starlette.applications.Starlette`.
    """
    if not callable(getattr(ranker, "score", None)):
        raise TypeError(
            f"ranker must have a `score(contexts, candidate_item_ids)` method, got {type(ranker).__name__}."
        )
    if max_batch < 1 or max_body_bytes < 1:
        raise ValueError(f"max_batch and max_body_bytes must be >= 1, got {max_batch} and {max_body_bytes}.")
    lock = threading.Lock()

    def run_ranker(contexts: list[dict[str, Any]], candidates: list[str]) -> list[float]:
        with lock:
            result = ranker.score(contexts, candidates)
        if hasattr(result, "tolist"):
            result = result.tolist()
        return [float(s) for s in result]

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {"status": "ok", "ranker": repr(ranker), "max_batch": max_batch, "max_body_bytes": max_body_bytes}
        )

    async def score(request: Request) -> JSONResponse:
        try:
            body = await _read_body(request, max_body_bytes)
            try:
                payload = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise _BadRequest(400, f"The body is not valid JSON: {error}.") from None
            contexts, candidates = _validate_score_request(payload, max_batch)
        except _BadRequest as error:
            return JSONResponse({"error": error.message}, status_code=error.status)
        try:
            scores = await run_in_threadpool(run_ranker, contexts, candidates)
        except Exception as error:
            logger.exception("The ranker failed on a batch of %d pairs.", len(candidates))
            return JSONResponse({"error": f"The ranker failed: {type(error).__name__}: {error}"}, status_code=500)
        if len(scores) != len(candidates):
            return JSONResponse(
                {"error": f"The ranker returned {len(scores)} scores for {len(candidates)} pairs."}, status_code=500
            )
        return JSONResponse({"scores": [s if math.isfinite(s) else None for s in scores]})

    return Starlette(routes=[Route("/health", health, methods=["GET"]), Route("/score", score, methods=["POST"])])


def _warn_if_exposed(host: str) -> None:
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        logger.warning("Serving the ranker on %s, beyond loopback: the server has no authentication.", host)


def _uvicorn_server(
    ranker: Any, host: str, port: int, max_batch: int, max_body_bytes: int, log_level: str, access_log: bool
) -> Any:
    import uvicorn

    _warn_if_exposed(host)
    app = create_app(ranker, max_batch=max_batch, max_body_bytes=max_body_bytes)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="off", access_log=access_log)
    return uvicorn.Server(config)


def serve_ranker(
    ranker: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    log_level: str = "info",
) -> None:
    """
    Serves `ranker` over HTTP with Uvicorn until interrupted (blocking). Binds to loopback by default. The one serve
    entry point: `adagrpo-trl serve-ranker` and `python -m adagrpo_trl.rankers.http` call it; [`RankerServerThread`]
    runs the same app in a background thread instead.

    Args:
        ranker (`Ranker`):
            Anything with `score(contexts, candidate_item_ids)`, e.g. [`~adagrpo_trl.rankers.SASRecRanker`].
        host (`str`, *optional*, defaults to `"127.0.0.1"`):
            Interface to bind; anything but loopback logs a warning (no authentication).
        port (`int`, *optional*, defaults to `8000`):
            TCP port.
        max_batch, max_body_bytes:
            Request limits, see [`create_app`].
        log_level (`str`, *optional*, defaults to `"info"`):
            Uvicorn's log level.

    Example:

    ```python
    from adagrpo_trl.rankers import SASRecRanker, serve_ranker

    serve_ranker(SASRecRanker.load("ranker"), port=8000)
    ```
    """
    server = _uvicorn_server(ranker, host, port, max_batch, max_body_bytes, log_level, access_log=True)
    with contextlib.suppress(KeyboardInterrupt):  # as `uvicorn.run` does
        server.run()


class RankerServerThread:
    """
    A ranker server running in a background thread of this process (tests, notebooks, single-machine runs): the app
    of [`serve_ranker`], not blocking. Use it as a context manager (it starts on entry), or call [`start`] and
    [`stop`].

    Args:
        ranker (`Ranker`):
            Anything with `score(contexts, candidate_item_ids)`.
        host (`str`, *optional*, defaults to `"127.0.0.1"`):
            Interface to bind.
        port (`int`, *optional*, defaults to `0`):
            TCP port; `0` picks a free one (see `url`).
        max_batch, max_body_bytes:
            Request limits, see [`create_app`].
        log_level (`str`, *optional*, defaults to `"warning"`):
            Uvicorn's log level.

    Attributes:
        url (`str`): the base URL once started, e.g. `"http://127.0.0.1:53123"` (the port is the one actually bound).

    Example:

    ```python
    with RankerServerThread(ranker) as server, HTTPRanker(server.url) as client:
        client.score([{"history": ["1"]}], ["2"])
    ```
    """

    def __init__(
        self,
        ranker: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        log_level: str = "warning",
    ):
        self._server = _uvicorn_server(ranker, host, port, max_batch, max_body_bytes, log_level, access_log=False)
        self._thread = threading.Thread(target=self._server.run, name="ranker-server", daemon=True)
        self.host = host
        self.url: str | None = None

    def start(self, timeout: float = 10.0) -> RankerServerThread:
        """Starts the server and waits (at most `timeout` seconds) until it accepts connections; returns `self`."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"The ranker server did not start on {self.host} within {timeout} s.")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{port}"
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Asks the server to exit and joins its thread (at most `timeout` seconds)."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> RankerServerThread:
        return self if self.url is not None else self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def run_server_in_thread(ranker: Any, host: str = "127.0.0.1", port: int = 0, **kwargs: Any) -> RankerServerThread:
    """`RankerServerThread(ranker, ...).start()`, kept for backward compatibility: use [`RankerServerThread`]."""
    return RankerServerThread(ranker, host=host, port=port, **kwargs).start()


# ---------------------------------------------------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------------------------------------------------


class HTTPRanker:
    """
    A ranker served over HTTP (the protocol of this module), usable wherever an in-process ranker is.

    [`score`] splits the pairs into batches of `batch_size`, posts up to `concurrency` batches at once over one
    pooled, keep-alive connection set, and retries a batch that fails with a connection error, a timeout, a `5xx` or a
    `429`, at most `max_retries` times, sleeping `min(max_backoff, backoff * 2**attempt)` seconds before retry
    `attempt + 1`. A `4xx` (a malformed request) is not retried. When a batch still fails, [`score`] raises a
    [`~adagrpo_trl.rankers.RankerError`] naming the URL and the batch, which
    [`~adagrpo_trl.RankerReward`]'s failure policy then handles. A batch therefore takes at most about
    `(max_retries + 1) * timeout + Σ backoffs` seconds. `null` scores (non-finite on the server) come back as NaN.

    Args:
        url (`str`):
            Base URL of the server, e.g. `"http://127.0.0.1:8000"`.
        batch_size (`int`, *optional*, defaults to `256`):
            Pairs per request (keep it at or below the server's `max_batch`).
        timeout (`float`, *optional*, defaults to `10.0`):
            Seconds for each of connect / read / write / pool wait of one request.
        max_retries (`int`, *optional*, defaults to `3`):
            Retries per batch after the first attempt.
        backoff (`float`, *optional*, defaults to `0.5`):
            Base of the exponential backoff, in seconds.
        max_backoff (`float`, *optional*, defaults to `8.0`):
            Cap of one backoff sleep.
        concurrency (`int`, *optional*, defaults to `4`):
            Batches in flight at once (threads and pooled connections).
        headers (`dict[str, str]`, *optional*):
            Extra headers for every request (e.g. authentication of a gateway).
    """

    def __init__(
        self,
        url: str,
        batch_size: int = 256,
        timeout: float = 10.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        concurrency: int = 4,
        headers: Mapping[str, str] | None = None,
    ):
        for name, value in (("batch_size", batch_size), ("concurrency", concurrency)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {name}={value!r}.")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got max_retries={max_retries!r}.")
        if not timeout > 0 or backoff < 0 or max_backoff < 0:
            raise ValueError(
                f"Need timeout > 0, backoff >= 0 and max_backoff >= 0, got {timeout}, {backoff} and {max_backoff}."
            )
        self.url = url.rstrip("/")
        self.batch_size = batch_size
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.concurrency = concurrency
        self._client = httpx.Client(
            base_url=self.url,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            headers={"content-type": "application/json", **dict(headers or {})},
        )
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HTTPRanker(url={self.url!r})"

    def health(self) -> dict[str, Any]:
        """The server's `/health` answer (no retries). Raises [`RankerError`] if it is unreachable or unhealthy."""
        try:
            response = self._client.get("/health")
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as error:
            raise RankerError(f"Ranker service {self.url} is not healthy: {type(error).__name__}: {error}") from error

    def score(self, contexts: Sequence[Mapping[str, Any]], candidate_item_ids: Sequence[str]) -> list[float]:
        """
        Scores `(context, candidate)` pairs on the server.

        Args:
            contexts (`Sequence[Mapping[str, Any]]`):
                JSON-serialisable contexts (numpy scalars and arrays are converted), one per pair.
            candidate_item_ids (`Sequence[str]`):
                Item ids, one per pair.

        Returns:
            `list[float]`: one score per pair (NaN where the server returned `null`).

        Raises:
            [`RankerError`]: a batch failed after its retries, or was rejected (`4xx`), or the answer is malformed.
        """
        if len(contexts) != len(candidate_item_ids):
            raise ValueError(f"Got {len(contexts)} contexts for {len(candidate_item_ids)} candidates.")
        batches = [
            (
                number,
                list(contexts[start : start + self.batch_size]),
                [str(c) for c in candidate_item_ids[start : start + self.batch_size]],
            )
            for number, start in enumerate(range(0, len(candidate_item_ids), self.batch_size))
        ]
        if len(batches) <= 1 or self.concurrency == 1:
            results = [self._score_batch(*batch) for batch in batches]
        else:
            with self._executor_lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="http-ranker")
                executor = self._executor
            results = list(executor.map(lambda batch: self._score_batch(*batch), batches))
        return [score for result in results for score in result]

    def _score_batch(self, number: int, contexts: list[Mapping[str, Any]], candidates: list[str]) -> list[float]:
        where = f"batch {number} ({len(candidates)} pairs, first items {candidates[:3]})"
        body = json.dumps({"contexts": contexts, "candidates": candidates}, default=_json_default, allow_nan=False)
        last_error = "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
            try:
                response = self._client.post("/score", content=body)
            except httpx.TransportError as error:  # connection refused/reset, timeouts, protocol errors
                last_error = f"{type(error).__name__}: {error}"
                logger.debug("Ranker %s, %s, attempt %d: %s", self.url, where, attempt + 1, last_error)
                continue
            if response.status_code >= 500 or response.status_code == 429:
                last_error = f"HTTP {response.status_code}: {_error_message(response)}"
                logger.debug("Ranker %s, %s, attempt %d: %s", self.url, where, attempt + 1, last_error)
                continue
            if response.status_code != 200:
                raise RankerError(
                    f"Ranker service {self.url} rejected {where} with HTTP {response.status_code}: "
                    f"{_error_message(response)}"
                )
            return _parse_scores(response, len(candidates), self.url, where)
        raise RankerError(
            f"Ranker service {self.url} failed on {where} after {self.max_retries + 1} attempt(s): {last_error}"
        )

    def close(self) -> None:
        """Closes the pooled connections and the worker threads."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        self._client.close()

    def __enter__(self) -> HTTPRanker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays, torch tensors
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serialisable")


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except (ValueError, AttributeError):
        return response.text[:500]


def _parse_scores(response: httpx.Response, expected: int, url: str, where: str) -> list[float]:
    try:
        scores = response.json()["scores"]
        if not isinstance(scores, list):
            raise TypeError("'scores' is not a list")
        out = [math.nan if s is None else float(s) for s in scores]
    except (ValueError, KeyError, TypeError) as error:
        raise RankerError(f"Ranker service {url} sent a malformed answer to {where}: {error}") from error
    if len(out) != expected:
        raise RankerError(f"Ranker service {url} returned {len(out)} scores for {where}.")
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------------


def load_ranker(ranker_dir: str | None = None, ranker: str | None = None, device: str | None = None) -> Any:
    """A saved [`~adagrpo_trl.rankers.SASRecRanker`] (`ranker_dir`), or the object at a dotted path `module:attr`
    (a class is instantiated without arguments)."""
    if (ranker_dir is None) == (ranker is None):
        raise ValueError("Give exactly one of ranker_dir (a saved SASRec ranker) and ranker (a 'module:attr' path).")
    if ranker_dir is not None:
        from .sasrec import SASRecRanker

        return SASRecRanker.load(ranker_dir, device=device)
    obj = resolve_dotted_path(ranker)
    return obj() if isinstance(obj, type) else obj


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m adagrpo_trl.rankers.http --ranker-dir DIR [--host 127.0.0.1] [--port 8000]`: serve a ranker."""
    parser = argparse.ArgumentParser(prog="python -m adagrpo_trl.rankers.http", description=main.__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ranker-dir", help="directory of a saved SASRecRanker")
    source.add_argument("--ranker", help="dotted path 'module:attr' of a ranker object or class")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH)
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument("--device", default=None, help="device of a SASRec ranker (default: cuda if available)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    ranker = load_ranker(args.ranker_dir, args.ranker, args.device)
    serve_ranker(
        ranker,
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        max_body_bytes=args.max_body_bytes,
        log_level=args.log_level,
    )


if __name__ == "__main__":
    main()
