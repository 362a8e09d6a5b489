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
"""The HTTP ranker service on loopback: server validation and limits, client retries, failure policy, training."""

import math
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import torch

from adagrpo_trl import AdaGRPOTrainer
from adagrpo_trl.catalog import ItemCatalog
from adagrpo_trl.rankers import HTTPRanker, RankerError, RankerServerThread, SASRecConfig, SASRecRanker
from adagrpo_trl.rewards import RankerReward

from . import toy


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ITEM_IDS = [f"item{index}" for index in range(len(toy.ITEMS))]


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def ranker():
    """A small SASRec on the toy task's cyclic item order: item k is followed by item k+1."""
    n = len(ITEM_IDS)
    sequences = [[ITEM_IDS[(start + j) % n] for j in range(8)] for start in range(n) for _ in range(4)]
    config = SASRecConfig(max_len=4, hidden_size=16, num_layers=1, num_heads=2, dropout=0.0)
    return SASRecRanker(config, device="cpu").fit(
        sequences, epochs=10, batch_size=16, lr=1e-2, loss="bce", num_negatives=4, show_progress=False
    )


@pytest.fixture(scope="module")
def server(ranker):
    handle = RankerServerThread(ranker, max_batch=64, max_body_bytes=20_000).start()
    yield handle
    handle.stop()


def pairs(count):
    contexts = [{"user_id": i, "history": [ITEM_IDS[i % 16], ITEM_IDS[(i + 1) % 16]]} for i in range(count)]
    candidates = [ITEM_IDS[(i * 7) % 16] for i in range(count)]
    return contexts, candidates


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FailingRanker:
    def __init__(self):
        self.calls = 0

    def score(self, contexts, candidate_item_ids):
        self.calls += 1
        raise RuntimeError("model not loaded")


class NaNRanker:
    def score(self, contexts, candidate_item_ids):
        return [math.nan if item == "item3" else 1.0 for item in candidate_item_ids]


# ---------------------------------------------------------------------------------------------------------------------
# Server
# ---------------------------------------------------------------------------------------------------------------------


def test_client_scores_equal_in_process_scores(server, ranker):
    contexts, candidates = pairs(50)
    with HTTPRanker(server.url, batch_size=8, concurrency=3, timeout=5) as client:
        assert client.health()["status"] == "ok"
        remote = client.score(contexts, candidates)
        assert client.score([], []) == []
    assert remote == pytest.approx(ranker.score(contexts, candidates), abs=1e-6)


def test_malformed_requests_get_4xx_and_the_server_stays_up(server):
    contexts, candidates = pairs(2)
    bad_requests = [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 422, "JSON object"),
        (b'{"contexts": []}', 422, "Missing key"),
        (b'{"contexts": [], "candidates": [], "extra": 1}', 422, "Unknown key"),
        (b'{"contexts": [1], "candidates": ["item1"]}', 422, "list of JSON objects"),
        (b'{"contexts": [{}], "candidates": [3]}', 422, "item id strings"),
        (b'{"contexts": [{}, {}], "candidates": ["item1"]}', 422, "same length"),
        (b"\xff\xfe", 400, "not valid JSON"),
    ]
    with httpx.Client(base_url=server.url, timeout=5) as http:
        for body, status, message in bad_requests:
            response = http.post("/score", content=body)
            assert response.status_code == status, body
            assert message in response.json()["error"]
        assert http.get("/score").status_code == 405
        assert http.get("/nowhere").status_code == 404
        ok = http.post("/score", json={"contexts": contexts, "candidates": candidates})
        assert ok.status_code == 200 and len(ok.json()["scores"]) == 2


def test_size_limits(server):
    with httpx.Client(base_url=server.url, timeout=5) as http:
        huge = {"contexts": [{"history": ["x" * 1000] * 30}], "candidates": ["item1"]}
        response = http.post("/score", json=huge)
        assert response.status_code == 413 and "limit" in response.json()["error"]

        def chunks():  # no Content-Length: the limit applies while streaming
            for _ in range(30):
                yield b" " * 1000

        assert http.post("/score", content=chunks()).status_code == 413
        contexts, candidates = pairs(65)
        response = http.post("/score", json={"contexts": [{}] * 65, "candidates": candidates})
        assert response.status_code == 413 and "max_batch=64" in response.json()["error"]
        assert http.get("/health").status_code == 200


def test_client_rejected_request_is_not_retried(server):
    with HTTPRanker(server.url, batch_size=100, max_retries=3, backoff=1.0) as client:
        start = time.monotonic()
        with pytest.raises(RankerError, match="HTTP 413.*max_batch"):
            client.score(*pairs(100))
        assert time.monotonic() - start < 1.0


def test_server_errors_are_retried_then_raise():
    failing = FailingRanker()
    with RankerServerThread(failing) as handle, HTTPRanker(handle.url, max_retries=2, backoff=0.01) as client:
        with pytest.raises(RankerError, match=r"after 3 attempt\(s\): HTTP 500.*model not loaded"):
            client.score(*pairs(3))
    assert failing.calls == 3


def test_non_finite_scores_come_back_as_nan_and_are_gated_out():
    catalog = ItemCatalog(ITEM_IDS, toy.ITEMS)
    with RankerServerThread(NaNRanker()) as handle, HTTPRanker(handle.url) as client:
        assert [math.isnan(s) for s in client.score([{}, {}], ["item3", "item4"])] == [True, False]
        reward = RankerReward(client, catalog, on_failure="gate_out")
        assert reward(completions=[toy.ITEMS[3], toy.ITEMS[4]], history=[[], []]) == [None, 1.0]


def test_client_timeout_raises_after_bounded_retries():
    release = threading.Event()

    class SlowRanker:
        def score(self, contexts, candidate_item_ids):
            release.wait(3)
            return [0.0] * len(candidate_item_ids)

    handle = RankerServerThread(SlowRanker()).start()
    try:
        with HTTPRanker(handle.url, timeout=0.2, max_retries=1, backoff=0.05) as client:
            start = time.monotonic()
            with pytest.raises(RankerError, match="after 2 attempt.*Timeout"):
                client.score(*pairs(2))
            assert time.monotonic() - start < 2.0
    finally:
        release.set()
        handle.stop()


def test_server_killed_mid_run(ranker, tmp_path):
    """A real server process, killed between two scoring calls: the client gives up after bounded retries."""
    ranker.save(tmp_path / "ranker")
    port = free_port()
    command = [sys.executable, "-m", "adagrpo_trl.rankers.http", "--ranker-dir", str(tmp_path / "ranker")]
    command += ["--port", str(port), "--device", "cpu", "--log-level", "warning"]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    catalog = ItemCatalog(ITEM_IDS, toy.ITEMS)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the server did not start within 60 s"
            time.sleep(0.1)

        client = HTTPRanker(url, batch_size=4, timeout=1.0, max_retries=2, backoff=0.05, concurrency=2)
        completions = [toy.ITEMS[1], "<a_9><b_9>", toy.ITEMS[2], toy.ITEMS[5]]
        histories = [[ITEM_IDS[0]], [], [ITEM_IDS[1]], [ITEM_IDS[4]]]
        reward = RankerReward(client, catalog, on_failure="gate_out")
        metrics = {}

        def log_metric(name, value):
            metrics.setdefault(name, []).append(value)

        before = reward(completions=completions, history=histories, log_metric=log_metric)
        assert before[1] == -1.0 and all(isinstance(r, float) for r in before)
        assert metrics["rewards/ranker/failures"] == [0.0]

        process.kill()
        process.wait(10)

        start = time.monotonic()
        with pytest.raises(RankerError, match=r"127\.0\.0\.1.*after 3 attempt\(s\)"):
            client.score([{"history": []}], ["item1"])
        after = reward(completions=completions, history=histories, log_metric=log_metric)
        assert time.monotonic() - start < 10
        assert after == [None, -1.0, None, None]
        assert metrics["rewards/ranker/failures"] == [0.0, 3.0]
        with pytest.raises(RankerError, match="'ranker'.*HTTPRanker"):
            RankerReward(client, catalog)(completions=completions, history=histories)
        client.close()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        process.stderr.close()


# ---------------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------------


def with_history(dataset):
    """The toy rows with the history as item ids (the context a ranker reads)."""
    index = dict(zip(toy.ITEMS, ITEM_IDS, strict=True))

    def add(row):
        sids = row["prompt"].removeprefix("history : ").removesuffix(" next :").split()
        return {"history": [index[s] for s in sids]}

    return dataset.map(add)


def test_adagrpo_trains_with_the_http_ranker_as_reward(server, tokenizer, dataset, tmp_path):
    catalog = ItemCatalog(ITEM_IDS, toy.ITEMS)
    client = HTTPRanker(server.url, batch_size=16, concurrency=2, timeout=5)
    reward = RankerReward(client, catalog, transform="sigmoid", tokenizer=tokenizer)
    trainer = AdaGRPOTrainer(
        model=toy.make_model(tokenizer),
        reward_funcs=reward,
        args=toy.tiny_config(tmp_path),
        train_dataset=with_history(dataset),
        processing_class=tokenizer,
    )
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    client.close()

    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2
    for entry in logs:
        assert entry["rewards/ranker/failures"] == 0.0
        assert 0.0 <= entry["rewards/ranker/invalid_rate"] <= 1.0
        assert math.isfinite(entry["rewards/ranker/mean"])
        assert "gate/rate" in entry and "gate/invalid_rollout_rate" in entry
        assert entry["gate/unscorable_rate"] == 0.0  # the gate scored every ground truth over HTTP
    assert reward.num_failures == 0
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters())


def test_adagrpo_gates_out_samples_when_the_ranker_is_down(tokenizer, dataset, tmp_path):
    catalog = ItemCatalog(ITEM_IDS, toy.ITEMS)
    client = HTTPRanker(f"http://127.0.0.1:{free_port()}", timeout=0.5, max_retries=1, backoff=0.01)
    reward = RankerReward(client, catalog, on_failure="gate_out", tokenizer=tokenizer)
    trainer = AdaGRPOTrainer(
        model=toy.make_model(tokenizer),
        reward_funcs=reward,
        args=toy.tiny_config(tmp_path, max_steps=1),
        train_dataset=with_history(dataset),
        processing_class=tokenizer,
    )
    trainer.train()
    client.close()
    (entry,) = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert entry["gate/unscorable_rate"] == 1.0  # no ground truth could be scored ...
    assert entry["gate/discriminability_rate"] == 0.0  # ... so no sample is trusted to the ranker
    assert entry["gate/rate"] == 0.0
    assert math.isfinite(entry["loss"])  # pure NLL
    assert reward.num_failures > 0
