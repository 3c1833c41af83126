"""Does fine-tuning the last layer on graded ratings help? Simulated raters, held-out VAL split.

    python -m models.training.labels --split train --n 1200 --minutes 7 --seed 1 --out runs/labels_rated
    python -m models.training.eval_finetune [--rated runs/labels_rated] [--val runs/labels]

No human ratings are at hand, so a rater is simulated from measurements of the enhancer's actual
effect on each rated photo, and mapped to the four grades the app offers (``engine.assess.finetune``):
gain >= 2 -> 2 significant, >= 1 -> 1 moderate, >= -0.25 -> 0 neutral, else -1 regressed.

* ``Q rater``: judges by ``delta`` = Q(enhanced) - Q(original), the quantity the assessor was
  trained to predict. This is the reference's setting (fine-tune the last layer on ~1,000 rated
  pairs, then AUC-PR of "worth enhancing"): it measures what fine-tuning adds on top of training.
* ``fidelity rater``: judges by the gain of the full-reference quality target against the clean
  original (``frq_gain``), a different taste from Q's (Spearman 0.46 with delta on val). It
  measures whether a per-catalog head moves the ranking toward a user who disagrees with Q.

The rated photos come from the training split but are fresh samples (seed 1: other crops,
degradations and flips than the assessor's training labels); the evaluation is on the VAL split,
never rated. For each number of ratings, five random subsets are fitted, each two ways with the
same prior: ``engine.assess.finetune.fit_head_intervals`` (what the app runs: a grade is an interval of
gain) and ``fit_head`` (every grade pulled to one point); the median is reported. Writes ``runs/eval_finetune.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.assess.finetune import (
    DEFAULT_PRIOR,
    fit_head,
    fit_head_intervals,
    rating_intervals,
    rating_targets,
)
from engine.assess.scoring import LastLayer
from models.training.data import REPO
from models.training.eval_assessor import average_precision, run_model
from models.training.labels import OUT as LABELS
from models.training.labels import load_labels
from models.training.train_quality import spearman

GRADE_EDGES = (2.0, 1.0, -0.25)  # gain >= 2 -> 2, >= 1 -> 1, >= -0.25 -> 0, else -1
POS = 1.0  # "worth enhancing": the rater's gain >= 1


def grades(gain: np.ndarray) -> np.ndarray:
    g = np.full(len(gain), -1, np.int64)
    g[gain >= GRADE_EDGES[2]] = 0
    g[gain >= GRADE_EDGES[1]] = 1
    g[gain >= GRADE_EDGES[0]] = 2
    return g


def rater_gains(L: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"Q rater": L["delta"], "fidelity rater": L["frq_enh"] - L["frq_orig"]}


def metrics(score: np.ndarray, gain: np.ndarray) -> dict[str, float]:
    return {"spearman": round(spearman(score, gain), 3), "auc_pr": round(average_precision(score, gain >= POS), 3)}


def select_prior(pr: dict[str, np.ndarray], R: dict[str, np.ndarray], base: LastLayer, threshold: float,
                 priors: list[float], sizes: list[int], repeats: int) -> dict[str, Any]:
    """Choose the prior on the rated pool alone: fit on the photos of one half (by photo name),
    score the other half, both ways round; the prior with the best mean AUC-PR gain over the
    shipped head (both raters, every size) wins. VAL is not looked at."""
    import hashlib

    half = np.array([hashlib.sha1(str(n).encode()).digest()[0] % 2 for n in R["photo"]])
    rng = np.random.default_rng(1)
    gains: dict[str, list[float]] = {str(p): [] for p in priors}
    detail: dict[str, list[float]] = {}
    for rater, rgain in rater_gains(R).items():
        g_all = grades(rgain)
        for fit_side in (0, 1):
            fi, ev = np.flatnonzero(half == fit_side), np.flatnonzero(half != fit_side)
            shipped = average_precision(pr["improvability"][ev], rgain[ev] >= POS)
            for n in sizes:
                n_eff = min(n, len(fi))
                for _ in range(repeats):
                    idx = rng.choice(fi, n_eff, replace=False)
                    lo, hi = rating_intervals(g_all[idx], threshold)
                    for p in priors:
                        head = fit_head_intervals(pr["embedding"][idx], lo, hi, base, p)
                        g = average_precision(head(pr["embedding"][ev]), rgain[ev] >= POS) - shipped
                        gains[str(p)].append(g)
                        detail.setdefault(f"{rater} | n={n_eff} | prior={p}", []).append(g)
    mean = {p: round(float(np.mean(v)), 4) for p, v in gains.items()}
    return {"mean_auc_pr_gain_by_prior": mean, "chosen": float(max(mean, key=lambda k: mean[k])),
            "by_rater_size_prior": {k: round(float(np.mean(v)), 4) for k, v in detail.items()}}


def evaluate(model: Path, rated_root: Path, val_root: Path, sizes: list[int], repeats: int, prior: float | None,
             priors: list[float]) -> dict[str, Any]:
    t0 = time.monotonic()
    side = json.loads(model.with_suffix(".json").read_text())
    base = LastLayer(np.asarray(side["head"]["w"], np.float64), float(side["head"]["b"]))
    threshold = float(side["thresholds"]["improvability"])
    R, V = load_labels("train", rated_root), load_labels("val", val_root)
    pr, pv = run_model(model, R), run_model(model, V)
    # the sidecar's head is the network's last layer: it must reproduce the ONNX output
    gap = float(np.abs(base(pv["embedding"]) - pv["improvability"]).max())
    if gap > 1e-3:
        raise RuntimeError(f"sidecar head does not match the network's improvability (max gap {gap:.4f})")
    selection = None
    if prior is None:
        selection = select_prior(pr, R, base, threshold, priors, sizes, repeats)
        prior = float(selection["chosen"])
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"prior_selection": selection, "n_rated_pool": int(len(R["delta"])), "n_val": int(len(V["delta"])),
                           "threshold": threshold, "prior": prior, "repeats": repeats, "raters": {}}
    for rater, rgain in rater_gains(R).items():
        vgain = rater_gains(V)[rater]
        g_all = grades(rgain)
        res: dict[str, Any] = {
            "grade_counts_pool": {str(k): int((g_all == k).sum()) for k in (2, 1, 0, -1)},
            "val_positive_rate": round(float((vgain >= POS).mean()), 3),
            "shipped": metrics(pv["improvability"], vgain), "intervals": {}, "points": {}}
        for n in sizes:
            n_eff = min(n, len(rgain))
            runs: dict[str, list[dict[str, float]]] = {"intervals": [], "points": []}
            for _ in range(repeats if n_eff < len(rgain) else 1):
                idx = rng.choice(len(rgain), n_eff, replace=False)
                lo, hi = rating_intervals(g_all[idx], threshold)
                heads = {"intervals": fit_head_intervals(pr["embedding"][idx], lo, hi, base, prior),
                         "points": fit_head(pr["embedding"][idx], rating_targets(g_all[idx], threshold), base, prior)}
                for method, head in heads.items():
                    runs[method].append(metrics(head(pv["embedding"]), vgain))
            for method, rr in runs.items():
                res[method][str(n_eff)] = {k: round(float(np.median([r[k] for r in rr])), 3) for k in rr[0]}
        out["raters"][rater] = res
    out["seconds"] = round(time.monotonic() - t0, 1)
    return out


def markdown(res: dict[str, Any]) -> str:
    sizes = list(next(iter(res["raters"].values()))["intervals"])
    head = "| rater (val positives) | fit | shipped head | " + " | ".join(f"{n} ratings" for n in sizes) + " |"
    lines = [head, "|" + "---|" * (3 + len(sizes))]
    for rater, r in res["raters"].items():
        for method in ("intervals", "points"):
            cells = [f"{r['shipped']['spearman']:.3f} / {r['shipped']['auc_pr']:.3f}"]
            cells += [f"{r[method][n]['spearman']:.3f} / {r[method][n]['auc_pr']:.3f}" for n in sizes]
            lines.append(f"| {rater} ({r['val_positive_rate']:.0%}) | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "models" / "assessor.onnx")
    ap.add_argument("--rated", type=Path, default=REPO / "runs" / "labels_rated")
    ap.add_argument("--val", type=Path, default=LABELS)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 30, 100, 300, 1000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--prior", type=float, default=None,
                    help=f"fixed prior (the app's is {DEFAULT_PRIOR}); default: choose among --priors on the rated pool")
    ap.add_argument("--priors", type=float, nargs="+", default=[2, 8, 32, 128, 512])
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "eval_finetune.json")
    args = ap.parse_args(argv)
    res = evaluate(args.model, args.rated, args.val, args.sizes, args.repeats, args.prior, args.priors)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    print("\nSpearman / AUC-PR on VAL against each rater's own gain (median of the subsets):\n")
    print(markdown(res))


if __name__ == "__main__":
    main()
