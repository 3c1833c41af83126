"""Evaluate quality judges in one run, on data none of them was fitted or tuned on.

    python -m models.training.eval_quality --workers 2        # writes runs/quality2/eval.json and prints a table

Judges, each run here on the same images:

* ``q``: models/quality.onnx (or ``--q PATH``), through onnxruntime, as the app runs it;
* ``q_v3``: version 3 of Q (``git show 42ab3c4:models/quality.onnx``, or ``--q-v3 PATH``);
* ``q_v2``: version 2 (``git show 59418b1:models/quality.onnx``, or ``--q-v2 PATH``);
* any other Q file, ``--judge NAME=PATH`` (repeatable; ``--judge q_v4=models/quality.onnx`` beside
  ``--q`` a candidate); ``--no-old`` leaves versions 2 and 3 out;
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
5. **Successful restorations** (since Q version 4): each VAL view degraded (JPEG 15-65, noise
   sigma 4-20, or both; ``quality_pairs.restoration_pair``) against our restorer's output on it; where
   the output is at least 0.3 dB closer to the clean view, the share of judges' rankings that put it
   above the degraded copy.
6. **Invisible edits** (since Q version 4): a good JPEG against our restorer's deblocking of it
   without the dead zone, or the view against itself with sub-level noise
   (``quality_pairs.invisible_pair``), where PSNR against the clean view moves by at most 0.15 dB
   or the edit itself is under 50 dB: the judges' gap, in
   units of each judge's own standard deviation over the clean VAL views (0 = a perfect tie), and
   for the 1..10 judges the mean gap in points and the share within half a point.
7. **Tone corrections** (since Q version 5): each VAL view given a tonal degradation
   (``quality_pairs.tone_correction_pair``) against our tone stage's correction of it; where the
   correction is at least 1 dB closer to the clean view, the share ranked above the degraded copy;
   and **the tone stage on a clean view**: where it changes the view by more than 38 dB, the share
   of rankings that keep the clean view above the edit.
8. **Graded gains** (since Q version 5): over every restoration and tone correction of tests 5 and 7
   (whatever their gain), Spearman between each judge's gain and the gain in PSNR against the
   clean view: does the judge's gain track what an edit really does, across kinds? (The
   improvability labels are a judge's gain; issue 12 asks them to track the PSNR gain.)
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
Q3_COMMIT = "42ab3c4"
Q2_COMMIT = "59418b1"
JUDGES: tuple[str, ...] = ("q", "q_v3", "q_v2", "assessor_quality", "niqe", "laplacian_var")
POINT_JUDGES: tuple[str, ...] = ("q", "q_v3", "q_v2")


def _set_judges(names: list[str]) -> None:
    """The Q judges of this run, in order ("q" first), then the fixed baselines."""
    global JUDGES, POINT_JUDGES
    POINT_JUDGES = tuple(names)
    JUDGES = (*names, "assessor_quality", "niqe", "laplacian_var")
VIEWS = {"CBSD432": 1, "CQ100": 2, "SunHays80": 1, "Unsplash_Okolors": 6, "photos": 6}


def _from_commit(commit: str, name: str) -> Path:
    p = RUN / name
    if not p.exists():
        RUN.mkdir(parents=True, exist_ok=True)
        data = subprocess.run(["git", "show", f"{commit}:models/quality.onnx"], cwd=REPO, check=True,
                              capture_output=True).stdout
        p.write_bytes(data)
    return p


def q3_path() -> Path:
    return _from_commit(Q3_COMMIT, "quality_v3.onnx")


def q2_path() -> Path:
    return _from_commit(Q2_COMMIT, "quality_v2.onnx")


def niqe_path() -> Path:
    from models.training.niqe import NIQE
    from models.training.quality_pairs import random_view

    RUN.mkdir(parents=True, exist_ok=True)
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
    def __init__(self, qs: dict[str, str]) -> None:
        import onnxruntime as ort

        from engine.assess.scoring import Scorer
        from models.training.niqe import NIQE

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        self.qs = {name: ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
                   for name, path in qs.items()}
        self.scorer = Scorer(workers=1)
        self.niqe = NIQE.load(niqe_path())

    def __call__(self, img: np.ndarray) -> dict[str, float]:
        from engine.assess.quality import MIN_SIDE, pad_to

        u8 = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        a = pad_to(u8, MIN_SIDE)
        x = np.ascontiguousarray(a.transpose(2, 0, 1)[None], np.float32) / 255.0
        y = cv2.cvtColor(u8, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
        return {
            **{name: float(sess.run(None, {"image": x})[0][0]) for name, sess in self.qs.items()},
            "assessor_quality": float(self.scorer.assess(u8).quality),
            "niqe": -self.niqe.score(u8),
            "laplacian_var": float(cv2.Laplacian(y, cv2.CV_32F).var()),
        }


def _restorer(jpeg_zone: int | None | str = "engine") -> Any:
    from models.training.train_quality import OnnxRestorer, find_restorer

    rp = find_restorer()
    return OnnxRestorer(rp, threads=1, jpeg_zone=jpeg_zone) if rp is not None else None


def job_clive(qs: dict[str, str], step: int = 1) -> dict[str, Any]:
    from models.training.iqa_data import load_clive
    from models.training.iqa_data import load_rgb as load_rated

    j = Judges(qs)
    rows = []
    for r in load_clive("val")[::step]:
        s = j(load_rated(r.path).astype(np.float32) / 255.0)
        rows.append({"name": r.path.name, "mos": r.mos, **s})
    return {"clive": rows}


def job_pairs(qs: dict[str, str], shard: int, nshards: int, seed: int, view_step: int = 1) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from engine.enhance import tone as tone_stage
    from models.training import quality_pairs as qp

    def correct(img: np.ndarray) -> np.ndarray:
        return tone_stage.enhance(img)[0]

    j = Judges(qs)
    restorer = _restorer()
    deblock = _restorer(jpeg_zone=None)
    photos = discover("val")
    jobs = [(i, k) for i, ph in enumerate(photos) for k in range(VIEWS.get(ph.group, 1))][::view_step][shard::nshards]
    pairs, texture, intent, restoration, ties, tone_fix, tone_clean = [], [], [], [], [], [], []
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
        # successful restorations and invisible edits (a random stream of their own: the tests above
        # draw what they drew before version 4)
        r4 = np.random.default_rng([seed, 98, pi, k])
        if restorer is not None:
            kind4, rest_img, deg_img, gain = qp.restoration_pair(u, r4, restorer)
            restoration.append({"kind": kind4, "view": f"{ph.path.name}#{k}", "gain_db": gain,
                                "restored": j(rest_img), "degraded": j(deg_img)})
        kind4, a_img, b_img, dpsnr, tie = qp.invisible_pair(u, r4, deblock)
        ties.append({"kind": kind4, "view": f"{ph.path.name}#{k}", "dpsnr_db": dpsnr, "tie": tie,
                     "a": j(a_img), "b": j(b_img)})
        # tone corrections and the tone stage on the clean view (a stream of their own, version 5)
        r5 = np.random.default_rng([seed, 97, pi, k])
        kind5, fixed, deg5, gain5 = qp.tone_correction_pair(u, r5, correct)
        tone_fix.append({"kind": kind5, "view": f"{ph.path.name}#{k}", "gain_db": gain5,
                         "restored": j(fixed), "degraded": j(deg5)})
        edited, p5 = qp.tone_on_clean(u, correct)
        if p5 < qp.TONE_ON_CLEAN_MAX_DB:
            tone_clean.append({"view": f"{ph.path.name}#{k}", "psnr_db": p5, "clean": su, "edited": j(edited)})
        if n % 10 == 0:
            print(f"[pairs {shard}] {n}/{len(jobs)}", flush=True)
    return {"pairs": pairs, "texture": texture, "intent": intent, "restoration": restoration, "ties": ties,
            "tone_fix": tone_fix, "tone_clean": tone_clean}


def _corr(a: list[float], b: list[float]) -> tuple[float, float]:
    from models.training.train_quality import pearson, spearman

    return spearman(np.array(a), np.array(b)), pearson(np.array(a), np.array(b))


def summarise(res: dict[str, Any]) -> dict[str, Any]:
    fixed = ("assessor_quality", "niqe", "laplacian_var")
    _set_judges([k for k in res["clive"][0] if k not in ("name", "mos", *fixed)])
    out: dict[str, Any] = {"judges": list(JUDGES)}
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
    if res.get("restoration"):
        from models.training.quality_pairs import MIN_RESTORE_GAIN_DB

        rr = [r for r in res["restoration"] if r["gain_db"] >= MIN_RESTORE_GAIN_DB]
        rs: dict[str, Any] = {}
        for key in sorted({r["kind"] for r in rr}) + ["all"]:
            rows = [r for r in rr if key in ("all", r["kind"])]
            rs[key] = {"n": len(rows), "gain_db_mean": float(np.mean([r["gain_db"] for r in rows])),
                       **{jn: float(np.mean([r["restored"][jn] > r["degraded"][jn] for r in rows])) for jn in JUDGES}}
        out["restoration"] = rs
        sd = {jn: float(np.std([r["better"][jn] for r in pairs])) or 1.0 for jn in JUDGES}
        tt = [r for r in res["ties"] if r["tie"]]
        ts: dict[str, Any] = {}
        for key in sorted({r["kind"] for r in tt}) + ["all"]:
            rows = [r for r in tt if key in ("all", r["kind"])]
            ts[key] = {"n": len(rows), **{jn: float(np.mean([abs(r["a"][jn] - r["b"][jn]) for r in rows])) / sd[jn]
                                          for jn in JUDGES}}
            for jn in POINT_JUDGES:
                gaps = [abs(r["a"][jn] - r["b"][jn]) for r in rows]
                ts[key][f"{jn}_points"] = float(np.mean(gaps))
                ts[key][f"{jn}_within_half"] = float(np.mean([g <= 0.5 for g in gaps]))
        out["ties"] = ts
    if res.get("tone_fix"):
        from models.training.quality_pairs import MIN_TONE_GAIN_DB

        tf = [r for r in res["tone_fix"] if r["gain_db"] >= MIN_TONE_GAIN_DB]
        out["tone_fix"] = {"n": len(tf), "gain_db_mean": float(np.mean([r["gain_db"] for r in tf])) if tf else None,
                           **{jn: float(np.mean([r["restored"][jn] > r["degraded"][jn] for r in tf])) if tf else None
                              for jn in JUDGES}}
        tc = res.get("tone_clean", [])
        out["tone_clean"] = {"n": len(tc), **{jn: float(np.mean([r["clean"][jn] > r["edited"][jn] for r in tc]))
                                              if tc else None for jn in JUDGES}}
        graded = res.get("restoration", []) + res["tone_fix"]
        db = [r["gain_db"] for r in graded]
        gg: dict[str, Any] = {"n": len(graded)}
        for jn in JUDGES:
            gg[jn] = _corr([r["restored"][jn] - r["degraded"][jn] for r in graded], db)[0]
        for jn in POINT_JUDGES:
            for fam, rows in (("restoration", res.get("restoration", [])), ("tone_fix", res["tone_fix"])):
                gg[f"{jn}_mean_gain_{fam}"] = float(np.mean([r["restored"][jn] - r["degraded"][jn] for r in rows]))
        gg["mean_db_restoration"] = float(np.mean([r["gain_db"] for r in res.get("restoration", [])] or [0.0]))
        gg["mean_db_tone_fix"] = float(np.mean([r["gain_db"] for r in res["tone_fix"]]))
        out["graded_gain"] = gg
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
    for k, v in s.get("restoration", {}).items():
        lines.append(f"| restored above degraded, {k} (n={v['n']}, {v['gain_db_mean']:+.2f} dB) | "
                     + " | ".join(f"{v[j]:.3f}" for j in JUDGES) + " |")
    for k, v in s.get("ties", {}).items():
        lines.append(f"| invisible edit {k} (n={v['n']}): gap in judge SDs (lower is better) | "
                     + " | ".join(f"{v[j]:.3f}" for j in JUDGES) + " |")
        lines.append(f"| invisible edit {k}: gap in points / share within 0.5 | "
                     + " | ".join(f"{v[j + '_points']:.2f} / {v[j + '_within_half']:.2f}" if j in POINT_JUDGES else "-"
                                  for j in JUDGES) + " |")
    if "tone_fix" in s:
        v = s["tone_fix"]
        lines.append(f"| tone correction above degraded (n={v['n']}, {v['gain_db_mean']:+.2f} dB) | "
                     + " | ".join(f"{v[j]:.3f}" for j in JUDGES) + " |")
        v = s["tone_clean"]
        if v["n"]:
            lines.append(f"| clean above the tone stage's edit of it (n={v['n']}) | "
                         + " | ".join(f"{v[j]:.3f}" for j in JUDGES) + " |")
        v = s["graded_gain"]
        lines.append(f"| graded: Spearman(judge's gain, PSNR gain), restorations + tone fixes (n={v['n']}) | "
                     + " | ".join(f"{v[j]:.3f}" for j in JUDGES) + " |")
        lines.append(f"| mean gain in points: restorations ({v['mean_db_restoration']:+.2f} dB) / tone fixes "
                     f"({v['mean_db_tone_fix']:+.2f} dB) | "
                     + " | ".join(f"{v[j + '_mean_gain_restoration']:+.2f} / {v[j + '_mean_gain_tone_fix']:+.2f}"
                                  if j in POINT_JUDGES else "-" for j in JUDGES) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--q", type=Path, default=REPO / "models" / "quality.onnx")
    ap.add_argument("--q-v3", type=Path, default=None)
    ap.add_argument("--q-v2", type=Path, default=None)
    ap.add_argument("--judge", action="append", default=[], help="another Q file, NAME=PATH (repeatable)")
    ap.add_argument("--no-old", action="store_true", help="leave versions 2 and 3 out")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RUN / "eval.json")
    ap.add_argument("--summarise-only", action="store_true")
    ap.add_argument("--step", type=int, default=1, help="every STEP-th view and CLIVE photo only (a smoke run)")
    args = ap.parse_args(argv)
    t0 = time.time()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    raw_path = args.out.with_name(args.out.stem + "_raw.json")
    if not args.summarise_only:
        qs = {"q": str(args.q)}
        for kv in args.judge:
            if "=" not in kv or not Path(kv.split("=", 1)[1]).is_file():
                ap.error(f"--judge wants NAME=PATH to an existing Q file, got {kv!r}")
            name, path = kv.split("=", 1)
            qs[name] = path
        if not args.no_old:
            qs["q_v3"] = str(args.q_v3 or q3_path())
            qs["q_v2"] = str(args.q_v2 or q2_path())
        niqe_path()
        res: dict[str, Any] = {"clive": [], "pairs": [], "texture": [], "intent": [], "restoration": [], "ties": [],
                               "tone_fix": [], "tone_clean": []}
        with ProcessPoolExecutor(args.workers) as ex:
            futs = [ex.submit(job_clive, qs, args.step)]
            futs += [ex.submit(job_pairs, qs, s, args.workers, args.seed, args.step)
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
