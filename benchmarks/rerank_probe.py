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
Does the teacher know better where RL looks? A validation-only probe of the reward on the policy's own candidates.

GRPO never shows the policy an item it did not generate: the reward can only reorder the policy's own candidates. A
teacher that is twice as good over the whole catalog (24% vs 11% HR@10 on ML-1M) helps RL only if it is also better
at ordering *those* candidates. For each policy checkpoint given, on every validation user (the test split is never
read), this probe takes the policy's top-`--num_candidates` items (trie-constrained beam search) and reports:

- `policy_hr@10` (the policy's order), `ceiling_hr@10` (= HR@num_candidates: the truth somewhere among the
  candidates, what a perfect reorder would reach);
- for each popularity-bias level λ of the reward (`score + λ·log(1 + count)`, as `PopularityBiasedRanker`), the
  HR@10 of the candidates **reordered by the teacher**, and the paired-bootstrap 95% interval of reordered − policy
  order over users; among users whose truth is a candidate, how often the teacher places it higher / lower than the
  policy;
- `teacher_percentile@10`: the mean catalog percentile (1 = the teacher's favourite item) of the policy's top 10
  under each λ, i.e. how well the policy already pleases that reward, and the mean `log(1 + count)` of its top 10
  (its popularity);
- once per λ, the teacher's own HR@10 over the whole catalog (history items not masked, as the policy's beams are
  not), on the same users, with the contexts the reward builds (the user's full past).

```bash
R=runs/quality_v2/ml-1m-pilot/seed0
python benchmarks/rerank_probe.py --data_dir $R/shared/data --ranker_dir $R/shared/ranker \\
    --policy sft=$R/shared/sft --policy grpo=$R/ranker/methods/grpo --bias_levels 0 0.5 2 \\
    --output benchmarks/results/probes/rerank/ml-1m-pilot.json
```

Index: benchmarks/README.md ("Exploratory probes").
"""

import argparse
import shlex
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from quality import hardware, ranked_from_scores, versions  # benchmarks/ is the script's folder, on sys.path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", required=True, help="A prepared data folder (`adagrpo-trl prepare`).")
    parser.add_argument("--ranker_dir", required=True, help="The teacher (a `SASRecRanker` folder).")
    parser.add_argument(
        "--policy",
        action="append",
        required=True,
        metavar="NAME=PATH",
        help="A policy checkpoint to probe, named; repeatable (e.g. sft=runs/.../sft).",
    )
    parser.add_argument("--bias_levels", type=float, nargs="+", default=[0.0], help="λ of the reward (0: unbiased).")
    parser.add_argument("--num_candidates", type=int, default=20, help="Beams: the policy's candidates per user.")
    parser.add_argument("--max_samples", type=int, default=None, help="First N validation users (default: all).")
    parser.add_argument("--batch_size", type=int, default=32, help="Prompts per generate call.")
    parser.add_argument("--num_resamples", type=int, default=2000, help="Paired-bootstrap resamples.")
    parser.add_argument("--output", required=True, help="The report's JSON path (a `.md` is written beside it).")
    args = parser.parse_args(argv)
    args.policies = parse_policies(args.policy)
    if args.num_candidates < 10:
        parser.error(f"--num_candidates must be >= 10 (HR@10 of the reordered list), got {args.num_candidates}.")
    if any(level < 0 for level in args.bias_levels):
        parser.error(f"--bias_levels must be >= 0, got {args.bias_levels}.")
    return args


def parse_policies(pairs: Sequence[str]) -> dict[str, str]:
    """`["sft=a", "grpo=b"]` -> `{"sft": "a", "grpo": "b"}`; a pair without `=` or a repeated name is an error."""
    policies: dict[str, str] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--policy expects NAME=PATH, got {pair!r}.")
        if name in policies:
            raise ValueError(f"--policy: the name {name!r} is given twice.")
        policies[name] = path
    return policies


def rerank(candidates: Sequence[Sequence[str | None]], scores: np.ndarray, column_of: Mapping[str, int]) -> list:
    """
    Each row's candidates sorted by the teacher's score in that row (`scores[row, column_of[item]]`), best first. Ties
    keep the policy's order; a candidate that is not an item (`None`) goes last.
    """
    out = []
    for row, items in enumerate(candidates):
        keyed = [
            (-float(scores[row, column_of[item]]) if item is not None else np.inf, position, item)
            for position, item in enumerate(items)
        ]
        out.append([item for _, _, item in sorted(keyed, key=lambda entry: (entry[0], entry[1]))])
    return out


def truth_positions(ranked: Sequence[Sequence[str | None]], targets: Sequence[str]) -> np.ndarray:
    """0-based position of each row's target in its list, -1 where it is absent."""
    return np.array([list(items).index(t) if t in items else -1 for items, t in zip(ranked, targets, strict=True)])


def compare_orders(policy_order: np.ndarray, teacher_order: np.ndarray) -> dict[str, Any]:
    """
    Where the truth is a candidate (both positions >= 0; the two orders hold the same candidates): how often the
    teacher places it higher, lower or at the same position as the policy, and the mean positions (1-based).
    """
    present = policy_order >= 0
    if not np.array_equal(present, teacher_order >= 0):
        raise ValueError("The two orders must hold the same candidates (the truth present in the same rows).")
    n = int(present.sum())
    if n == 0:
        return {"num_users_truth_present": 0}
    p, t = policy_order[present], teacher_order[present]
    return {
        "num_users_truth_present": n,
        "teacher_higher": float(np.mean(t < p)),
        "teacher_lower": float(np.mean(t > p)),
        "same": float(np.mean(t == p)),
        "mean_position_policy": float(p.mean() + 1),
        "mean_position_teacher": float(t.mean() + 1),
    }


def catalog_percentiles(scores: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """
    Percentile of `scores[row, columns[row, j]]` within row `row` of `scores`: the share of the other items scored
    strictly lower (1 = the row's best item, 0 = its worst). `columns` is `(rows, k)`; returns `(rows, k)`.
    """
    num_items = scores.shape[1]
    if num_items < 2:
        raise ValueError("Percentiles need at least two items.")
    picked = np.take_along_axis(scores, columns, axis=1)
    lower = np.stack([(scores < picked[:, [j]]).sum(axis=1) for j in range(columns.shape[1])], axis=1)
    return lower / (num_items - 1)


def teacher_matrix(ranker: Any, contexts: Sequence[Mapping[str, Any]], item_ids: Sequence[str]) -> np.ndarray:
    """The teacher's scores of every catalog item in every context, in chunks (a progress-friendly `score_matrix`)."""
    from tqdm.auto import tqdm

    chunk = 512
    rows = [
        np.asarray(ranker.score_matrix(contexts[start : start + chunk], item_ids), dtype=np.float32)
        for start in tqdm(range(0, len(contexts), chunk), desc="teacher scores", leave=False)
    ]
    return np.concatenate(rows, axis=0)


def probe_policy(
    path: str,
    prepared: Any,
    rows: Sequence[Mapping[str, Any]],
    matrices: Mapping[float, np.ndarray],
    counts: Mapping[str, int],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One policy's candidates on the validation rows, and what each λ's teacher makes of them."""
    from transformers import AutoModelForCausalLM

    from adagrpo_trl.evaluation import hits_at_k, paired_bootstrap, recommend
    from adagrpo_trl.tokenization import load_tokenizer

    start = time.perf_counter()
    tokenizer = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    prompts, targets = [row["prompt"] for row in rows], [row["target_item"] for row in rows]
    candidates = recommend(
        model, tokenizer, prompts, prepared.catalog, num_beams=args.num_candidates, constrained=True,
        batch_size=args.batch_size,
    )  # fmt: skip
    column_of = {item: index for index, item in enumerate(prepared.catalog.item_ids)}
    policy_hits = hits_at_k(candidates, targets, 10)
    policy_positions = truth_positions(candidates, targets)
    top10 = np.array([[column_of[item] for item in items[:10]] for items in candidates])
    popularity = np.log1p([[counts.get(item, 0) for item in items[:10]] for items in candidates])
    out: dict[str, Any] = {
        "path": path,
        "policy_hr@10": float(policy_hits.mean()),
        "ceiling_hr@10": float((policy_positions >= 0).mean()),
        "top10_mean_log1p_count": float(popularity.mean()),
        "by_lambda": {},
    }
    for level, scores in matrices.items():
        reordered = rerank(candidates, scores, column_of)
        reordered_hits = hits_at_k(reordered, targets, 10)
        out["by_lambda"][f"{level:g}"] = {
            "reordered_hr@10": float(reordered_hits.mean()),
            "reordered_minus_policy": paired_bootstrap(policy_hits, reordered_hits, num_resamples=args.num_resamples),
            "truth_position": compare_orders(policy_positions, truth_positions(reordered, targets)),
            "teacher_percentile@10": float(catalog_percentiles(scores, top10).mean()),
        }
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def format_report(report: Mapping[str, Any]) -> str:
    lines = [
        f"Validation users: {report['num_users']}; candidates per user: {report['num_candidates']} (constrained "
        "beams). HR@10 in %; Δ = reordered by the teacher − the policy's order, paired 95% CI.",
        "",
        "| λ | teacher's own HR@10 (whole catalog) |",
        "|---|---|",
    ]
    lines += [f"| {level} | {100 * hr:.2f} |" for level, hr in report["teacher_hr@10"].items()]
    lines += [
        "",
        "| policy | λ | policy HR@10 | ceiling (truth among candidates) | reordered HR@10 | Δ [95% CI] | truth higher "
        "/ lower under the teacher | teacher percentile of the top 10 | top-10 mean log(1+count) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, policy in report["policies"].items():
        for level, entry in policy["by_lambda"].items():
            delta, position = entry["reordered_minus_policy"], entry["truth_position"]
            lines.append(
                f"| {name} | {level} | {100 * policy['policy_hr@10']:.2f} | {100 * policy['ceiling_hr@10']:.2f} | "
                f"{100 * entry['reordered_hr@10']:.2f} | {100 * delta['diff']:+.2f} [{100 * delta['low']:+.2f}, "
                f"{100 * delta['high']:+.2f}] | {100 * position.get('teacher_higher', 0):.0f}% / "
                f"{100 * position.get('teacher_lower', 0):.0f}% | {entry['teacher_percentile@10']:.3f} | "
                f"{policy['top10_mean_log1p_count']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from adagrpo_trl.data import PreparedData
    from adagrpo_trl.evaluation import hits_at_k
    from adagrpo_trl.rankers import PopularityBiasedRanker, SASRecRanker
    from adagrpo_trl.utils import atomic_write_json, atomic_write_text

    args = parse_args(argv)
    start = time.perf_counter()
    prepared = PreparedData.load(args.data_dir)
    rows = list(prepared.datasets["validation"])[: args.max_samples]
    if prepared.user_histories is None:
        raise ValueError(f"{args.data_dir} has no user histories: prepare it again (the reward reads the full past).")
    contexts = prepared.user_histories.with_full_history(rows)
    counts = Counter(item for sequence in prepared.train_sequences for item in sequence)
    teacher = SASRecRanker.load(args.ranker_dir, device="cpu")
    item_ids = prepared.catalog.item_ids
    unbiased = teacher_matrix(teacher, contexts, item_ids)
    matrices, teacher_hr = {}, {}
    targets = [row["target_item"] for row in rows]
    for level in args.bias_levels:
        offsets = PopularityBiasedRanker(teacher, counts, bias=level).offsets(item_ids) if level else 0.0
        matrices[level] = unbiased + np.asarray(offsets, dtype=np.float32)
        ranked = ranked_from_scores(matrices[level], item_ids, 10)
        teacher_hr[f"{level:g}"] = float(hits_at_k(ranked, targets, 10).mean())
    policies = {
        name: probe_policy(path, prepared, rows, matrices, counts, args) for name, path in args.policies.items()
    }
    report = {
        "command": "python benchmarks/rerank_probe.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "hardware": hardware(),
        "versions": versions(),
        "split": "validation",
        "num_users": len(rows),
        "num_candidates": args.num_candidates,
        "teacher_hr@10": teacher_hr,
        "truth_mean_log1p_count": float(np.mean(np.log1p([counts.get(t, 0) for t in targets]))),
        "policies": policies,
        "wall_seconds": round(time.perf_counter() - start, 1),
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output, report, indent=2)
    header = f"`{report['command']}` at {report['versions']['commit'][:10]} on {report['hardware']}"
    atomic_write_text(
        output.with_suffix(".md"), f"{header}, {report['wall_seconds']:.0f} s\n\n" + format_report(report)
    )
    print(format_report(report))  # noqa: T201
    return report


if __name__ == "__main__":
    main()
