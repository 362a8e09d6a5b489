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
The pipeline's report: `report/results.json`, the markdown results table (metrics in %, HR@10 difference to SFT with
its 95% paired-bootstrap interval, gate rate) and the PNG plots (HR@10-vs-hallucination frontier, training curves).
"""

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..utils import atomic_write, atomic_write_json, atomic_write_text


REPORT_METRICS = ("hr@10", "ndcg@10", "hr@20", "hallucination", "constrained/hr@10")


def write_report(root: Path, results: dict[str, Any], methods: list[str], timings: dict[str, float]) -> dict[str, Any]:
    """Writes `report/results.json`, `report/results.md` and the plots; prints the markdown table."""
    report_dir = root / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    histories = {}
    for name in methods:
        path = root / "methods" / name / "log_history.json"
        if path.exists():
            histories[name] = json.loads(path.read_text())
    gate_rates = {
        name: _mean([log["gate/rate"] for log in history if "gate/rate" in log]) for name, history in histories.items()
    }
    report = {
        "methods": {
            name: {k: v for k, v in metrics.items() if k != "per_sample"} for name, metrics in results.items()
        },
        "gate_rate": gate_rates,
        "hr@10_vs_sft": _bootstrap_against(results, "sft", "hr@10"),
        "timings_seconds": timings,
    }
    atomic_write_json(report_dir / "results.json", report, indent=2)
    table = format_results_table(report["methods"], gate_rates, report["hr@10_vs_sft"])
    atomic_write_text(report_dir / "results.md", table + "\n")
    plot_report(report_dir, report["methods"], histories)
    print(table)  # noqa: T201
    return report


def _bootstrap_against(results: dict[str, Any], reference: str, metric: str) -> dict[str, dict[str, float]]:
    """Paired bootstrap (over test users) of each method's `metric` minus the reference's: difference and 95% CI."""
    from ..evaluation import paired_bootstrap

    base = results.get(reference, {}).get("per_sample", {}).get(metric)
    if base is None:
        return {}
    comparisons = {}
    for name, metrics in results.items():
        values = metrics.get("per_sample", {}).get(metric)
        if name != reference and values is not None and len(values) == len(base):
            comparisons[name] = paired_bootstrap(np.asarray(base), np.asarray(values))
    return comparisons


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def format_results_table(
    methods: dict[str, dict[str, float]],
    gate_rates: dict[str, float | None],
    versus_sft: dict[str, dict[str, float]] | None = None,
) -> str:
    """The results as a markdown table (metrics in %, HR@10 difference to SFT with its 95% paired-bootstrap CI)."""
    versus_sft = versus_sft or {}
    header = "| method | " + " | ".join(REPORT_METRICS) + " | ΔHR@10 vs SFT [95% CI] | gate rate |"
    lines = [header, "|" + "---|" * (len(REPORT_METRICS) + 3)]
    for name, metrics in methods.items():
        cells = [f"{100 * metrics[m]:.2f}" if m in metrics else "n/a" for m in REPORT_METRICS]
        delta = versus_sft.get(name)
        if delta is None:
            delta_cell = "–"
        else:
            delta_cell = f"{100 * delta['diff']:+.2f} [{100 * delta['low']:+.2f}, {100 * delta['high']:+.2f}]"
        rate = gate_rates.get(name)
        rate_cell = "n/a" if rate is None else f"{rate:.3f}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {delta_cell} | {rate_cell} |")
    return "\n".join(lines)


def plot_report(report_dir: Path, methods: dict[str, dict[str, float]], histories: dict[str, list[dict]]) -> None:
    """PNG plots: the HR@10-vs-hallucination frontier, training curves (NLL, reward) and the gate rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 4))
    for name, metrics in methods.items():
        axis.scatter(100 * metrics["hallucination"], 100 * metrics["hr@10"], s=40)
        axis.annotate(name, (100 * metrics["hallucination"], 100 * metrics["hr@10"]), fontsize=8)
    axis.set_xlabel("hallucination (% of top-10, unconstrained)")
    axis.set_ylabel("HR@10 (%)")
    axis.set_title("HR@10 vs hallucination")
    figure.tight_layout()
    atomic_write(report_dir / "frontier.png", lambda path: figure.savefig(path, format="png", dpi=120))
    plt.close(figure)

    figure, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for name, history in histories.items():
        for axis, key in zip(axes, ("loss/nll", "reward", "gate/rate"), strict=True):
            points = [(log["step"], log[key]) for log in history if key in log and "step" in log]
            if points:
                axis.plot(*zip(*points, strict=True), label=name)
    for axis, title in zip(axes, ("ground-truth NLL", "reward", "gate rate"), strict=True):
        axis.set_title(title)
        axis.set_xlabel("step")
    if axes[0].lines:  # no method trained yet (e.g. a run of the shared stages only): nothing to label
        axes[0].legend(fontsize=8)
    figure.tight_layout()
    atomic_write(report_dir / "training_curves.png", lambda path: figure.savefig(path, format="png", dpi=120))
    plt.close(figure)
