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
Speed benchmark: what AdaGRPO costs on top of GRPO, trie-constrained generation, the trie build and evaluation.

Every comparison runs both sides in the same process, interleaved, after warm-up, and reports the median over
rounds of the ratio of the two sides' times within a round (adjacent in time), so that load from other processes on a
shared machine affects both sides alike. Times are process CPU times with one torch thread and one side computing at a
time (wall-clock ratios, inflated by other processes, are in the JSON as `*_wall`).

1. `adagrpo_over_grpo_step`: step time of [`AdaGRPOTrainer`] over the step time of TRL's `GRPOTrainer`, same model (the
   ML-100K recipe's 2-layer, hidden-128 Qwen2, briefly warm-started on the data so most rollouts are catalog items),
   data, SASRec ranker reward, rollout mode and K. The trainers run in threads that take turns one optimizer step at a
   time (a baton passed in `on_step_begin`), so exactly one trainer computes at any moment, and a `TrainerCallback`
   times each step from `on_step_begin` to `on_step_end`. Baselines: with sampling rollouts, `trl.GRPOTrainer`
   itself; with beam rollouts (which `GRPOTrainer` cannot do), `AdaGRPOTrainer` with the AdaGRPO machinery off
   (`gate_mode="always", nll_coef=0, num_cross_negatives=0`), which is also reported for sampling. The peak memory
   of a step (RSS high-water mark above the RSS before the step) is measured in separate, untimed steps.
2. `constrained_over_unconstrained_generate`: beam search (20 beams, 20 returned sequences, batch 8) of a small random
   Qwen2 with and without [`TrieLogitsProcessor`], catalogs of 10K, 100K and 1M items. All three share one 4-level
   codebook of 32 codes per level (at most 1,048,576 items), so the model and vocabulary are identical and only the
   catalog changes; the 1M catalog is 95% dense, the largest allowed sets (worst case for the processor).
3. `trie_build_seconds` / `trie_build_peak_mb`: the prefix trie of a random 1,000,000-item, 4-level catalog (codebook
   256) from its token ids (this section and section 2 replace the former `benchmarks/trie_build.py`).
4. `eval_users_per_second`: [`evaluate_recommendations`] (beam 20, unconstrained and trie-constrained passes).
5. Scaling: AdaGRPO step time against K and against the catalog size (trie-constrained sampling rollouts, the SASRec
   ranker over the whole catalog), as a table and `benchmarks/results/speed/speed_scaling.png`.

Usage:

```bash
python benchmarks/speed.py --quick     # 1-2 minutes on 2 CPU cores (`make bench-speed`)
python benchmarks/speed.py             # about 3 minutes: more steps and repeats, K from 4 to 32, 1M items in the scaling
python benchmarks/speed.py --sections trie generate    # what benchmarks/trie_build.py measured
```

Each figure is printed as `name: value`, with the targets. The full run writes `benchmarks/results/speed/speed.json` and
the scaling plot `benchmarks/results/speed/speed_scaling.png` (the committed results); `--quick` writes `speed_quick.json` and
`speed_scaling_quick.png` beside them, never over the committed files.
"""

import argparse
import contextlib
import ctypes
import functools
import gc
import json
import os
import platform
import re
import statistics
import tempfile
import threading
import time
import tracemalloc
from typing import Any


os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import Qwen2ForCausalLM, TrainerCallback  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from adagrpo_trl import AdaGRPOConfig, AdaGRPOTrainer, ItemCatalog  # noqa: E402
from adagrpo_trl.catalog import build_trie  # noqa: E402
from adagrpo_trl.constrained import build_generation_config, make_trie_processor_factory  # noqa: E402
from adagrpo_trl.data.splits import PROMPT_WORDS, format_prompt  # noqa: E402
from adagrpo_trl.evaluation import evaluate_recommendations  # noqa: E402
from adagrpo_trl.rewards import RankerReward, SASRecConfig, SASRecRanker  # noqa: E402
from adagrpo_trl.tokenization import build_sid_tokenizer, sid_token, small_qwen2_config  # noqa: E402


BASELINES = {
    "grpo": "trl.GRPOTrainer (same model, data, reward, sampling rollouts, K)",
    "off": "AdaGRPOTrainer with the AdaGRPO machinery off: gate_mode='always', nll_coef=0, num_cross_negatives=0 "
    "(same beam rollouts)",
}
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "speed")
SECTIONS = ("step", "generate", "trie", "eval", "scaling")

# The ML-100K recipe's policy (recipes/ml-100k/pipeline.yaml) and training settings.
POLICY = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
ML_ITEMS = 1682  # MovieLens-100K's catalog size
ML_CODEBOOK = 12  # 3 levels of 12 codes + a 1-code dedup level: 4 SID tokens + EOS, like the recipe
HISTORY = 10  # the recipe's max_history
PROMPTS_PER_STEP = 8  # the recipe's 64 rows per step at K = 8
ADAGRPO = {"gate_mode": "adaptive", "num_cross_negatives": 4, "gate_tau": 0.25, "gate_rho": 0.5}  # the recipe's


# ---------------------------------------------------------------------------------------------------------------------
# Measurement helpers
# ---------------------------------------------------------------------------------------------------------------------


def rss_kb(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as file:
        return int(re.search(rf"{field}:\s+(\d+)", file.read()).group(1))


def reset_peak_rss() -> bool:
    """Resets the RSS high-water mark (Linux `clear_refs`), after returning freed heap to the OS."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        with open("/proc/self/clear_refs", "w") as file:
            file.write("5")
        return True
    except OSError:
        return False


class Baton:
    """Lets trainers that train in separate threads take turns, one optimizer step each, in a fixed order."""

    def __init__(self, names: list[str]):
        self.order = list(names)
        self.active = set(names)
        self.turn = 0
        self.condition = threading.Condition()

    def acquire(self, name: str) -> None:
        with self.condition:
            self.condition.wait_for(lambda: self.order[self.turn] == name)

    def release(self, name: str) -> None:
        with self.condition:
            self._advance()
            self.condition.notify_all()

    def finish(self, name: str) -> None:
        with self.condition:
            self.active.discard(name)
            if self.active and self.order[self.turn] == name:
                self._advance()
            self.condition.notify_all()

    def _advance(self) -> None:
        for _ in range(len(self.order)):
            self.turn = (self.turn + 1) % len(self.order)
            if self.order[self.turn] in self.active:
                return


class StepTimer(TrainerCallback):
    """
    Times each optimizer step (`on_step_begin` to `on_step_end`) in wall-clock and process CPU time, and hands the
    baton over between steps. The last `memory_steps` steps are not timed: they measure the step's peak memory.
    """

    def __init__(self, name: str, baton: Baton, warmup: int, memory_steps: int):
        self.name = name
        self.baton = baton
        self.warmup = warmup
        self.memory_steps = memory_steps
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.peak_mb: list[float] = []
        self._steps = 0
        self._start = (0.0, 0.0)
        self._rss_before = 0
        self._track_memory = False

    def on_step_begin(self, args, state, control, **kwargs):
        if self._steps > 0:
            self.baton.release(self.name)
            self.baton.acquire(self.name)
        self._track_memory = self._steps >= state.max_steps - self.memory_steps
        if self._track_memory:
            gc.collect()
            reset_peak_rss()
            self._rss_before = rss_kb()
        self._start = (time.perf_counter(), time.process_time())

    def on_step_end(self, args, state, control, **kwargs):
        wall, cpu = time.perf_counter() - self._start[0], time.process_time() - self._start[1]
        if self._track_memory:
            self.peak_mb.append((rss_kb("VmHWM") - self._rss_before) / 1024)
        elif self._steps >= self.warmup:
            self.wall.append(wall)
            self.cpu.append(cpu)
        self._steps += 1


def run_interleaved(trainers: dict[str, Any], warmup: int, steps: int, memory_steps: int) -> dict[str, StepTimer]:
    """Trains every trainer in its own thread, one optimizer step at a time in turn; returns the timers."""
    baton = Baton(list(trainers))
    timers = {}
    for name, trainer in trainers.items():
        timers[name] = StepTimer(name, baton, warmup, memory_steps)
        trainer.add_callback(timers[name])
        trainer.args.max_steps = trainer.args.logging_steps = warmup + steps + memory_steps
    errors = []

    def train(name, trainer):
        baton.acquire(name)
        try:
            torch.set_num_threads(torch_threads())
            trainer.train()
        except BaseException as error:  # re-raised in the main thread
            errors.append(error)
        finally:
            baton.finish(name)

    threads = [threading.Thread(target=train, args=item, name=item[0]) for item in trainers.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return timers


def torch_threads() -> int:
    return int(os.environ.get("OMP_NUM_THREADS", "1"))


def median(values: list[float]) -> float:
    return statistics.median(values)


# ---------------------------------------------------------------------------------------------------------------------
# 1. AdaGRPO step over GRPO step
# ---------------------------------------------------------------------------------------------------------------------


class Task:
    """
    A synthetic next-item task: a catalog, its SID tokenizer, prompts of `HISTORY` items drawn from a Zipf popularity
    law (as in the recipes' prompt format), a recipe-sized Qwen2 policy and a SASRec ranker over the whole catalog
    (random weights: scoring costs the same as with trained ones).

    Args:
        codes (`np.ndarray` of shape `(num_items, num_levels)`): The catalog's codes.
        codebook_sizes (`list[int]`): Codes per level (the tokenizer's SID tokens).
        warm_start_steps (`int`): Supervised steps of the policy before the benchmark, so that most unconstrained
            rollouts are catalog items (the ranker then scores them, as with a real SFT checkpoint); 0 for a random
            policy (enough with trie-constrained rollouts).
    """

    def __init__(self, codes, codebook_sizes, warm_start_steps: int = 0, num_users: int = 2048, seed: int = 0):
        rng = np.random.default_rng(seed)
        num_items = len(codes)
        self.catalog = ItemCatalog.from_codes([str(i) for i in range(num_items)], codes)
        self.tokenizer = build_sid_tokenizer(
            [sid_token(level, code) for level, size in enumerate(codebook_sizes) for code in range(size)],
            words=PROMPT_WORDS,
        )
        popularity = 1.0 / np.arange(1, num_items + 1)
        order = rng.permutation(num_items)
        draws = order[rng.choice(num_items, size=(num_users, HISTORY + 1), p=popularity / popularity.sum())]
        sids = self.catalog.sids
        rows = [
            {
                "prompt": format_prompt([sids[i] for i in items[:HISTORY]]),
                "completion": sids[items[HISTORY]],
                "user_id": str(user),
                "history": [str(i) for i in items[:HISTORY]],
                "target_item": str(items[HISTORY]),
            }
            for user, items in enumerate(draws.tolist())
        ]
        self.dataset = Dataset.from_list(rows)
        self.ranker = SASRecRanker(
            SASRecConfig(max_len=50, hidden_size=64, num_layers=2, num_heads=2), item_ids=self.catalog.item_ids
        )
        self.ranker.model.eval()
        self.policy_state = self._warm_start(rows, warm_start_steps, seed)
        self._trie_factory = None

    @classmethod
    def movielens_sized(cls, warm_start_steps: int = 60) -> "Task":
        """MovieLens-100K's 1,682 items on 3 levels of 12 codes + a 1-code dedup level (4 SID tokens + EOS)."""
        rng = np.random.default_rng(0)
        cells = rng.permutation(ML_CODEBOOK**3)[:ML_ITEMS]
        codes = np.column_stack(
            [cells // ML_CODEBOOK**2, (cells // ML_CODEBOOK) % ML_CODEBOOK, cells % ML_CODEBOOK, np.zeros_like(cells)]
        )
        return cls(codes, [ML_CODEBOOK] * 3 + [1], warm_start_steps)

    def _warm_start(self, rows, steps, seed, batch_size=64):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(small_qwen2_config(self.tokenizer, **POLICY))
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        eos = self.tokenizer.eos_token_id
        for step in range(steps):
            start = (step * batch_size) % (len(rows) - batch_size)
            batch = rows[start : start + batch_size]
            prompts = self.tokenizer([r["prompt"] for r in batch])["input_ids"]
            targets = self.tokenizer([r["completion"] for r in batch], add_special_tokens=False)["input_ids"]
            input_ids = torch.tensor([p + t + [eos] for p, t in zip(prompts, targets, strict=True)])
            labels = input_ids.clone()
            labels[:, : len(prompts[0])] = -100  # equal-length prompts: no padding
            model(input_ids=input_ids, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        return model.state_dict()

    def policy(self) -> Qwen2ForCausalLM:
        model = Qwen2ForCausalLM(small_qwen2_config(self.tokenizer, **POLICY))
        model.load_state_dict(self.policy_state)
        return model

    def reward(self) -> RankerReward:
        return RankerReward(
            self.ranker, self.catalog, transform="sigmoid", invalid_reward=-1.0, tokenizer=self.tokenizer
        )

    def trie_factory(self):
        if self._trie_factory is None:
            self._trie_factory = make_trie_processor_factory(self.catalog, self.tokenizer)
        return self._trie_factory


def training_args(output_dir: str, num_generations: int, config_class=AdaGRPOConfig, **overrides):
    kwargs = dict(
        output_dir=output_dir,
        per_device_train_batch_size=PROMPTS_PER_STEP * num_generations,
        num_generations=num_generations,
        max_completion_length=5,  # 4 SID tokens + EOS
        learning_rate=1e-4,  # the recipe's
        max_steps=1,  # set by run_interleaved
        logging_steps=1,  # set by run_interleaved to the run's length: one log, after the last step
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        disable_tqdm=True,
        seed=0,
    )
    kwargs.update(overrides)
    return config_class(**kwargs)


def build_trainer(
    kind: str, task: Task, output_dir: str, num_generations: int, rollout: str = "sample", constrained: bool = False
):
    """`grpo`: trl.GRPOTrainer; `off`: AdaGRPOTrainer with the AdaGRPO machinery off; `adagrpo`: AdaGRPO (adaptive)."""
    if kind == "grpo":
        if rollout != "sample" or constrained:
            raise ValueError("trl.GRPOTrainer samples unconstrained rollouts only.")
        args, trainer_class, extra = training_args(output_dir, num_generations, GRPOConfig), GRPOTrainer, {}
    else:
        ada = {"gate_mode": "always", "nll_coef": 0.0, "num_cross_negatives": 0} if kind == "off" else ADAGRPO
        args = training_args(output_dir, num_generations, rollout=rollout, **ada)
        trainer_class = AdaGRPOTrainer
        extra = {"logits_processors": [task.trie_factory()]} if constrained else {}
    return trainer_class(
        model=task.policy(),
        reward_funcs=task.reward(),
        args=args,
        train_dataset=task.dataset,
        processing_class=task.tokenizer,
        **extra,
    )


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of the ratio of two trainers' steps of the same round (adjacent in time)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def benchmark_steps(task: Task, rollout: str, num_generations: int, warmup: int, steps: int) -> dict:
    kinds = ["grpo", "off", "adagrpo"] if rollout == "sample" else ["off", "adagrpo"]
    baseline = "grpo" if rollout == "sample" else "off"
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {kind: build_trainer(kind, task, f"{tmp}/{kind}", num_generations, rollout) for kind in kinds}
        timers = run_interleaved(trainers, warmup, steps, memory_steps=2)
        log = next(entry for entry in trainers["adagrpo"].state.log_history if "gate/rate" in entry)
    result = {
        "rollout": rollout,
        "num_generations": num_generations,
        "prompts_per_step": PROMPTS_PER_STEP,
        "rows_per_step": PROMPTS_PER_STEP * num_generations,
        "warmup_steps": warmup,
        "measured_steps": steps,
        "baseline": BASELINES[baseline],
        "step_cpu_seconds_median": {kind: round(median(timers[kind].cpu), 4) for kind in kinds},
        "step_wall_seconds_median": {kind: round(median(timers[kind].wall), 4) for kind in kinds},
        "step_peak_mb": {kind: round(max(timers[kind].peak_mb), 1) for kind in kinds},
        "adagrpo_gate_rate": round(log["gate/rate"], 3),
        "adagrpo_invalid_rollout_rate": round(log["gate/invalid_rollout_rate"], 3),
    }
    ratios = {}
    for name, (a, b) in {
        "adagrpo_over_baseline": ("adagrpo", baseline),
        "machinery_off_over_grpo": ("off", "grpo"),
        "adagrpo_over_machinery_off": ("adagrpo", "off"),
    }.items():
        if a in kinds and b in kinds and not (name == "adagrpo_over_machinery_off" and b == baseline):
            ratios[name] = round(paired_ratio(timers[a].cpu, timers[b].cpu), 3)
            ratios[name + "_wall"] = round(paired_ratio(timers[a].wall, timers[b].wall), 3)
    result.update(ratios)
    result["step_peak_mb_adagrpo_over_baseline"] = round(
        result["step_peak_mb"]["adagrpo"] / max(result["step_peak_mb"][baseline], 1e-9), 3
    )
    return result


# ---------------------------------------------------------------------------------------------------------------------
# 2. Trie-constrained over unconstrained beam search; 3. trie build
# ---------------------------------------------------------------------------------------------------------------------


def random_codes(num_items: int, num_levels: int, codebook: int, seed: int = 0) -> np.ndarray:
    """Distinct uniformly random code rows (`num_items <= codebook ** num_levels`), in random order."""
    rng = np.random.default_rng(seed)
    cells = codebook**num_levels
    if num_items > cells:
        raise ValueError(f"{num_items} items do not fit {num_levels} levels of {codebook} codes.")
    if num_items * 4 > cells:  # dense: draw without replacement
        keys = rng.choice(cells, size=num_items, replace=False)
    else:  # sparse: rejection is cheaper than a permutation of every cell
        keys = np.empty(0, dtype=np.int64)
        while keys.size < num_items:
            keys = np.unique(np.concatenate([keys, rng.integers(0, cells, size=num_items)]))
        keys = rng.permutation(keys)[:num_items]
    weights = codebook ** np.arange(num_levels - 1, -1, -1, dtype=np.int64)
    return (keys[:, None] // weights) % codebook


def sid_tokenizer(num_levels: int, codebook: int):
    return build_sid_tokenizer(
        [sid_token(level, code) for level in range(num_levels) for code in range(codebook)], words=PROMPT_WORDS
    )


def benchmark_generation(num_items: int, repeats: int, batch_size: int = 8, num_beams: int = 20) -> dict:
    """Beam search with and without the trie processor, interleaved, on a 4-level, 32-code catalog of `num_items`."""
    num_levels, codebook = 4, 32
    tokenizer = sid_tokenizer(num_levels, codebook)
    catalog = ItemCatalog.from_codes(
        [str(i) for i in range(num_items)], random_codes(num_items, num_levels, codebook, 1)
    )
    factory = make_trie_processor_factory(catalog, tokenizer)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(small_qwen2_config(tokenizer)).eval()
    rng = np.random.default_rng(2)
    sids = catalog.sids
    prompts = [format_prompt([sids[i] for i in rng.choice(num_items, size=5)]) for _ in range(batch_size)]
    inputs = tokenizer(prompts, return_tensors="pt", padding=True)
    prompt_length = inputs.input_ids.size(1)
    config = build_generation_config(num_levels + 1, num_beams=num_beams, tokenizer=tokenizer)

    def run(constrained: bool) -> tuple[float, float, torch.Tensor]:
        processors = [factory(prompt_length)] if constrained else []
        start = (time.perf_counter(), time.process_time())
        with torch.no_grad():
            output = model.generate(**inputs, generation_config=config, logits_processor=processors)
        return time.perf_counter() - start[0], time.process_time() - start[1], output[:, prompt_length:]

    for _ in range(2):  # warm-up
        run(True), run(False)
    times = {True: ([], []), False: ([], [])}
    valid = {}
    for _ in range(repeats):  # interleaved, so that load from other processes affects both alike
        for constrained in (True, False):
            wall, cpu, completions = run(constrained)
            times[constrained][0].append(wall)
            times[constrained][1].append(cpu)
            texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
            valid[constrained] = sum(catalog.is_valid(t) for t in texts) / len(texts)
    if valid[True] != 1.0:
        raise AssertionError("trie-constrained beam search returned a non-catalog item")
    return {
        "num_items": num_items,
        "num_levels": num_levels,
        "codebook_size": codebook,
        "batch_size": batch_size,
        "num_beams": num_beams,
        "num_return_sequences": num_beams,
        "max_new_tokens": num_levels + 1,
        "repeats": repeats,
        "constrained_cpu_seconds_median": round(median(times[True][1]), 4),
        "unconstrained_cpu_seconds_median": round(median(times[False][1]), 4),
        "ratio": round(paired_ratio(times[True][1], times[False][1]), 3),
        "ratio_wall": round(paired_ratio(times[True][0], times[False][0]), 3),
        "constrained_valid_rate": valid[True],
        "unconstrained_valid_rate": round(valid[False], 4),
        "dead_ends": factory.num_dead_ends,
    }


def benchmark_trie_build(num_items: int = 1_000_000, num_levels: int = 4, codebook: int = 256) -> dict:
    """
    Builds the prefix trie of a random catalog from its token ids. Peak memory: the RSS high-water mark above the RSS
    before the build (reset with `clear_refs`), and the tracemalloc peak of a second build (NumPy allocations); the
    larger is reported.
    """
    tokenizer = sid_tokenizer(num_levels, codebook)
    codes = random_codes(num_items, num_levels, codebook)
    offsets = np.array([tokenizer.convert_tokens_to_ids(sid_token(level, 0)) for level in range(num_levels)])
    token_ids = torch.from_numpy(codes + offsets)  # the catalog's token ids, before any catalog object exists
    gc.collect()
    exact_peak = reset_peak_rss()
    rss_before = rss_kb()
    start = time.perf_counter(), time.process_time()
    trie = build_trie(token_ids, eos_token_id=tokenizer.eos_token_id)
    wall, cpu = time.perf_counter() - start[0], time.process_time() - start[1]
    rss_peak_delta = (rss_kb("VmHWM") - rss_before) / 1024
    num_nodes, num_edges, trie_mb = trie.num_nodes, trie.num_edges, trie.nbytes() / 2**20
    probe = token_ids[:: max(1, num_items // 10_000)]
    if not torch.equal(trie.item_index(trie.walk(probe)), torch.arange(0, num_items, max(1, num_items // 10_000))):
        raise AssertionError("the trie does not map items back to their rows")
    del trie
    gc.collect()
    tracemalloc.start()
    build_trie(token_ids, eos_token_id=tokenizer.eos_token_id)
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    start = time.perf_counter()
    catalog = ItemCatalog.from_codes([f"item-{i}" for i in range(num_items)], codes)
    catalog_seconds = time.perf_counter() - start
    start = time.perf_counter()
    if not torch.equal(catalog.token_ids(tokenizer), token_ids):
        raise AssertionError("ItemCatalog.token_ids disagrees with the direct token ids")
    token_ids_seconds = time.perf_counter() - start
    return {
        "num_items": num_items,
        "num_levels": num_levels,
        "codebook_size": codebook,
        "num_nodes": num_nodes,
        "num_edges": num_edges,
        "trie_build_seconds": round(wall, 3),
        "trie_build_cpu_seconds": round(cpu, 3),
        "trie_build_peak_mb": round(max(rss_peak_delta, traced_peak), 1),
        "trie_build_peak_rss_delta_mb": round(rss_peak_delta, 1),
        "trie_build_peak_rss_exact": exact_peak,
        "trie_build_tracemalloc_peak_mb": round(traced_peak, 1),
        "trie_tensors_mb": round(trie_mb, 1),
        "catalog_from_codes_seconds": round(catalog_seconds, 3),
        "catalog_token_ids_seconds": round(token_ids_seconds, 3),
    }


# ---------------------------------------------------------------------------------------------------------------------
# 4. Evaluation throughput
# ---------------------------------------------------------------------------------------------------------------------


def benchmark_evaluation(task: Task, num_users: int, batch_size: int = 32, num_beams: int = 20) -> dict:
    """`evaluate_recommendations` (unconstrained and trie-constrained beam search) on the step benchmark's task."""
    model = task.policy().eval()
    users = task.dataset.select(range(num_users))
    evaluate = functools.partial(
        evaluate_recommendations,
        model,
        task.tokenizer,
        catalog=task.catalog,
        num_beams=num_beams,
        batch_size=batch_size,
        show_progress=False,
    )
    evaluate(users.select(range(batch_size)))  # warm-up (and the trie, built once per catalog)
    start = time.perf_counter(), time.process_time()
    metrics = evaluate(users)
    wall, cpu = time.perf_counter() - start[0], time.process_time() - start[1]
    return {
        "num_users": num_users,
        "num_beams": num_beams,
        "batch_size": batch_size,
        "passes": "unconstrained + trie-constrained",
        "eval_users_per_second": round(num_users / cpu, 2),
        "eval_users_per_second_wall": round(num_users / wall, 2),
        "hr@10": round(metrics["hr@10"], 4),
        "constrained/hr@10": round(metrics["constrained/hr@10"], 4),
        "hallucination": round(metrics["hallucination"], 4),
    }


# ---------------------------------------------------------------------------------------------------------------------
# 5. Scaling with the catalog size
# ---------------------------------------------------------------------------------------------------------------------


def benchmark_catalog_scaling(sizes: list[int], num_generations: int, warmup: int, steps: int) -> list[dict]:
    """
    AdaGRPO steps with trie-constrained sampling rollouts and a SASRec ranker over the whole catalog, one trainer per
    catalog size, interleaved. All catalogs share a 4-level, 32-code vocabulary, so the policy is the same size.
    """
    tasks = {size: Task(random_codes(size, 4, 32, seed=3), [32] * 4) for size in sizes}
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {
            str(size): build_trainer("adagrpo", task, f"{tmp}/{size}", num_generations, constrained=True)
            for size, task in tasks.items()
        }
        timers = run_interleaved(trainers, warmup, steps, memory_steps=1)
    return [
        {
            "num_items": size,
            "num_generations": num_generations,
            "rollout": "sample, trie-constrained",
            "step_cpu_seconds_median": round(median(timers[str(size)].cpu), 4),
            "step_wall_seconds_median": round(median(timers[str(size)].wall), 4),
            "step_peak_mb": round(max(timers[str(size)].peak_mb), 1),
        }
        for size in sizes
    ]


# ---------------------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------------------

# The committed figures before this benchmark existed (benchmarks/results/trie.json of benchmarks/trie_build.py, commit
# f5cf03d; generation ratios were wall-clock ratios of medians, 31 interleaved runs; the peak is the RSS delta).
PREVIOUS = {
    "trie_build_seconds": 0.932,
    "trie_build_peak_mb": 200.3,
    "constrained_over_unconstrained_generate_10000": 1.116,
    "constrained_over_unconstrained_generate_100000": 1.118,
}
TARGETS = {
    "adagrpo_over_grpo_step_sample_k16": 1.15,
    "adagrpo_over_grpo_step_beam_k16": 1.15,
    "constrained_over_unconstrained_generate_100000": 1.15,
    "constrained_over_unconstrained_generate_1000000": 1.30,
    "trie_build_seconds": 30.0,
    "trie_build_peak_mb": 1024.0,
}


def figures_of(results: dict) -> dict[str, float]:
    figures = {}
    for step in results.get("step", []):
        suffix = f"{step['rollout']}_k{step['num_generations']}"
        figures[f"adagrpo_over_grpo_step_{suffix}"] = step["adagrpo_over_baseline"]
        if "machinery_off_over_grpo" in step:
            figures[f"machinery_off_over_grpo_step_{suffix}"] = step["machinery_off_over_grpo"]
    for size, generation in results.get("generation", {}).items():
        figures[f"constrained_over_unconstrained_generate_{size}"] = generation["ratio"]
    if "trie_build" in results:
        figures["trie_build_seconds"] = results["trie_build"]["trie_build_seconds"]
        figures["trie_build_peak_mb"] = results["trie_build"]["trie_build_peak_mb"]
    if "evaluation" in results:
        figures["eval_users_per_second"] = results["evaluation"]["eval_users_per_second"]
    for step in results.get("step", []):
        if step["rollout"] == "sample" and step["num_generations"] == 16:
            figures["train_step_peak_mb_adagrpo_k16"] = step["step_peak_mb"]["adagrpo"]
            figures["train_step_peak_mb_grpo_k16"] = step["step_peak_mb"]["grpo"]
    return figures


def scaling_table(results: dict) -> list[dict]:
    """Step time against K (sampling; from the step section) and against the catalog size."""
    rows = []
    for step in results.get("step", []):
        seconds = step["step_cpu_seconds_median"]
        rows.append(
            {
                "axis": "K",
                "rollout": step["rollout"],
                "num_generations": step["num_generations"],
                "num_items": ML_ITEMS,
                "adagrpo_step_seconds": seconds["adagrpo"],
                "baseline_step_seconds": seconds["grpo" if "grpo" in seconds else "off"],
            }
        )
    for entry in results.get("scaling", {}).get("catalog", []):
        rows.append(
            {
                "axis": "catalog",
                "rollout": entry["rollout"],
                "num_generations": entry["num_generations"],
                "num_items": entry["num_items"],
                "adagrpo_step_seconds": entry["step_cpu_seconds_median"],
                "baseline_step_seconds": None,
            }
        )
    return rows


def plot_scaling(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_k, by_catalog) = plt.subplots(1, 2, figsize=(10, 3.8))
    for rollout, marker in (("sample", "o"), ("beam", "s")):
        points = sorted((r["num_generations"], r) for r in rows if r["axis"] == "K" and r["rollout"] == rollout)
        if not points:
            continue
        ks = [k for k, _ in points]
        by_k.plot(ks, [r["adagrpo_step_seconds"] for _, r in points], marker=marker, label=f"AdaGRPO ({rollout})")
        baseline = "GRPOTrainer" if rollout == "sample" else "machinery off"
        by_k.plot(
            ks,
            [r["baseline_step_seconds"] for _, r in points],
            marker=marker,
            linestyle="--",
            label=f"{baseline} ({rollout})",
        )
    by_k.set_xlabel(f"K (rollouts per prompt), {PROMPTS_PER_STEP} prompts per step")
    by_k.set_ylabel("step CPU seconds (median)")
    by_k.set_xscale("log", base=2)
    ks = sorted({r["num_generations"] for r in rows if r["axis"] == "K"})
    by_k.set_xticks(ks, [str(k) for k in ks])
    by_k.set_ylim(bottom=0)
    by_k.legend(fontsize=8)
    by_k.set_title("Step time vs K")
    catalog = sorted((r["num_items"], r["adagrpo_step_seconds"]) for r in rows if r["axis"] == "catalog")
    if catalog:
        by_catalog.plot(
            [n for n, _ in catalog], [t for _, t in catalog], marker="o", label="AdaGRPO (constrained sampling)"
        )
        by_catalog.set_xscale("log")
        by_catalog.set_ylim(0, 1.25 * max(t for _, t in catalog))
        by_catalog.legend(fontsize=8)
    by_catalog.set_xlabel("catalog items")
    by_catalog.set_ylabel("step CPU seconds (median)")
    by_catalog.set_title(f"Step time vs catalog size (K = {rows[-1]['num_generations'] if catalog else '-'})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def environment() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "numpy": np.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch_threads(),
        "device": "cpu",
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Fewer steps and repeats (1-2 minutes on 2 cores).")
    parser.add_argument(
        "--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="Run only these sections."
    )
    parser.add_argument(
        "--output",
        default=None,
        help="JSON results ('' for none; default: results/speed/speed.json, or results/speed/speed_quick.json with --quick so a "
        "quick run never replaces the committed full results).",
    )
    parser.add_argument(
        "--plot", default=None, help="Scaling plot ('' for none; default: results/speed/speed_scaling[_quick].png)."
    )
    args = parser.parse_args(argv)
    suffix = "_quick" if args.quick else ""
    if args.output is None:
        args.output = os.path.join(RESULTS, f"speed{suffix}.json")
    if args.plot is None:
        args.plot = os.path.join(RESULTS, f"speed_scaling{suffix}.png")
    hf_logging.set_verbosity_error()
    torch.set_num_threads(torch_threads())
    started = time.perf_counter()
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "command": "python benchmarks/speed.py" + (" --quick" if args.quick else ""),
        "timing": "step and generation ratios: median over interleaved rounds of (process CPU time of side A) / (of "
        "side B) in the same round, one torch thread, one side computing at a time; *_wall: the same with wall-clock "
        "time (inflated by other processes on a shared machine)",
        "environment": environment(),
    }
    task = None

    if "step" in args.sections:
        task = Task.movielens_sized()
        warmup, steps = (2, 8) if args.quick else (3, 20)
        ks = {"sample": (8, 16) if args.quick else (4, 8, 16, 32), "beam": (8, 16)}
        results["step"] = []
        for rollout in ("sample", "beam"):
            for k in ks[rollout]:
                results["step"].append(benchmark_steps(task, rollout, k, warmup, steps))
                print(json.dumps(results["step"][-1]), flush=True)
    if "generate" in args.sections:
        results["generation"] = {}
        for num_items in (10_000, 100_000, 1_000_000):
            results["generation"][str(num_items)] = benchmark_generation(num_items, 11 if args.quick else 31)
            print(json.dumps(results["generation"][str(num_items)]), flush=True)
    if "trie" in args.sections:
        results["trie_build"] = benchmark_trie_build()
        print(json.dumps(results["trie_build"]), flush=True)
    if "eval" in args.sections:
        task = task or Task.movielens_sized()
        results["evaluation"] = benchmark_evaluation(task, num_users=64 if args.quick else 256)
        print(json.dumps(results["evaluation"]), flush=True)
    if "scaling" in args.sections:
        sizes = [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000]
        warmup, steps = (1, 4) if args.quick else (2, 10)
        results["scaling"] = {"catalog": benchmark_catalog_scaling(sizes, 8, warmup, steps)}
        print(json.dumps(results["scaling"]), flush=True)

    figures = figures_of(results)
    results["figures"] = figures
    results["targets"] = {
        name: {"target": f"<= {limit}", "value": figures[name], "met": figures[name] <= limit}
        for name, limit in TARGETS.items()
        if name in figures
    }
    results["previous"] = {
        name: {"previous": value, "now": figures.get(name)} for name, value in PREVIOUS.items() if name in figures
    }
    results["scaling_table"] = scaling_table(results)
    results["total_seconds"] = round(time.perf_counter() - started, 1)
    if args.plot and results["scaling_table"]:
        os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
        plot_scaling(results["scaling_table"], args.plot)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w") as file:
            json.dump(results, file, indent=2)
            file.write("\n")
    print()
    for row in results["scaling_table"]:
        print(
            f"scaling[{row['axis']}] rollout={row['rollout']} K={row['num_generations']} items={row['num_items']}: "
            f"adagrpo {row['adagrpo_step_seconds']} s, baseline {row['baseline_step_seconds']} s"
        )
    for name, value in figures.items():
        print(f"{name}: {value}")
    for name, target in results["targets"].items():
        print(f"target {name} {target['target']}: {'met' if target['met'] else 'NOT met'}")
    print(f"total_seconds: {results['total_seconds']}")


if __name__ == "__main__":
    main()
