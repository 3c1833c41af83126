"""Evaluate quality judges in one run, on data none of them was fitted or tuned on.

    python -m models.training.eval_quality --workers 2        # writes runs/quality2/eval.json and prints a table

Judges, each run here on the same images:

* ``q``: models/quality.onnx (or ``--q PATH``), through onnxruntime, as the app runs it;
* ``q_v2``: version 2 of Q (``git show 59418b1:models/quality.onnx``, or ``--q-v2 PATH``);
* ``q1``: version 1 (``git show 1b14a0c:models/quality.onnx``, or ``--q1 PATH``);
* ``assessor_quality``: the assessor's quality head (models/assessor.onnx through engine.assess.scoring);
* ``niqe``: our NIQE (models/training/niqe.py), pristine model fitted on clean TRAIN photos (negated:
  higher is better for every judge here);
* ``laplacian_var``: variance of the Laplacian of luminance (the classic sharpness score).

Tests:

1. **Human opinion**: Spearman and Pearson with MOS on the CLIVE validation part (fixed by name).
2. **Known-order pairs** on clean views of the VAL photos: each view against one version per
   failure kind (``quality_pairs.FAILURES`` and our restorer pushed too far), mild or strong at
   random; share ranked right per kind and per family.
3. **Texture**: the most textured crops of the VAL photos against their smoothed versions (mild
   bilateral, NL-means, Gaussian, our restorer on a lightly noisy copy) and their mildly noisy
   versions (Gaussian sigma 3-8, Poisson-Gaussian, chroma); share above both.
4. **Intent**: VAL views that are dark, bright or foggy by their look, and low/high-key grades
   of VAL views, against their naive corrections and their mildly noisy versions.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from models.training.data import REPO, discover, load_rgb

RUN = REPO / "runs" / "quality3"
Q1_COMMIT = "1b14a0c"
Q2_COMMIT = "59418b1"
JUDGES = ("q", "q_v2", "q1", "assessor_quality", "niqe", "laplacian_var")
VIEWS = {"CBSD432": 1, "CQ100": 2, "SunHays80": 1, "Unsplash_Okolors": 6, "photos": 6}


def _from_commit(commit: str, name: str) -> Path:
    p = RUN / name
    if not p.exists():
        RUN.mkdir(parents=True, exist_ok=True)
        data = subprocess.run(["git", "show", f"{commit}:models/quality.onnx"], cwd=REPO, check=True,
                              capture_output=True).stdout
        p.write_bytes(data)
    return p


def q1_path() -> Path:
    return _from_commit(Q1_COMMIT, "quality_v1.onnx")


def q2_path() -> Path:
    return _from_commit(Q2_COMMIT, "quality_v2.onnx")


def niqe_path() -> Path:
    from models.training.niqe import NIQE
    from models.training.quality_pairs import random_view

    p = RUN / "niqe_pristine.npz"
    if not p.exists():
        rng = np.random.default_rng(11)
        imgs = []
        for ph in discover("train"):
            if ph.group in ("CQ100", "Unsplash_Okolors", "photos"):
                a = load_rgb(ph, 3000 if ph.hr else None)
                for _ in range(3 if ph.hr else 1):
                    imgs.append(random_view(a, rng, ph.hr, (512, 768)))
        NIQE.fit_pristine(imgs).save(p)
    return p


class Judges:
    def __init__(self, q: Path, q2: Path, q1: Path) -> None:
        import onnxruntime as ort

        from engine.assess.scoring import Scorer
        from models.training.niqe import NIQE

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        self.q = ort.InferenceSession(str(q), so, providers=["CPUExecutionProvider"])
        self.q2 = ort.InferenceSession(str(q2), so, providers=["CPUExecutionProvider"])
        self.q1 = ort.InferenceSession(str(q1), so, providers=["CPUExecutionProvider"])
        self.scorer = Scorer(workers=1)
        self.niqe = NIQE.load(niqe_path())

    def __call__(self, img: np.ndarray) -> dict[str, float]:
        from engine.assess.quality import MIN_SIDE, pad_to

        u8 = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        a = pad_to(u8, MIN_SIDE)
        x = np.ascontiguousarray(a.transpose(2, 0, 1)[None], np.float32) / 255.0
        y = cv2.cvtColor(u8, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        return {
            "q": float(self.q.run(None, {"image": x})[0][0]),
            "q_v2": float(self.q2.run(None, {"image": x})[0][0]),
            "q1": float(self.q1.run(None, {"image": x})[0][0]),
            "assessor_quality": float(self.scorer.assess(u8).quality),
            "niqe": -self.niqe.score(u8),
            "laplacian_var": float(cv2.Laplacian(y, cv2.CV_32F).var()),
        }


def _restorer() -> Any:
    from models.training.train_quality import OnnxRestorer, find_restorer

    rp = find_restorer()
    return OnnxRestorer(rp, threads=1) if rp is not None else None


def job_clive(q: str, q2: str, q1: str) -> dict[str, Any]:
    from models.training.iqa_data import load_clive
    from models.training.iqa_data import load_rgb as load_rated

    j = Judges(Path(q), Path(q2), Path(q1))
    rows = []
    for r in load_clive("val"):
        s = j(load_rated(r.path).astype(np.float32) / 255.0)
        rows.append({"name": r.path.name, "mos": r.mos, **s})
    return {"clive": rows}


def job_pairs(q: str, q2: str, q1: str, shard: int, nshards: int, seed: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from models.training import quality_pairs as qp

    j = Judges(Path(q), Path(q2), Path(q1))
    restorer = _restorer()
    photos = discover("val")
    jobs = [(i, k) for i, ph in enumerate(photos) for k in range(VIEWS.get(ph.group, 1))][shard::nshards]
    pairs, texture, intent = [], [], []
    kinds = [*qp.FAILURES, "restorer_overdone"] if restorer is not None else list(qp.FAILURES)
    for n, (pi, k) in enumerate(jobs):
        rng = np.random.default_rng([seed, 99, pi, k])
        ph = photos[pi]
        a = load_rgb(ph, 3000 if ph.hr else None)
        u = qp.random_view(a, rng, ph.hr)
        su = j(u)
        for kind in kinds:
            mild = bool(rng.random() < 0.4)
            v = qp.restorer_overdone(u, rng, restorer, mild) if kind == "restorer_overdone" \
                else qp.FAILURES[kind](u, rng, mild=mild)
            pairs.append({"kind": kind, "family": qp.FAMILY[kind], "mild": mild, "view": f"{ph.path.name}#{k}",
                          "better": su, "worse": j(v)})
        # texture: the most textured of several candidate crops of this photo
        cands = [qp.random_view(a, rng, ph.hr, (320, 512)) for _ in range(6)]
        t = max(cands, key=qp.texture_score)
        st = j(t)
        sm = {
            "bilateral": qp.smooth_bilateral(t, rng, mild=True),
            "nlmeans": qp.smooth_nlmeans(t, rng, mild=True),
            "gaussian": qp.smooth_gaussian(t, rng, mild=True),
        }
        if restorer is not None:
            sm["restorer"] = qp.restorer_overdone(t, rng, restorer, mild=True)
        sigma = float(rng.uniform(3, 8)) / 255.0
        no = {
            "gaussian_noise": np.clip(t + rng.normal(0, sigma, t.shape).astype(np.float32), 0, 1),
            "poisson_gaussian": np.clip(qp.dg.apply_noise(t, rng, "poisson_gaussian_noise",
                                                          float(rng.uniform(0.1, 0.2)))[0], 0, 1),
            "chroma_noise": np.clip(qp.dg.apply_noise(t, rng, "chroma_noise", float(rng.uniform(0.1, 0.2)))[0], 0, 1),
        }
        texture.append({"view": f"{ph.path.name}#{k}", "texture": qp.texture_score(t), "clean": st,
                        "smoothed": {kk: j(v) for kk, v in sm.items()},
                        "noisy": {kk: j(v) for kk, v in no.items()}})
        # intent: real (by the view's look) and graded
        cases = []
        ik = qp.intent_kind(u)
        if ik is not None:
            cases.append((f"real_{ik}", ik, u, su))
        gk = str(rng.choice(["dark", "bright"]))
        g = qp.grade_intent(u, rng, gk)
        cases.append((f"graded_{gk}", gk, g, j(g)))
        for name, kind, img, s in cases:
            noisy = np.clip(img + rng.normal(0, float(rng.uniform(4, 10)) / 255.0, img.shape).astype(np.float32), 0, 1)
            row = {"case": name, "view": f"{ph.path.name}#{k}", "orig": s, "noisy": j(noisy)}
            if name.startswith("real_"):  # a synthetic grade's "correction" gives the clean photo back
                row["corrected"] = j(qp.correct_intent(img, rng, kind))
            intent.append(row)
        if n % 10 == 0:
            print(f"[pairs {shard}] {n}/{len(jobs)}", flush=True)
    return {"pairs": pairs, "texture": texture, "intent": intent}


def _corr(a: list[float], b: list[float]) -> tuple[float, float]:
    from models.training.train_quality import pearson, spearman

    return spearman(np.array(a), np.array(b)), pearson(np.array(a), np.array(b))


def summarise(res: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cl = res["clive"]
    out["clive_val"] = {"n": len(cl)}
    for jn in JUDGES:
        s, p = _corr([r[jn] for r in cl], [r["mos"] for r in cl])
        out["clive_val"][jn] = {"srocc": s, "plcc": p}
    pairs = res["pairs"]
    by: dict[str, dict[str, list[bool]]] = {}
    for r in pairs:
        for key in (r["kind"], "family:" + r["family"], "all"):
            d = by.setdefault(key, {jn: [] for jn in JUDGES})
            for jn in JUDGES:
                d[jn].append(r["better"][jn] > r["worse"][jn])
    out["pairs"] = {k: {"n": len(v["q"]), **{jn: float(np.mean(x)) for jn, x in v.items()}} for k, v in sorted(by.items())}
    tex = res["texture"]
    t: dict[str, Any] = {"n": len(tex)}
    for jn in JUDGES:
        above_s = [all(r["clean"][jn] > v[jn] for v in r["smoothed"].values()) for r in tex]
        above_n = [all(r["clean"][jn] > v[jn] for v in r["noisy"].values()) for r in tex]
        above_b = [a and b for a, b in zip(above_s, above_n, strict=True)]
        per = {kk: float(np.mean([r["clean"][jn] > r[g][kk][jn] for r in tex]))
               for g in ("smoothed", "noisy") for kk in tex[0][g]}
        t[jn] = {"above_all_smoothed": float(np.mean(above_s)), "above_all_noisy": float(np.mean(above_n)),
                 "above_both": float(np.mean(above_b)), "per_version": per}
    out["texture"] = t
    it = res["intent"]
    ii: dict[str, Any] = {}
    for case in sorted({r["case"] for r in it}):
        rows = [r for r in it if r["case"] == case]
        ii[case] = {"n": len(rows)}
        for jn in JUDGES:
            ii[case][jn] = {"above_noisy": float(np.mean([r["orig"][jn] > r["noisy"][jn] for r in rows]))}
            if "corrected" in rows[0]:
                ii[case][jn]["above_corrected"] = float(np.mean([r["orig"][jn] > r["corrected"][jn] for r in rows]))
    out["intent"] = ii
    out["q_levels"] = {
        "clean_views_mean": float(np.mean([r["better"]["q"] for r in pairs])),
        "versions_mean": float(np.mean([r["worse"]["q"] for r in pairs])),
        "textured_clean_mean": float(np.mean([r["clean"]["q"] for r in tex])),
        "intent_orig_mean": float(np.mean([r["orig"]["q"] for r in it])) if it else None,
    }
    return out


def table(s: dict[str, Any]) -> str:
    lines = ["| test | " + " | ".join(JUDGES) + " |", "|---|" + "---|" * len(JUDGES)]
    c = s["clive_val"]
    lines.append(f"| CLIVE val (n={c['n']}) Spearman | " + " | ".join(f"{c[j]['srocc']:.3f}" for j in JUDGES) + " |")
    lines.append("| CLIVE val Pearson | " + " | ".join(f"{c[j]['plcc']:.3f}" for j in JUDGES) + " |")
    for k, v in s["pairs"].items():
        lines.append(f"| pairs {k} (n={v['n']}) | " + " | ".join(f"{v[j]:.3f}" for j in JUDGES) + " |")
    t = s["texture"]
    for key in ("above_all_smoothed", "above_all_noisy", "above_both"):
        lines.append(f"| textured crops (n={t['n']}) {key} | " + " | ".join(f"{t[j][key]:.3f}" for j in JUDGES) + " |")
    for case, v in s["intent"].items():
        for key in [k for k in ("above_corrected", "above_noisy") if k in v["q"]]:
            lines.append(f"| intent {case} (n={v['n']}) {key} | " + " | ".join(f"{v[j][key]:.3f}" for j in JUDGES) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--q", type=Path, default=REPO / "models" / "quality.onnx")
    ap.add_argument("--q-v2", type=Path, default=None)
    ap.add_argument("--q1", type=Path, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RUN / "eval.json")
    ap.add_argument("--summarise-only", action="store_true")
    args = ap.parse_args(argv)
    t0 = time.time()
    raw_path = args.out.with_name(args.out.stem + "_raw.json")
    if not args.summarise_only:
        q1 = args.q1 or q1_path()
        q2 = args.q_v2 or q2_path()
        niqe_path()
        res: dict[str, Any] = {"clive": [], "pairs": [], "texture": [], "intent": []}
        with ProcessPoolExecutor(args.workers) as ex:
            futs = [ex.submit(job_clive, str(args.q), str(q2), str(q1))]
            futs += [ex.submit(job_pairs, str(args.q), str(q2), str(q1), s, args.workers, args.seed)
                     for s in range(args.workers)]
            for f in futs:
                for k, v in f.result().items():
                    res[k] += v
        raw_path.write_text(json.dumps(res))
    res = json.loads(raw_path.read_text())
    s = summarise(res)
    s["seconds"] = time.time() - t0
    args.out.write_text(json.dumps(s, indent=1))
    print(table(s))


if __name__ == "__main__":
    main()
