"""The learned inpainter (``models/inpaint.onnx``, made by ``train_inpaint``) against OpenCV's
inpainting (Telea and Navier-Stokes), on held-out photos with synthetic defect masks.

    python -m models.training.eval_inpaint [--model models/inpaint.onnx] [--n 200] [--size 256]

For each mask kind (``line``, ``polyline``, ``blob``, ``mixed``: the shapes ``random_mask`` draws,
i.e. scratches, cracks and obstructions), ``--n`` crops of the validation split (never seen in
training) get a mask; each method fills it; reported: mean PSNR and SSIM-free L1 inside the
hole, per kind and overall, and the share of crops where the network beats Telea.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import cv2
import numpy as np

from models.training.data import REPO, CropSampler, discover
from models.training.train_inpaint import cv2_inpaint, random_mask


def run_model(sess: object, img: np.ndarray, m: np.ndarray) -> np.ndarray:
    h, w = m.shape
    ph, pw = (-h) % 8, (-w) % 8
    x = np.pad(img * (1 - m[..., None]), ((0, ph), (0, pw), (0, 0)), mode="reflect")
    mm = np.pad(m, ((0, ph), (0, pw)), mode="reflect")
    out = sess.run(None, {"image": x.transpose(2, 0, 1)[None].astype(np.float32),  # type: ignore[attr-defined]
                          "mask": mm[None, None].astype(np.float32)})[0]
    return out[0].transpose(1, 2, 0)[:h, :w]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "models" / "inpaint.onnx")
    ap.add_argument("--n", type=int, default=200, help="crops per mask kind")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    import onnxruntime as ort

    sess = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(args.seed)
    sampler = CropSampler(discover("val"), rng)
    res: dict[str, dict[str, list[float]]] = {}
    wins: dict[str, int] = {}
    for kind in ("line", "polyline", "blob", "mixed"):
        r = res.setdefault(kind, {"net": [], "cv2_telea": [], "cv2_ns": []})
        wins[kind] = 0
        for _ in range(args.n):
            y = sampler.crop(args.size).astype(np.float32) / 255.0
            m = random_mask(rng, args.size, kind)
            hole = m > 0
            outs = {"net": run_model(sess, y, m), "cv2_telea": cv2_inpaint(y, m, cv2.INPAINT_TELEA),
                    "cv2_ns": cv2_inpaint(y, m, cv2.INPAINT_NS)}
            ps = {}
            for k, img in outs.items():
                mse = float(np.mean((img[hole] - y[hole]) ** 2))
                ps[k] = 10 * math.log10(1 / max(mse, 1e-10))
                r[k].append(ps[k])
            wins[kind] += ps["net"] > ps["cv2_telea"]
    summary = {kind: {**{k: round(float(np.mean(v)), 2) for k, v in r.items()},
                      "net_beats_telea": f"{wins[kind]}/{args.n}"} for kind, r in res.items()}
    summary["all"] = {k: round(float(np.mean([x for r in res.values() for x in r[k]])), 2)
                      for k in ("net", "cv2_telea", "cv2_ns")}
    print(json.dumps({"model": str(args.model), "n_per_kind": args.n, "size": args.size, "psnr_hole_db": summary},
                     indent=1))


if __name__ == "__main__":
    main()
