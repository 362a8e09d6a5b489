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
Speed benchmark of the catalog trie and of trie-constrained beam search.

1. Builds the prefix trie of a random 1,000,000-item, 4-level catalog (codebook 256 per level) and reports the build
   time and its peak memory (RSS high-water mark above the RSS before the build, and the tracemalloc peak of a second
   build; the larger is reported). Catalog construction and `token_ids` are timed too.
2. Times beam search (20 beams, 20 returned sequences) of a tiny random Qwen2 on the same prompts, with and without
   [`TrieLogitsProcessor`], for 10K- and 100K-item catalogs (codebook 32 per level), in the same run.

Usage: `python benchmarks/trie_build.py [--items 1000000] [--output benchmarks/results/trie.json]`
"""

import argparse
import json
import os
import platform
import resource
import statistics
import time
import tracemalloc

import numpy as np
import torch
import transformers
from transformers import Qwen2ForCausalLM

from adagrpo_trl.catalog import ItemCatalog, build_trie
from adagrpo_trl.constrained import TrieLogitsProcessor, build_generation_config
from adagrpo_trl.tokenization import build_sid_tokenizer, sid_vocabulary, small_qwen2_config


def rss_mb() -> float:
    """Current resident set size (Linux)."""
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """RSS high-water mark of this process (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def random_codes(num_items: int, num_levels: int, codebook: int, seed: int = 0) -> np.ndarray:
    """Distinct uniformly random code rows, in random order."""
    rng = np.random.default_rng(seed)
    weights = codebook ** np.arange(num_levels - 1, -1, -1, dtype=np.int64)
    keys = np.empty(0, dtype=np.int64)
    while keys.size < num_items:
        keys = np.unique(np.concatenate([keys, rng.integers(0, codebook**num_levels, size=num_items)]))
    keys = rng.permutation(keys)[:num_items]
    return (keys[:, None] // weights) % codebook


def benchmark_build(num_items: int, num_levels: int, codebook: int) -> dict:
    tokenizer = build_sid_tokenizer(sid_vocabulary([codebook] * num_levels))
    codes = random_codes(num_items, num_levels, codebook)
    # Token ids of the SID tokens computed directly, so the build is measured before any catalog object exists.
    offsets = np.array([tokenizer.convert_tokens_to_ids(f"<{chr(97 + level)}_0>") for level in range(num_levels)])
    token_ids = torch.from_numpy(codes + offsets)
    eos = tokenizer.eos_token_id

    rss_before = rss_mb()
    start = time.perf_counter()
    trie = build_trie(token_ids, eos_token_id=eos)
    build_seconds = time.perf_counter() - start
    rss_peak_delta = peak_rss_mb() - rss_before
    trie_mb = trie.nbytes() / 2**20
    del trie

    tracemalloc.start()
    trie = build_trie(token_ids, eos_token_id=eos)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_mb = max(rss_peak_delta, traced_peak / 2**20)

    start = time.perf_counter()
    catalog = ItemCatalog.from_codes([f"item-{i}" for i in range(num_items)], codes)
    catalog_seconds = time.perf_counter() - start
    start = time.perf_counter()
    catalog_token_ids = catalog.token_ids(tokenizer)
    token_ids_seconds = time.perf_counter() - start
    assert torch.equal(catalog_token_ids, token_ids)
    probe = token_ids[:: max(1, num_items // 10_000)]
    assert torch.equal(trie.item_index(trie.walk(probe)), torch.arange(0, num_items, max(1, num_items // 10_000)))
    return {
        "num_items": num_items,
        "num_levels": num_levels,
        "codebook_size": codebook,
        "num_nodes": trie.num_nodes,
        "num_edges": trie.num_edges,
        "trie_build_seconds": round(build_seconds, 3),
        "trie_build_peak_mb": round(peak_mb, 1),
        "trie_build_peak_rss_delta_mb": round(rss_peak_delta, 1),
        "trie_build_tracemalloc_peak_mb": round(traced_peak / 2**20, 1),
        "trie_tensors_mb": round(trie_mb, 1),
        "catalog_from_codes_seconds": round(catalog_seconds, 3),
        "catalog_token_ids_seconds": round(token_ids_seconds, 3),
    }


def benchmark_generation(
    num_items: int, num_levels: int, codebook: int, batch_size: int, num_beams: int, repeats: int
):
    tokenizer = build_sid_tokenizer(sid_vocabulary([codebook] * num_levels), words=["history", ":", "next"])
    codes = random_codes(num_items, num_levels, codebook, seed=1)
    catalog = ItemCatalog.from_codes([str(i) for i in range(num_items)], codes)
    trie = catalog.build_trie(catalog.token_ids(tokenizer))
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(small_qwen2_config(tokenizer)).eval()
    rng = np.random.default_rng(2)
    prompts = [
        "history : " + " ".join(catalog.sids[i] for i in rng.choice(num_items, size=5)) + " next :"
        for _ in range(batch_size)
    ]
    inputs = tokenizer(prompts, return_tensors="pt", padding=True)
    prompt_length = inputs.input_ids.size(1)
    config = build_generation_config(num_levels + 1, num_beams=num_beams, tokenizer=tokenizer)

    def run(constrained: bool) -> tuple[float, torch.Tensor]:
        processors = [TrieLogitsProcessor(trie, tokenizer.eos_token_id, prompt_length)] if constrained else []
        start = time.perf_counter()
        with torch.no_grad():
            output = model.generate(**inputs, generation_config=config, logits_processor=processors)
        return time.perf_counter() - start, output[:, prompt_length:]

    run(True), run(False)  # warm-up
    times = {True: [], False: []}
    for _ in range(repeats):  # interleaved, so drift affects both alike
        for constrained in (True, False):
            seconds, completions = run(constrained)
            times[constrained].append(seconds)
            texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
            valid = sum(catalog.is_valid(t) for t in texts) / len(texts)
            if constrained:
                assert valid == 1.0, "constrained beam search returned a non-catalog item"
            else:
                unconstrained_valid = valid
    constrained_s, unconstrained_s = statistics.median(times[True]), statistics.median(times[False])
    return {
        "num_items": num_items,
        "batch_size": batch_size,
        "num_beams": num_beams,
        "num_return_sequences": num_beams,
        "max_new_tokens": num_levels + 1,
        "constrained_seconds_median": round(constrained_s, 4),
        "unconstrained_seconds_median": round(unconstrained_s, 4),
        "ratio": round(constrained_s / unconstrained_s, 3),
        "constrained_valid_rate": 1.0,
        "unconstrained_valid_rate": round(unconstrained_valid, 4),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--generation-items", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-beams", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--output", default=os.path.join(os.path.dirname(__file__), "results", "trie.json"))
    args = parser.parse_args()

    build = benchmark_build(args.items, num_levels=4, codebook=256)
    print(f"trie_build_seconds: {build['trie_build_seconds']}")
    print(f"trie_build_peak_mb: {build['trie_build_peak_mb']}")
    generation = {}
    for num_items in args.generation_items:
        result = benchmark_generation(num_items, 4, 32, args.batch_size, args.num_beams, args.repeats)
        generation[str(num_items)] = result
        print(f"constrained_over_unconstrained_generate_{num_items}: {result['ratio']}")

    results = {
        "trie_build": build,
        "generation": generation,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "numpy": np.__version__,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": "cpu",
            "machine": platform.machine(),
        },
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as file:
        json.dump(results, file, indent=2)
        file.write("\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
