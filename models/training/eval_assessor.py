"""Evaluate the assessor on the held-out VAL split, beside baselines, and choose its thresholds.

    python -m models.training.eval_assessor [--model models/assessor.onnx] [--no-write]

Ground truth: the val label set (``python -m models.training.labels --split val``): photos of
the validation split, clean or degraded in known ways, enhanced by our own pipeline. Targets:

* ``delta`` = Q(enhanced) - Q(original) (the label the assessor learns);
* full-reference gains against the clean original: PSNR gain (dB), SSIM gain, and the gain of
  the full-reference quality target of the quality model (``quality_target``).

"Worth enhancing" (positive class for AUC-PR): delta >= ``--pos`` quality points (default 1.0);
for the PSNR target, a gain >= 1 dB.

Rankers compared, all on the same photos in the same run: the assessor's improvability; the
variance of the Laplacian (sharpness; low = more improvable); ``10 - quality`` with the
assessor's own quality head and with the quality model run on the full image (ranking by low
quality instead of by gain); and the oracle (actually running the enhancer and measuring
Q(enhanced) - Q(original): the label itself, so it scores 1.0 against delta by construction and
is informative against the full-reference targets).

Thresholds: the recommendation threshold on improvability is the point of the precision-recall
curve with the best F1 on the training split's monitoring photos (never on val), and each
degradation's severity threshold likewise (positive = known severity >= 0.25). They are written
to ``models/assessor.json`` (read by engine.assess.scoring) unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.assess.degrade import SEVERITY_NAMES
from models.training.data import REPO
from models.training.labels import OUT as LABELS
from models.training.labels import load_labels
from models.training.train_quality import pearson, spearman

SEV_POS = 0.25


def average_precision(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the precision-recall curve (step-wise average precision, ties broken pessimistically)."""
    pos = np.asarray(positive, bool)
    if pos.sum() == 0:
        return float("nan")
    s = np.asarray(score, np.float64)
    order = np.lexsort((pos.astype(int), -s))  # among ties, negatives first (no credit for ties)
    p = pos[order]
    tp = np.cumsum(p)
    precision = tp / np.arange(1, len(p) + 1)
    return float(np.sum(precision[p]) / pos.sum())


# a severity head whose AUC-PR on the monitor photos is below this gets no badge (threshold 0.95)
MIN_BADGE_AP = 0.3
# badges that stay off whatever the monitor says: their heads have never told these degradations
# apart on VAL (AUC-PR 0.09-0.13 for every assessor since Q v2, at a base rate of about 5 %), and
# the monitor holds too few of them (10-15 positives) for its AUC-PR to decide; with the Q v4
# labels its 0.36 for motion blur turned a badge on that showed on 5 of 99 clean VAL photos
ALWAYS_OFF = ("motion_blur", "color_cast")
# at most this share of the monitor's pristine photos may show a badge (per degradation)
BADGE_PRISTINE_RATE = 0.05

# The recommendation threshold maximises F-beta with this beta on the monitor photos: precision
# weighs twice recall. A "worth enhancing" on a photo the enhancer cannot help costs the user's
# trust (and a batch's time) more than a missed photo, which still ranks high in the sort. With
# F1 the Q v4 assessor's threshold fell to 0.65 points and recommended 5.6 % of the pristine VAL
# samples (previous assessors about 1 %; models/assessor.md)
RECOMMEND_BETA = 0.5
# ... and at most this share of the monitor's pristine photos may be recommended
RECOMMEND_PRISTINE_RATE = 0.02

# cases without a defect: a clean photo, shallow depth of field (intent), a good camera JPEG
PRISTINE_CASES = ("clean", "shallow_dof", "jpeg_camera")


def best_f1_threshold(score: np.ndarray, positive: np.ndarray, beta: float = 1.0) -> tuple[float, float, float, float]:
    """(threshold, F-beta, precision, recall) maximising F-beta (F1 by default) over the PR curve
    of ``score``."""
    s = np.asarray(score, np.float64)
    pos = np.asarray(positive, bool)
    order = np.argsort(-s, kind="stable")
    p = pos[order]
    tp = np.cumsum(p)
    k = np.arange(1, len(p) + 1)
    prec = tp / k
    rec = tp / max(1, pos.sum())
    b2 = beta * beta
    f1 = np.where(prec + rec > 0, (1 + b2) * prec * rec / np.maximum(b2 * prec + rec, 1e-12), 0)
    # only cut between distinct scores
    valid = np.r_[s[order][1:] < s[order][:-1], True]
    f1v = np.where(valid, f1, -1)
    i = int(np.argmax(f1v))
    nxt = s[order][i + 1] if i + 1 < len(s) else s[order][i] - 1.0
    thr = float((s[order][i] + nxt) / 2)
    return thr, float(f1[i]), float(prec[i]), float(rec[i])


def run_model(model: Path, L: dict[str, np.ndarray], bs: int = 32) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    outs: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for i in range(0, len(L["delta"]), bs):
        c = L["crops"][i : i + bs].astype(np.float32) / 255.0
        g = L["glob"][i : i + bs].astype(np.float32) / 255.0
        for n, v in zip(names, sess.run(names, {"crops": c, "global": g}), strict=True):
            outs[n].append(v)
    return {n: np.concatenate(v) for n, v in outs.items()}


def rank_metrics(score: np.ndarray, target: np.ndarray, positive: np.ndarray) -> dict[str, float]:
    return {"spearman": round(spearman(score, target), 3), "pearson": round(pearson(score, target), 3),
            "auc_pr": round(average_precision(score, positive), 3)}


def evaluate(model: Path, pos_threshold: float, labels_root: Path = LABELS) -> dict[str, Any]:
    t0 = time.monotonic()
    V = load_labels("val", labels_root)
    pv = run_model(model, V)
    delta = V["delta"]
    targets = {
        "delta": (delta, delta >= pos_threshold),
        "psnr_gain": (V["psnr_enh"] - V["psnr_orig"], (V["psnr_enh"] - V["psnr_orig"]) >= 1.0),
        "ssim_gain": (V["ssim_enh"] - V["ssim_orig"], (V["ssim_enh"] - V["ssim_orig"]) >= 0.02),
        "frq_gain": (V["frq_enh"] - V["frq_orig"], (V["frq_enh"] - V["frq_orig"]) >= pos_threshold),
    }
    rankers = {
        "assessor improvability": pv["improvability"],
        "variance of Laplacian (low = improvable)": -np.log1p(V["lapvar"]),
        "10 - quality (assessor head)": 10.0 - pv["quality"],
        "10 - Q (quality model, full image)": 10.0 - V["q_orig"],
        "oracle (run the enhancer, measure Q gain)": delta,
    }
    table: dict[str, dict[str, dict[str, float]]] = {}
    for rname, score in rankers.items():
        table[rname] = {tname: rank_metrics(score, t, pos) for tname, (t, pos) in targets.items()}
    # the target: on degraded photos with clean references, agreement with the measured
    # PSNR gain of one-click enhance (clean, shallow-DOF and camera-JPEG cases have no defect)
    degraded = ~np.isin(V["case"], list(PRISTINE_CASES))
    psnr_gain = V["psnr_enh"] - V["psnr_orig"]
    table_degraded = {rname: rank_metrics(score[degraded], psnr_gain[degraded], psnr_gain[degraded] >= 1.0)
                      for rname, score in rankers.items()}
    # do clean and shallow depth-of-field photos stay at the bottom?
    pct = np.argsort(np.argsort(pv["improvability"])) / max(1, len(delta) - 1)  # 0 = bottom, 1 = top
    bottom = {}
    for case in sorted(set(V["case"].tolist())):
        m = V["case"] == case
        bottom[case] = {"n": int(m.sum()), "mean_rank_percentile": round(float(pct[m].mean()), 3),
                        "mean_pred": round(float(pv["improvability"][m].mean()), 3),
                        "mean_delta": round(float(delta[m].mean()), 3)}
    sev_auc = {}
    for j, n in enumerate(SEVERITY_NAMES):
        pos = V["sev"][:, j] >= SEV_POS
        sev_auc[n] = {"n_pos": int(pos.sum()),
                      "auc_pr": round(average_precision(pv["severity"][:, j], pos), 3) if pos.any() else None}
    q_corr = {"spearman_quality_head_vs_Q": round(spearman(pv["quality"], V["q_orig"]), 3)}
    return {"n_val": int(len(delta)), "positive_rate": round(float((delta >= pos_threshold).mean()), 3),
            "pos_threshold": pos_threshold, "table": table, "by_case": bottom,
            "degraded_vs_psnr_gain": {"n": int(degraded.sum()), "table": table_degraded}, "severity": sev_auc,
            "quality": q_corr, "seconds": round(time.monotonic() - t0, 1), "pred": pv, "labels": V}


def choose_thresholds(model: Path, pos_threshold: float, labels_root: Path = LABELS) -> dict[str, Any]:
    """Thresholds from the PR curves on the training split's monitoring photos (never val)."""
    from models.training.train_assessor import _holdout

    L = load_labels("train", labels_root)
    m = _holdout(L["photo"])
    sub = {k: v[m] for k, v in L.items() if k != "meta"}
    p = run_model(model, sub)
    f1_thr = best_f1_threshold(p["improvability"], sub["delta"] >= pos_threshold)[0]
    thr, f1, prec, rec = best_f1_threshold(p["improvability"], sub["delta"] >= pos_threshold, RECOMMEND_BETA)
    sev = {}
    unreliable = []
    pristine = np.isin(sub["case"], list(PRISTINE_CASES))
    if pristine.sum() >= 20:
        thr = max(thr, float(np.quantile(p["improvability"][pristine], 1.0 - RECOMMEND_PRISTINE_RATE)))
        pos_m = sub["delta"] >= pos_threshold
        rec_m = p["improvability"] >= thr
        tp = float((rec_m & pos_m).sum())
        prec = tp / max(float(rec_m.sum()), 1.0)
        rec = tp / max(float(pos_m.sum()), 1.0)
        f1 = (1 + RECOMMEND_BETA ** 2) * prec * rec / max(RECOMMEND_BETA ** 2 * prec + rec, 1e-12)
    for j, n in enumerate(SEVERITY_NAMES):
        pos = sub["sev"][:, j] >= SEV_POS
        ap = average_precision(p["severity"][:, j], pos) if pos.sum() >= 5 else 0.0
        if ap < MIN_BADGE_AP or n in ALWAYS_OFF:
            # a head that cannot tell this degradation apart (best F1 would then be "say it of
            # every photo"): its badge is as good as off, rather than on every clean photo
            sev[n] = 0.95
            unreliable.append(n)
            continue
        sev[n] = round(best_f1_threshold(p["severity"][:, j], pos)[0], 4)
        # a badge says something is wrong: on the monitor's pristine photos (clean, shallow depth
        # of field, good camera JPEGs) it may show on at most BADGE_PRISTINE_RATE of them; best F1
        # alone put a compression badge on a third of clean real photos (models/assessor.md)
        if pristine.sum() >= 20:
            floor = float(np.quantile(p["severity"][pristine, j], 1.0 - BADGE_PRISTINE_RATE))
            sev[n] = round(max(sev[n], floor), 4)
        sev[n] = float(np.clip(sev[n], 0.05, 0.95))
    return {"improvability": round(thr, 4), "improvability_best_f1": round(f1_thr, 4),
            "severity": sev, "badges_off": unreliable,
            "chosen_on": f"train monitor photos (n={int(m.sum())}), best F{RECOMMEND_BETA:g} for delta >= {pos_threshold}, raised to "
                         f"recommend at most {RECOMMEND_PRISTINE_RATE:.0%} of its pristine photos; badges: "
                         f"best F1, raised to show on at most {BADGE_PRISTINE_RATE:.0%} of its pristine photos",
            "f_beta": round(f1, 3), "precision": round(prec, 3), "recall": round(rec, 3)}


def markdown(res: dict[str, Any]) -> str:
    tn = list(next(iter(res["table"].values())))
    lines = ["| ranker | " + " | ".join(f"{t}: Spearman / Pearson / AUC-PR" for t in tn) + " |",
             "|---|" + "---|" * len(tn)]
    for r, row in res["table"].items():
        lines.append(f"| {r} | " + " | ".join(f"{row[t]['spearman']:.3f} / {row[t]['pearson']:.3f} / "
                                              f"{row[t]['auc_pr']:.3f}" for t in tn) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "models" / "assessor.onnx")
    ap.add_argument("--pos", type=float, default=1.0, help="delta (quality points) that counts as worth enhancing")
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--shipped-thresholds", action="store_true",
                    help="evaluate at the thresholds in the model's sidecar (no train labels needed; implies --no-write)")
    args = ap.parse_args(argv)
    res = evaluate(args.model, args.pos, args.labels)
    if args.shipped_thresholds:
        args.no_write = True
        th = dict(json.loads(args.model.with_suffix(".json").read_text())["thresholds"])
    else:
        th = choose_thresholds(args.model, args.pos, args.labels)
    pv, V = res.pop("pred"), res.pop("labels")
    rec = pv["improvability"] >= th["improvability"]
    pos = V["delta"] >= args.pos
    res["at_threshold_on_val"] = {"threshold": th["improvability"], "recommended_share": round(float(rec.mean()), 3),
                                  "precision": round(float((rec & pos).sum() / max(1, rec.sum())), 3),
                                  "recall": round(float((rec & pos).sum() / max(1, pos.sum())), 3)}
    res["recommended_by_case"] = {c: round(float(rec[V["case"] == c].mean()), 3) for c in sorted(set(V["case"]))}
    pristine = np.isin(V["case"], list(PRISTINE_CASES))
    res["recommended_pristine_share"] = round(float(rec[pristine].mean()), 3)
    res["thresholds"] = th
    out = REPO / "runs" / "assessor" / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    print(markdown(res))
    if not args.no_write:
        side = args.model.with_suffix(".json")
        meta = json.loads(side.read_text()) if side.exists() else {}
        meta["thresholds"] = {"improvability": th["improvability"], "severity": th["severity"],
                              "chosen_on": th["chosen_on"]}
        side.write_text(json.dumps(meta, indent=1))
        print(f"thresholds written to {side}")


if __name__ == "__main__":
    main()
