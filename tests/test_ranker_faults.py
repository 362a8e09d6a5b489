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
Ranker faults during AdaGRPO training, under `on_failure="gate_out"`: NaN, ±inf and float32-overflowing scores,
exceptions, timeouts, an HTTP ranker whose server is killed and restarted mid-run. Every run finishes, the failures are
counted exactly, the parameters stay finite, and no row with a bad reward moves the policy through the GRPO term.
"""

import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from transformers import TrainerCallback

from adagrpo_trl import AdaGRPOTrainer
from adagrpo_trl.catalog import ItemCatalog
from adagrpo_trl.constrained import make_trie_processor_factory
from adagrpo_trl.gating import aggregate_rewards
from adagrpo_trl.rankers import HTTPRanker, RankerError, RankerServerThread
from adagrpo_trl.rewards import RankerReward

from . import toy
from .test_http_ranker import ITEM_IDS, free_port, with_history


ROOT = Path(__file__).resolve().parents[1]
CATALOG = ItemCatalog(ITEM_IDS, toy.ITEMS)
BAD_VALUES = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "huge": 1e39}  # 1e39 is inf in float32


class CyclicRanker:
    """Scores how close an item is to the one after the last item of the history (the toy task's ground truth)."""

    def score(self, contexts, candidate_item_ids):
        scores = []
        for context, item in zip(contexts, candidate_item_ids, strict=True):
            last = ITEM_IDS.index(context["history"][-1])
            scores.append(-((ITEM_IDS.index(item) - last - 1) % len(ITEM_IDS)) / len(ITEM_IDS))
        return scores


class ScriptedRanker(CyclicRanker):
    """
    `faults[k]` says how call k misbehaves: `"raise"`, `"sleep"` (past the reward's timeout), or a list of
    `(kind, row)` with kind in `BAD_VALUES`. `injected[k]` counts the rows call k made fail.
    """

    def __init__(self, faults, sleep=1.5):
        self.faults, self.sleep = faults, sleep
        self.calls, self.injected = 0, {}
        self.lock = threading.Lock()

    def score(self, contexts, candidate_item_ids):
        with self.lock:
            call, self.calls = self.calls, self.calls + 1
        scores = super().score(contexts, candidate_item_ids)
        fault = self.faults.get(call)
        if fault == "raise":
            self.injected[call] = len(scores)
            raise RuntimeError(f"injected failure on call {call}")
        if fault == "sleep":
            self.injected[call] = len(scores)
            time.sleep(self.sleep)
            return scores
        rows = set()
        for kind, row in fault or []:
            rows.add(row % len(scores))
            scores[row % len(scores)] = BAD_VALUES[kind]
        self.injected[call] = len(rows)
        return scores


class FaultRecorder(AdaGRPOTrainer):
    """
    Adds each rollout's rewards (after the trainer's sanitising) to the generation batch, where they are shuffled and
    split with the rows, and records every generation's gate and gate scores and every micro-batch the loss sees.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.generations, self.micro_batches = [], []
        self.recording = True

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        self._rollout_rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._gate_scores = None
        return self._rollout_rewards

    def _score_ground_truths_and_negatives(self, *args, **kwargs):
        self._gate_scores = super()._score_ground_truths_and_negatives(*args, **kwargs)
        return self._gate_scores

    def _compute_gate(self, output, stash, ground_truth_ids, num_generations, mode):
        gate = super()._compute_gate(output, stash, ground_truth_ids, num_generations, mode)
        self.generations.append(
            {"rewards": stash["rewards_per_func"].cpu(), "gate": gate.cpu(), "gate_scores": self._gate_scores}
        )
        return gate

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        output["rewards_per_func"] = self._rollout_rewards  # one process: the local rows are all rows
        return output

    def _compute_loss(self, model, inputs):
        if self.recording:
            self.micro_batches.append({k: v.detach().clone() for k, v in inputs.items() if torch.is_tensor(v)})
        return super()._compute_loss(model, inputs)


def make_trainer(tmp_path, reward_funcs, **config):
    tokenizer = toy.make_tokenizer()
    return FaultRecorder(
        model=toy.make_model(tokenizer),
        reward_funcs=reward_funcs,
        args=toy.tiny_config(tmp_path, **config),
        train_dataset=with_history(toy.make_dataset()),
        processing_class=tokenizer,
        logits_processors=[make_trie_processor_factory(CATALOG, tokenizer)],  # valid items: every row is scored
    )


def step_logs(trainer):
    return [log for log in trainer.state.log_history if "loss" in log]


def grads(trainer, inputs):
    trainer.model.zero_grad()
    trainer.compute_loss(trainer.model, inputs).backward()
    return {name: p.grad.clone() for name, p in trainer.model.named_parameters() if p.grad is not None}


def assert_finite_parameters(trainer):
    for name, p in trainer.model.named_parameters():
        assert torch.isfinite(p).all(), name


def assert_bad_rows_get_no_grpo_gradient(trainer, bad_column=None):
    """
    Rows with a missing reward (from every function, or from `bad_column`'s) have zero advantage, and the exact check:
    taking them out of the loss mask does not change the gradient by a single bit. Where the gate already took them
    out (gated modes), neither does giving them a huge advantage. Returns how many micro-batches held such rows.
    """
    trainer.recording = False
    trainer.model.train()
    checked = 0
    for inputs in trainer.micro_batches:
        rewards = inputs["rewards_per_func"]
        bad = torch.isnan(rewards).all(dim=1) if bad_column is None else torch.isnan(rewards[:, bad_column])
        if not bad.any():
            continue
        assert torch.isnan(rewards[bad]).all()  # a failed row keeps no reward from any function
        assert (inputs["advantages"][bad] == 0).all()
        mask = inputs.get("tool_mask", torch.ones_like(inputs["completion_mask"]))
        variants = [dict(inputs, tool_mask=mask * (~bad).unsqueeze(1).to(mask.dtype))]
        if (mask[bad] == 0).all():
            variants.append(dict(inputs, advantages=torch.where(bad, 1e3, inputs["advantages"])))
        expected = grads(trainer, inputs)
        for variant in variants:
            actual = grads(trainer, variant)
            for name in expected:
                assert torch.equal(expected[name], actual[name]), name
        checked += 1
    return checked


# ---------------------------------------------------------------------------------------------------------------------
# In-process ranker: NaN, inf, overflow, exceptions, timeouts
# ---------------------------------------------------------------------------------------------------------------------

# Two ranker calls per step (rollouts, then the gate's ground truths and negatives): call 2k is step k+1's rollouts.
FAULTS = {
    0: [("nan", 1)],
    2: [("inf", 0), ("-inf", 5)],
    3: "raise",
    4: "sleep",
    5: [("nan", 0)],  # the first prompt's ground truth
    6: [("huge", 2)],
    7: [("nan", 4)],  # a cross-query negative
}


@pytest.mark.parametrize("gate_mode", ["adaptive", "discriminability"])
def test_faulty_ranker_run_finishes_counts_failures_and_never_trains_on_them(tmp_path, gate_mode):
    ranker = ScriptedRanker(FAULTS)
    reward = RankerReward(ranker, CATALOG, on_failure="gate_out", timeout=0.5, deduplicate=False, batch_size=64)
    # gate_tau = gate_rho = 1 make R1 and R2 lenient: every scorable prompt is admitted in "discriminability"
    trainer = make_trainer(tmp_path, reward, gate_mode=gate_mode, max_steps=5, gate_tau=1.0, gate_rho=1.0)
    trainer.train()

    logs = step_logs(trainer)
    assert [log["step"] for log in logs] == [1, 2, 3, 4, 5]
    assert ranker.calls == 10
    assert reward.num_failures == sum(ranker.injected.values()) == 1 + 2 + 6 + 8 + 1 + 1 + 1
    # only the rollouts' failures reach the metric; those of the gate's scoring show in gate/unscorable_rate
    assert [log["rewards/ranker/failures"] for log in logs] == [ranker.injected[2 * k] for k in range(5)]
    assert_finite_parameters(trainer)
    assert all(math.isfinite(log["loss"]) and math.isfinite(log["grad_norm"]) for log in logs)

    # a prompt with a missing score (ground truth, a rollout or a negative) gets no GRPO term
    unscorable_rates = []
    for generation in trainer.generations:
        scores = aggregate_rewards(generation["rewards"], trainer.reward_weights).view(-1, 4)
        ground_truth, negatives = generation["gate_scores"]
        unscorable = torch.isnan(scores).any(1) | torch.isnan(ground_truth) | torch.isnan(negatives).any(1)
        gate = generation["gate"].view(-1, 4)
        assert not gate[unscorable].any()
        if gate_mode == "discriminability":
            assert gate.all(dim=1).tolist() == (~unscorable).tolist()
        unscorable_rates.append(unscorable.float().mean().item())
    assert unscorable_rates == [log["gate/unscorable_rate"] for log in logs] == [0.5, 1.0, 1.0, 1.0, 0.0]
    for inputs in trainer.micro_batches:  # ... so its rows are out of the loss mask
        bad = torch.isnan(inputs["rewards_per_func"]).any(dim=1)
        assert inputs["tool_mask"][bad].sum() == 0

    assert assert_bad_rows_get_no_grpo_gradient(trainer) == 4  # steps 1-4 had failed rollouts
    if gate_mode == "discriminability":  # the exact check has teeth: an admitted row's advantage does move the loss
        inputs = trainer.micro_batches[-1]
        assert inputs["tool_mask"].any()
        moved = dict(inputs, advantages=inputs["advantages"] + 1.0)
        before, after = grads(trainer, inputs), grads(trainer, moved)
        assert any(not torch.equal(before[name], after[name]) for name in before)


def length_reward(completions, **kwargs):
    return [0.1 * len(c) for c in completions]


def test_a_failed_ranker_row_loses_its_other_rewards_too(tmp_path):
    """Plain GRPO (`always`, no NLL) with the ranker and a second reward: a ranker failure is no partial reward."""
    ranker = ScriptedRanker({0: [("nan", 1), ("inf", 6)], 1: "raise"})  # one call per step: the gate scores nothing
    reward = RankerReward(ranker, CATALOG, on_failure="gate_out", deduplicate=False, batch_size=64)
    trainer = make_trainer(
        tmp_path, [reward, length_reward], gate_mode="always", nll_coef=0.0, max_steps=2, num_cross_negatives=0
    )
    trainer.train()
    assert reward.num_failures == 2 + 8
    assert [log["rewards/ranker/failures"] for log in step_logs(trainer)] == [2.0, 8.0]
    assert_finite_parameters(trainer)
    # the ranker's failed rows have no reward at all (the length reward alone would give them an advantage)
    assert assert_bad_rows_get_no_grpo_gradient(trainer, bad_column=0) == 2


def test_an_infinite_reward_from_a_plain_function_is_no_reward(tmp_path, caplog):
    calls = []

    def exploding_reward(completions, **kwargs):
        calls.append(len(completions))
        rewards = [0.1 * len(c) for c in completions]
        if len(calls) == 1:
            rewards[0], rewards[3] = math.inf, -math.inf
        return rewards

    trainer = make_trainer(tmp_path, exploding_reward, gate_mode="always", max_steps=2)
    with caplog.at_level(logging.WARNING):
        trainer.train()
    assert "2 infinite reward(s) from ['exploding_reward']" in caplog.text
    assert_finite_parameters(trainer)
    assert all(math.isfinite(log["reward"]) for log in step_logs(trainer))
    assert assert_bad_rows_get_no_grpo_gradient(trainer) == 1


def test_raise_policy_stops_the_run_naming_the_ranker(tmp_path):
    reward = RankerReward(ScriptedRanker({0: "raise"}), CATALOG, on_failure="raise")
    trainer = make_trainer(tmp_path, reward, max_steps=2)
    with pytest.raises(RankerError, match=r"'ranker'.*injected failure on call 0"):
        trainer.train()


# ---------------------------------------------------------------------------------------------------------------------
# HTTP ranker: timeouts and retries
# ---------------------------------------------------------------------------------------------------------------------


class SlowServerRanker(CyclicRanker):
    """Sleeps on the requests listed in `slow` (request numbers), until `release` is set or `seconds` pass."""

    def __init__(self, slow, seconds):
        self.slow, self.seconds = slow, seconds
        self.requests = 0
        self.release = threading.Event()

    def score(self, contexts, candidate_item_ids):
        request, self.requests = self.requests, self.requests + 1
        if request in self.slow:
            self.release.wait(self.seconds)
        return super().score(contexts, candidate_item_ids)


def history_pairs(count):
    contexts = [{"history": [ITEM_IDS[i % 16]]} for i in range(count)]
    return contexts, [ITEM_IDS[(i + 1) % 16] for i in range(count)]


def test_http_timeout_is_retried_and_recovers():
    ranker = SlowServerRanker(slow={0}, seconds=1.0)
    with RankerServerThread(ranker) as server:
        # the first attempt times out; the retry starts after the slow request is over and succeeds
        with HTTPRanker(server.url, timeout=0.5, max_retries=1, backoff=1.5) as client:
            assert client.score(*history_pairs(3)) == CyclicRanker().score(*history_pairs(3))
    assert ranker.requests == 2


def test_http_timeouts_after_the_retries_are_counted_failures():
    ranker = SlowServerRanker(slow={0, 1, 2}, seconds=5.0)
    log = {}
    with RankerServerThread(ranker) as server:
        try:
            client = HTTPRanker(server.url, timeout=0.3, max_retries=1, backoff=0.05)
            reward = RankerReward(client, CATALOG, on_failure="gate_out")
            start = time.monotonic()
            rewards = reward(
                completions=[toy.ITEMS[1], "<a_9>", toy.ITEMS[2]],
                history=[[ITEM_IDS[0]], [ITEM_IDS[0]], [ITEM_IDS[1]]],
                log_metric=lambda name, value: log.setdefault(name, []).append(value),
            )
            assert time.monotonic() - start < 3
            client.close()
        finally:
            ranker.release.set()
        # the server reaches the ranker once per request, serially: wait for the retry's turn
        deadline = time.monotonic() + 10
        while ranker.requests < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
    assert rewards == [None, -1.0, None]  # the invalid item never reaches the ranker
    assert reward.num_failures == 2 and log["rewards/ranker/failures"] == [2.0]
    assert ranker.requests == 2  # first attempt + one retry, no more


# ---------------------------------------------------------------------------------------------------------------------
# HTTP ranker server killed and restarted mid-run
# ---------------------------------------------------------------------------------------------------------------------


class ServerProcess:
    """`python -m adagrpo_trl.rankers.http` serving `CyclicRanker` on a fixed port."""

    def __init__(self, port):
        self.port, self.url, self.process = port, f"http://127.0.0.1:{port}", None

    def start(self, timeout=120):
        command = [
            sys.executable,
            "-m",
            "adagrpo_trl.rankers.http",
            "--ranker",
            "tests.test_ranker_faults:CyclicRanker",
        ]
        command += ["--port", str(self.port), "--log-level", "warning"]
        environment = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, self.process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, f"the ranker server did not start within {timeout} s"
            time.sleep(0.1)

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(30)
        if self.process is not None:
            self.process.stderr.close()


class KillAndRestart(TrainerCallback):
    """SIGKILLs the server after optimizer step `kill_after` and restarts it on the same port after `restart_after`."""

    def __init__(self, server, kill_after, restart_after):
        self.server, self.kill_after, self.restart_after = server, kill_after, restart_after

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.kill_after:
            self.server.kill()
        elif state.global_step == self.restart_after:
            self.server.start()


@pytest.mark.slow
def test_http_ranker_server_killed_and_restarted_mid_run(tmp_path):
    server = ServerProcess(free_port())
    server.start()
    client = HTTPRanker(server.url, batch_size=64, timeout=2.0, max_retries=2, backoff=0.05, concurrency=1)
    try:
        reward = RankerReward(client, CATALOG, on_failure="gate_out", deduplicate=False, batch_size=64)
        trainer = make_trainer(tmp_path, reward, max_steps=6, gate_tau=1.0, gate_rho=1.0)
        trainer.add_callback(KillAndRestart(server, kill_after=2, restart_after=4))
        trainer.train()
    finally:
        server.kill()
        client.close()

    logs = step_logs(trainer)
    assert [log["step"] for log in logs] == [1, 2, 3, 4, 5, 6]  # the run finished
    rows = trainer.args.per_device_train_batch_size
    gate_rows = rows // trainer.args.num_generations * (1 + trainer.args.num_cross_negatives)
    # steps 3 and 4 ran with the server down: every rollout and every gate score failed, and were counted
    assert [log["rewards/ranker/failures"] for log in logs] == [0, 0, rows, rows, 0, 0]
    assert [log["gate/unscorable_rate"] for log in logs] == [0, 0, 1, 1, 0, 0]
    assert logs[2]["gate/rate"] == logs[3]["gate/rate"] == 0
    assert reward.num_failures == 2 * (rows + gate_rows)
    assert_finite_parameters(trainer)
    assert assert_bad_rows_get_no_grpo_gradient(trainer) == 2
    # the client recovered on the restarted server: the last steps were scored over HTTP
    assert all(math.isfinite(log["rewards/ranker/mean"]) for log in logs[4:])
