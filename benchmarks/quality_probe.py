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
Why does RL not move HR@10? A validation-only probe on one seed of the quality benchmark.

From a seed folder that `benchmarks/quality.py` wrote (its `data/`, `sft/` and `ranker/`), trains NLL only
(`gate_mode=never`), AdaGRPO, NLL + 1·GRPO and pure GRPO at several learning rates and records the validation HR@10
every `--eval_steps` and the mean reward. The SFT model's own validation HR@10 is the reference. The test split is
never read.

```bash
python benchmarks/quality_probe.py --run_dir runs/quality/ml-100k/seed0 --learning_rates 1e-3 1e-5
python benchmarks/quality_probe.py --run_dir runs/quality/ml-100k/seed0 --learning_rates 1e-5 1e-4 \
    --runs adagrpo_admitted adagrpo_beam mixture_1_beam mixture_1_unscaled nll_only_warmup adagrpo_admitted_warmup \
    --output benchmarks/results/probes/ml-100k/levers.json    # the committed probe (index: benchmarks/README.md)
```
"""

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import quality  # the sibling script: benchmarks/ is on sys.path when this script runs

from adagrpo_trl.utils import atomic_write_json


logger = logging.getLogger("benchmarks.quality_probe")


BASE_RUNS = ("nll_only", "adagrpo", "mixture_1", "grpo")


def probe_runs(tau: float, rho: float) -> dict[str, dict]:
    """
    Every run the probe knows, by name. The first four (`BASE_RUNS`) are the default; the others vary one lever of the
    RL stage: the gated term's normaliser (`_admitted`), beam rollouts (`_beam`), unscaled advantages (`_unscaled`,
    TRL's `scale_rewards="none"`) and a learning-rate warm-up over the first quarter of the steps (`_warmup`).
    """
    adagrpo = {"gate_mode": "adaptive", "gate_tau": tau, "gate_rho": rho}
    mixture = {"gate_mode": "always", "nll_coef": 1.0, "grpo_coef": 1.0}
    return {
        "nll_only": {"gate_mode": "never"},
        "adagrpo": adagrpo,
        "mixture_1": mixture,
        "grpo": {"gate_mode": "always", "nll_coef": 0.0},
        "adagrpo_admitted": {**adagrpo, "gate_normalization": "admitted"},
        "adagrpo_beam": {**adagrpo, "rollout": "beam"},
        "adagrpo_admitted_beam": {**adagrpo, "gate_normalization": "admitted", "rollout": "beam"},
        "mixture_1_beam": {**mixture, "rollout": "beam"},
        "mixture_1_unscaled": {**mixture, "scale_rewards": "none"},
        "adagrpo_admitted_unscaled": {**adagrpo, "gate_normalization": "admitted", "scale_rewards": "none"},
        "nll_only_warmup": {"gate_mode": "never", "warmup_steps": 0.25},
        "adagrpo_admitted_warmup": {**adagrpo, "gate_normalization": "admitted", "warmup_steps": 0.25},
    }


def sft_validation_hr(run_dir: Path) -> float:
    from adagrpo_trl.scripts.configs import EvaluateArguments
    from adagrpo_trl.scripts.evaluate import run_evaluate

    output = run_dir / "probe" / "sft_validation.json"
    if not output.exists():
        output.parent.mkdir(parents=True, exist_ok=True)
        run_evaluate(
            EvaluateArguments(
                model_path=str(run_dir / "sft"),
                data_dir=str(run_dir / "data"),
                split="validation",
                output_file=str(output),
            )
        )
    return json.loads(output.read_text())["hr@10"]


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--run_dir", required=True, help="A seed folder of the quality benchmark (data/, sft/, ranker/)."
    )
    parser.add_argument("--dataset", choices=sorted(quality.RECIPES), default="ml-100k")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning_rates", type=float, nargs="+", default=[1e-3, 1e-4, 1e-5])
    parser.add_argument("--gate_tau", type=float, default=0.5)
    parser.add_argument("--gate_rho", type=float, default=0.25)
    parser.add_argument(
        "--runs",
        nargs="+",
        default=list(BASE_RUNS),
        help=f"Probe runs (default: {' '.join(BASE_RUNS)}); see `probe_runs` for the others.",
    )
    parser.add_argument("--max_steps", type=int, default=200)
    parser.add_argument("--eval_steps", type=int, default=100)
    parser.add_argument("--output", default=None, help="JSON report (default: <run_dir>/probe/probe.json).")
    args = parser.parse_args(argv)
    known = probe_runs(args.gate_tau, args.gate_rho)
    unknown = [name for name in args.runs if name not in known]
    if unknown:
        raise ValueError(f"Unknown probe run(s) {unknown}; known: {sorted(known)}.")
    run_dir = Path(args.run_dir)
    for part in ("data", "sft", "ranker"):
        if not (run_dir / part).exists():
            raise FileNotFoundError(f"{run_dir / part} is missing: run benchmarks/quality.py for this seed first.")
    recipe_args = quality.parse_args(
        ["--dataset", args.dataset, "--max_steps", str(args.max_steps), "--eval_steps", str(args.eval_steps)]
    )
    recipe = quality.base_recipe(recipe_args)
    report = {
        "command": "python benchmarks/quality_probe.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "run_dir": str(run_dir),
        "split": "validation",
        "max_steps": args.max_steps,
        "sft_validation_hr@10": sft_validation_hr(run_dir),
    }
    runs = {}
    for lr in args.learning_rates:
        for name in args.runs:
            overrides = known[name]
            # Runs of another length get their own folder (the 200-step ones keep their original names).
            tag = f"probe_{name}_lr{lr:g}" + (f"_steps{args.max_steps}" if args.max_steps != 200 else "")
            start = time.perf_counter()
            quality.train_for_selection(run_dir, recipe, args.seed, tag, {**overrides, "learning_rate": lr})
            history = json.loads((run_dir / "selection" / tag / "log_history.json").read_text())
            runs[tag] = {
                "method": name,
                "learning_rate": lr,
                "overrides": overrides,
                "validation_hr@10": {log["step"]: log["eval_hr@10"] for log in history if "eval_hr@10" in log},
                "reward": {log["step"]: log["reward"] for log in history if "reward" in log},
                "seconds": round(time.perf_counter() - start, 1),
            }
            logger.info("%s: validation HR@10 %s", tag, runs[tag]["validation_hr@10"])
    report["runs"] = runs
    output = Path(args.output or run_dir / "probe" / "probe.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(output, report, indent=2)


if __name__ == "__main__":
    main()
