"""Delta labels for the assessor: ``delta = Q(enhanced) - Q(original)``.

    python -m models.training.labels                       # train and val label sets, 2 workers
    python -m models.training.labels --split val --n 400   # one split

Each sample is a photo (or a region of a high-resolution photo) of the given split, either left
clean or degraded in a known way (light or heavy blind degradations of ``engine.assess.degrade``,
single defects, tonal problems, shallow depth of field, which is not a defect), then run through
the one-click enhancement (the restorer, then the tone stage when ``engine.enhance.tone`` and
``models/tone.onnx`` exist). Q is the shipped quality model ``models/quality.onnx`` (version 2,
models/quality.md), or ``--quality`` (an ONNX file or a torch checkpoint of Q).

Stored per sample (``runs/labels/<split>_<shard>.npz``): the assessor's views of the degraded
photo (``engine.assess.views.make_views``, uint8), ``delta``, ``q_orig``, ``q_enh``, the known severities
(``DegradeResult.severity``, order ``SEVERITY_NAMES``), and full-reference measures against the
clean original (PSNR/SSIM before and after, the full-reference quality target before and after),
so that the agreement of delta with full-reference gains can be reported (``--report``).
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.assess import degrade as dg
from engine.assess import metrics
from engine.assess.views import make_views
from models.training.data import REPO, Photo, discover, load_rgb

OUT = REPO / "runs" / "labels"
CASES = ("clean", "light", "heavy", "single", "tone", "tone_mixed", "shallow_dof", "jpeg_camera")
CASE_P = (0.14, 0.18, 0.2, 0.14, 0.12, 0.06, 0.1, 0.06)


def _restorer_path() -> Path:
    for p in (REPO / "models" / "restorer.onnx", REPO / "runs" / "restorer" / "restorer_latest.onnx"):
        if p.exists():
            return p
    raise FileNotFoundError("no restorer ONNX (models/restorer.onnx or runs/restorer/restorer_latest.onnx)")


class Enhancer:
    """The one-click enhancement used for labels: restore, then tone when available."""

    def __init__(self, restorer: Path, use_tone: bool = True) -> None:
        self.stages: list[str] = []
        self.restorer_path = restorer
        try:
            from engine.enhance.restore import Restorer

            self._restore: Any = Restorer(restorer)
            self.stages.append("restore(engine.enhance.restore)")
        except Exception:  # helper R's engine may not be there yet: same contract, direct ORT
            from models.training.train_quality import OnnxRestorer

            r = OnnxRestorer(restorer)
            self._restore = type("R", (), {"run": staticmethod(lambda x, **_: r(x))})()
            self.stages.append("restore(onnxruntime)")
        self._tone: Any = None
        if use_tone and (REPO / "models" / "tone.onnx").exists():
            try:
                from engine.enhance import tone

                tone.predict_params(np.full((64, 64, 3), 0.5, np.float32))
                self._tone = tone
                self.stages.append("tone(engine.enhance.tone)")
            except Exception as e:  # noqa: BLE001 - report and go on without the stage
                print(f"tone stage unavailable: {e!r}", flush=True)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = np.clip(self._restore.run(x), 0, 1).astype(np.float32)
        if self._tone is not None:
            # planned from the original, as engine.enhance.pipeline plans the tone stage (the restorer
            # does not move global tone); the calibrated dead zones apply, as in the app
            params = self._tone.predict_params(x)
            params = self._tone.quality_checked(x, params, self._tone.default_model_path())
            y = np.clip(self._tone.apply_params(y, params), 0, 1).astype(np.float32)
        return y


def _default_quality() -> Path:
    return REPO / "models" / "quality.onnx"


class QModel:
    """Q: the torch checkpoint, or the exported ``models/quality.onnx`` (same numbers to 1e-6)."""

    def __init__(self, path: Path) -> None:
        self.ort: Any = None
        if path.suffix == ".onnx":
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            self.ort = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            return
        import torch

        from models.training.nets_assess import load_quality

        self.torch = torch
        self.net = load_quality(path)

    def __call__(self, x: np.ndarray) -> float:
        if self.ort is not None:
            t = np.ascontiguousarray(x.transpose(2, 0, 1))[None].astype(np.float32)
            return float(self.ort.run(None, {"image": t})[0][0])
        with self.torch.no_grad():
            t = self.torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None].float()
            return float(self.net(t)[0])


def _light(u: np.ndarray, rng: np.random.Generator) -> dg.DegradeResult:
    img, applied = u, []
    for st in rng.permutation(["blur", "noise", "jpeg"])[: int(rng.integers(1, 3))]:
        s = float(rng.uniform(0.03, 0.3))
        if st == "blur":
            img, a = dg.apply_blur(img, rng, strength=s)
        elif st == "noise":
            img, a = dg.apply_noise(img, rng, strength=s)
        else:
            img, a = dg.apply_jpeg(img, rng, quality=int(rng.integers(55, 90)))
        applied.append(a)
    return dg.DegradeResult(np.clip(img, 0, 1).astype(np.float32), applied)


def _single(u: np.ndarray, rng: np.random.Generator) -> dg.DegradeResult:
    st = str(rng.choice(["blur", "noise", "jpeg", "saturation"], p=[0.35, 0.35, 0.2, 0.1]))
    if st == "blur":
        v, a = dg.apply_blur(u, rng)
    elif st == "noise":
        v, a = dg.apply_noise(u, rng)
    elif st == "jpeg":
        v, a = dg.apply_jpeg(u, rng, quality=int(rng.integers(10, 60)))
    else:
        v, a = dg.apply_saturation(u, rng)
    return dg.DegradeResult(np.clip(v, 0, 1).astype(np.float32), [a])


def make_case(case: str, u: np.ndarray, rng: np.random.Generator) -> dg.DegradeResult:
    if case == "clean":
        return dg.DegradeResult(u.copy(), [])
    if case == "light":
        return _light(u, rng)
    if case == "heavy":
        return dg.degrade(u, rng, dg.DegradeConfig(p_clean=0.0, p_saturation=0.12))
    if case == "single":
        return _single(u, rng)
    if case == "tone":
        return dg.tone_degrade(u, rng)
    if case == "tone_mixed":
        t = dg.tone_degrade(u, rng, max_stages=1)
        r = _light(t.image, rng)
        return dg.DegradeResult(r.image, t.applied + r.applied)
    if case == "shallow_dof":
        return dg.shallow_dof(u, rng)
    if case == "jpeg_camera":
        v, a = dg.apply_jpeg(u, rng, quality=int(rng.integers(75, 96)))
        return dg.DegradeResult(v, [a])
    raise ValueError(case)


def laplacian_variance(img: np.ndarray) -> float:
    """The classic sharpness measure (variance of the Laplacian of the grey image, 0..255 scale)."""
    import cv2

    grey = cv2.cvtColor(dg.to_uint8(img), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


@dataclass
class Source:
    photo: Photo
    img: np.ndarray


def _region(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A photo-like region of at most 512 px: small photos whole, large ones as a region at 1x or 0.5x."""
    import cv2

    h, w = img.shape[:2]
    if max(h, w) <= 512:
        return img
    if max(h, w) > 1600 and rng.random() < 0.5:
        img = cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
    ch = int(min(h, rng.integers(320, 449)))
    cw = int(min(w, rng.integers(384, 513)))
    y = int(rng.integers(0, h - ch + 1))
    x = int(rng.integers(0, w - cw + 1))
    return img[y : y + ch, x : x + cw]


def run_shard(split: str, shard: int, nshards: int, n: int, minutes: float, seed: int,
              restorer: str, quality: str, out: str, threads: int = 1, also: dict[str, str] | None = None) -> str:
    import torch

    torch.set_num_threads(threads)
    rng = np.random.default_rng([seed, shard, 0 if split == "train" else 1])
    photos = [p for i, p in enumerate(discover(split)) if i % nshards == shard]
    enh = Enhancer(Path(restorer))
    q = QModel(Path(quality))
    extra = {name: QModel(Path(path)) for name, path in (also or {}).items()}
    from models.training.train_quality import fr_measures

    cache: dict[Path, np.ndarray] = {}
    rows: dict[str, list[Any]] = {k: [] for k in (
        "crops", "glob", "delta", "q_orig", "q_enh", "sev", "psnr_orig", "psnr_enh", "ssim_orig",
        "ssim_enh", "frq_orig", "frq_enh", "lapvar", "case", "photo", "kinds",
        *(f"delta_{name}" for name in extra))}
    t0 = time.monotonic()
    order = rng.permutation(len(photos))
    i = 0
    while i < n and time.monotonic() - t0 < minutes * 60:
        ph = photos[int(order[i % len(order)])]
        if ph.path not in cache:
            cache[ph.path] = load_rgb(ph, 3000 if ph.hr else None)
        u = dg.to_float(_region(cache[ph.path], rng))
        if rng.random() < 0.5:
            u = np.ascontiguousarray(u[:, ::-1])
        case = str(rng.choice(CASES, p=CASE_P))
        d = make_case(case, u, rng)
        v = d.image
        e = enh(v)
        crops, glob = make_views(dg.to_uint8(v))
        qo, qe = q(v), q(e)
        rows["crops"].append((crops * 255 + 0.5).astype(np.uint8))
        rows["glob"].append((glob * 255 + 0.5).astype(np.uint8))
        rows["delta"].append(qe - qo)
        for name, qx in extra.items():  # other judges' gains on the same samples (--also-quality)
            rows[f"delta_{name}"].append(qx(e) - qx(v))
        rows["q_orig"].append(qo)
        rows["q_enh"].append(qe)
        rows["sev"].append(d.severity_vector())
        fo, fe = fr_measures(u, v, colour_scale=0.5), fr_measures(u, e, colour_scale=0.5)
        rows["psnr_orig"].append(metrics.psnr(v, u, max_db=60))
        rows["psnr_enh"].append(metrics.psnr(e, u, max_db=60))
        rows["ssim_orig"].append(fo["ssim"])
        rows["ssim_enh"].append(fe["ssim"])
        rows["frq_orig"].append(fo["quality"])
        rows["frq_enh"].append(fe["quality"])
        rows["lapvar"].append(laplacian_variance(v))
        rows["case"].append(case)
        rows["photo"].append(ph.path.name)
        rows["kinds"].append("+".join(a.kind for a in d.applied) or "none")
        i += 1
        if i % 50 == 0:
            print(f"  [{split} {shard}] {i} samples, {time.monotonic() - t0:.0f}s", flush=True)
    arrays = {k: np.stack(v) if k in ("crops", "glob", "sev") else np.array(v) for k, v in rows.items()}
    meta = {"split": split, "stages": enh.stages, "restorer": str(restorer), "quality": str(quality),
            "seconds": round(time.monotonic() - t0, 1), "n": i}
    path = Path(out) / f"{split}_{shard}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, meta=json.dumps(meta), **arrays)
    tmp.replace(path)
    return str(path)


def load_labels(split: str, root: Path = OUT) -> dict[str, np.ndarray]:
    files = sorted(root.glob(f"{split}_*.npz"))
    if not files:
        raise FileNotFoundError(f"no label files for {split!r} in {root}")
    parts = [dict(np.load(f)) for f in files]
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "meta"}
    out["meta"] = np.array([str(p["meta"]) for p in parts])
    return out


def report(split: str, root: Path = OUT) -> dict[str, Any]:
    """Agreement of delta with the full-reference gains and with the known severities."""
    from models.training.train_quality import pearson, spearman

    L = load_labels(split, root)
    d = L["delta"]
    gains = {"psnr_gain": L["psnr_enh"] - L["psnr_orig"], "ssim_gain": L["ssim_enh"] - L["ssim_orig"],
             "frq_gain": L["frq_enh"] - L["frq_orig"], "max_severity": L["sev"].max(axis=1)}
    rep: dict[str, Any] = {"n": int(len(d)), "meta": [json.loads(m) for m in L["meta"]],
                           "delta_mean": round(float(d.mean()), 3), "delta_std": round(float(d.std()), 3)}
    for k, g in gains.items():
        rep[f"spearman_delta_vs_{k}"] = round(spearman(d, g), 3)
        rep[f"pearson_delta_vs_{k}"] = round(pearson(d, g), 3)
    for k in [k for k in L if k.startswith("delta_")]:  # other judges on the same samples
        rep[f"spearman_{k}_vs_psnr_gain"] = round(spearman(L[k], gains["psnr_gain"]), 3)
        rep[f"{k}_mean"] = round(float(L[k].mean()), 3)
    rep["q_orig_vs_frq_orig_spearman"] = round(spearman(L["q_orig"], L["frq_orig"]), 3)
    by_case = {}
    for c in sorted(set(L["case"].tolist())):
        m = L["case"] == c
        by_case[c] = {"n": int(m.sum()), "delta_mean": round(float(d[m].mean()), 3),
                      "delta_median": round(float(np.median(d[m])), 3),
                      "psnr_gain_mean": round(float(gains["psnr_gain"][m].mean()), 2),
                      "q_orig_mean": round(float(L["q_orig"][m].mean()), 2),
                      **{f"{k}_mean": round(float(L[k][m].mean()), 3) for k in L if k.startswith("delta_")}}
    rep["by_case"] = by_case
    return rep


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=["train", "val", "both"], default="both")
    ap.add_argument("--n", type=int, default=3000, help="samples per split (train); val gets n/4")
    ap.add_argument("--minutes", type=float, default=20.0, help="time budget per split")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch/ORT threads per worker")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--restorer", type=Path, default=None)
    ap.add_argument("--quality", type=Path, default=_default_quality(),
                    help="Q: models/quality.onnx (or a torch checkpoint)")
    ap.add_argument("--also-quality", action="append", default=[],
                    help="NAME=PATH: another Q whose gain is stored beside delta as delta_NAME (same samples)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--report", action="store_true", help="only print the agreement report")
    args = ap.parse_args(argv)
    bad = [kv for kv in args.also_quality if "=" not in kv or not Path(kv.split("=", 1)[1]).is_file()]
    if bad:
        ap.error(f"--also-quality wants NAME=PATH to an existing Q file: {', '.join(bad)}")
    splits = ["train", "val"] if args.split == "both" else [args.split]
    if not args.report:
        restorer = args.restorer or _restorer_path()
        print(f"restorer {restorer}, quality {args.quality}", flush=True)
        for split in splits:
            for old in args.out.glob(f"{split}_*.npz"):
                old.unlink()
            n = args.n if split == "train" else max(50, args.n // 4)
            minutes = args.minutes if split == "train" else args.minutes / 4
            per = -(-n // args.workers)
            with ProcessPoolExecutor(args.workers) as ex:
                futs = [ex.submit(run_shard, split, s, args.workers, per, minutes, args.seed, str(restorer),
                                  str(args.quality), str(args.out), args.threads,
                                  dict(kv.split("=", 1) for kv in args.also_quality)) for s in range(args.workers)]
                for f in futs:
                    print("wrote", f.result(), flush=True)
    for split in splits:
        rep = report(split, args.out)
        (args.out / f"report_{split}.json").write_text(json.dumps(rep, indent=1))
        print(json.dumps(rep, indent=1), flush=True)


if __name__ == "__main__":
    main()
