"""Evaluate the face models in one run, beside baselines, and draw the contact sheets.

    python -m models.training.eval_faces [--limit 635] [--threads 2]

Restorer (held-out faces: ``face_data`` split ``val``, 128x128 clean targets), each degraded at the
fixed levels of ``face_data.LEVELS`` (light 2x, medium 3x, strong 4x down with blur, noise and JPEG;
one seed per face):

* methods: *nothing* (the degraded face at its own size brought back to 128 px by bicubic
  interpolation: what the photo shows; bicubic and nothing are the same method here), the *generic*
  restorer (``models/restorer.onnx`` through ``engine.enhance.restore``) on the bicubic crop, and
  ours (``models/face_restorer.onnx``, engine ``FaceRestorer``) at w = 0, 0.25, 0.5, 0.75, 1;
* PSNR and SSIM (``engine.assess.metrics``) against the clean face; Q (``models/quality.onnx``
  through ``engine.assess.quality``) of the 128-px face;
* identity (an embedding net trained by us, ``train_face_id``; gallery = the clean held-out faces):
  top-1 = the nearest clean face is the face's own; at a threshold fixed on TRAIN faces (the 5th
  percentile of own-face similarity of lightly degraded training faces), recall = share of restored
  faces whose similarity to their own clean face is above it, precision = share of all (restored,
  clean) pairs above it that are the same face.

Detector: 300 composites (``face_composite``) of held-out faces in held-out scenes, 512x384, 0 to 4
faces of 16 to 200 px, degraded; recall at IoU >= 0.4 by face size, through the engine's
``FaceDetector`` at the stage's threshold; false detections per photo on the held-out scenes
themselves (no faces pasted; some real scenes show people, so a few "false" ones may be real faces).

Cost: the ``faces`` stage on a 4000x3000 photo with one face, and detection on a 1600-px view.

Writes ``runs/eval_faces/results.json``, ``sheet_synthetic.png`` (degraded | generic | w=0 | w=0.5 |
w=1 | clean) and ``sheet_real.png`` (real photos with authentic distortions from CLIVE val where
faces were detected: before | after, the face crops).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw

from engine.assess import degrade as dg
from engine.assess.metrics import psnr, ssim
from engine.enhance import faces as F
from models.training import face_composite as fc
from models.training import face_data as fd
from models.training.data import REPO

OUT = REPO / "runs" / "eval_faces"
WS = (0.0, 0.25, 0.5, 0.75, 1.0)


def generic_restorer():  # type: ignore[no-untyped-def]
    from engine.enhance.restore import Restorer

    return Restorer(REPO / "models" / "restorer.onnx", tile=128, overlap=32, border=16, workers=1)


def eval_restorer(limit: int, rows: dict[str, object], previous: Path | None = None
                  ) -> dict[str, dict[str, np.ndarray]]:
    from engine.assess.quality import get_quality_model
    from models.training.train_face_id import load as load_id
    from models.training.train_face_id import prep

    val = fd.load_faces("val")[:limit]
    clean = val.astype(np.float32) / 255.0
    fr = F.FaceRestorer(REPO / "models" / "face_restorer.onnx")
    prev = F.FaceRestorer(previous) if previous is not None else None
    gen = generic_restorer()
    q = get_quality_model()
    idn = load_id()
    with torch.no_grad():
        gal = idn.embed(prep(clean)).numpy()
        # identity threshold from TRAIN faces (never the held-out ones)
        tr = fd.load_faces("train")[:400]
        rng = np.random.default_rng(123)
        light = np.stack([fd.apply(f, fd.LEVELS["light"], rng) for f in tr])
        e1 = idn.embed(prep(tr)).numpy()
        e2 = idn.embed(prep(light)).numpy()
    tau = float(np.percentile((e1 * e2).sum(1), 5))
    rows["identity_threshold"] = tau
    outputs: dict[str, dict[str, np.ndarray]] = {}
    # "clean": the held-out faces as they are (nothing to restore: a restorer should leave them
    # alone; PSNR against the input itself, capped at 60 dB), then the degradation levels
    levels: list[tuple[str, fd.FaceDegrade | None]] = [("clean", None), *fd.LEVELS.items()]
    for level, d in levels:
        rng = np.random.default_rng(2024)
        deg = clean.copy() if d is None else np.stack([fd.apply(f, d, rng) for f in val])
        meth: dict[str, np.ndarray] = {"nothing (bicubic)": deg}
        meth["generic restorer"] = np.stack([gen.run(x) for x in deg])
        t0 = time.time()
        for w in WS if level == "strong" else (0.0, 1.0):
            meth[f"ours w={w:g}"] = np.concatenate([fr.restore_many(deg[i : i + 16], w, list(range(i, i + 16))[: len(deg[i : i + 16])])
                                                   for i in range(0, len(deg), 16)])
        if prev is not None:  # the model this one replaces, on the same degraded faces
            for w in (0.0, 1.0):
                meth[f"previous w={w:g}"] = np.concatenate([
                    prev.restore_many(deg[i : i + 16], w, list(range(i, i + 16))[: len(deg[i : i + 16])])
                    for i in range(0, len(deg), 16)])
        rows[f"{level}_ours_batch16_seconds_per_face"] = (time.time() - t0) / len(deg) / (5 if level == "strong" else 2)
        res: dict[str, dict[str, float]] = {}
        for name, ys in meth.items():
            with torch.no_grad():
                emb = idn.embed(prep(ys)).numpy()
            sim = emb @ gal.T
            own = np.diag(sim)
            top1 = float((sim.argmax(1) == np.arange(len(ys))).mean())
            above = sim >= tau
            same = np.eye(len(ys), dtype=bool)
            rec = float((own >= tau).mean())
            prec = float((above & same).sum() / max(1, above.sum()))
            r = {"psnr": float(np.mean([psnr(y, c, max_db=60.0) for y, c in zip(ys, clean, strict=True)])),
                 "ssim": float(np.mean([ssim(y, c) for y, c in zip(ys, clean, strict=True)])),
                 "id_top1": top1, "id_recall": rec, "id_precision": prec}
            if q is not None and (level == "strong" or "w=" not in name or name.endswith("w=1")):
                r["q"] = float(np.mean([q(dg.to_uint8(y)) for y in ys[:200]]))
            res[name] = r
            print(level, name, {k: round(v, 4) for k, v in r.items()}, flush=True)
        if q is not None:
            res["clean"] = {"q": float(np.mean([q(dg.to_uint8(c)) for c in clean[:200]]))}
        rows[level] = res
        outputs[level] = meth
    return outputs


def sheet_synthetic(outputs: dict[str, dict[str, np.ndarray]], n: int = 10) -> Path:
    val = fd.load_faces("val")
    meth = outputs["strong"]
    cols = ["nothing (bicubic)", "generic restorer", *(["previous w=0"] if "previous w=0" in meth else []),
            "ours w=0", "ours w=0.5", "ours w=1"]
    idx = np.linspace(0, len(meth["ours w=0"]) - 1, n).astype(int)
    im = Image.new("RGB", (128 * (len(cols) + 1), 128 * n + 16), (255, 255, 255))
    d = ImageDraw.Draw(im)
    for j, c in enumerate([*cols, "clean"]):
        d.text((j * 128 + 2, 2), c, fill=(0, 0, 0))
    for i, k in enumerate(idx):
        for j, c in enumerate(cols):
            im.paste(Image.fromarray(dg.to_uint8(meth[c][k])), (j * 128, 16 + i * 128))
        im.paste(Image.fromarray(val[k]), (len(cols) * 128, 16 + i * 128))
    p = OUT / "sheet_synthetic.png"
    im.save(p)
    return p


def eval_detector(rows: dict[str, object], n: int = 300, path: Path | None = None) -> None:
    det = F.FaceDetector(path or REPO / "models" / "face_detector.onnx")
    scenes = fc.load_scenes("val", 900)
    _, faces = fd.load_faces_raw("val")
    rng = np.random.default_rng(99)
    ths = (0.3, 0.4, 0.5, 0.6)
    bins = {t: {"16-24": [0, 0], "24-48": [0, 0], ">=48": [0, 0]} for t in ths}
    fps = dict.fromkeys(ths, 0)
    for _ in range(n):
        k = int(rng.integers(0, 5))
        img, boxes = fc.composite(scenes, faces, rng, 512, 384, k, 16, 200, decoys=0)
        found_all = det.detect(img, threshold=min(ths))
        for t in ths:
            found = [f for f in found_all if f.score >= t]
            fb = np.array([[f.x0 * 512, f.y0 * 384, f.x1 * 512, f.y1 * 384] for f in found]).reshape(-1, 4)
            matched = np.zeros(len(fb), bool)
            for b in boxes:
                bw = b[2] - b[0]
                key = ">=48" if bw >= 48 else ("24-48" if bw >= 24 else "16-24")
                bins[t][key][1] += 1
                if len(fb):
                    iou = F._iou(np.array(b), fb)
                    iou[matched] = 0.0
                    j = int(iou.argmax())
                    if iou[j] >= 0.4:
                        matched[j] = True
                        bins[t][key][0] += 1
            fps[t] += int((~matched).sum())
    t0 = time.time()
    free = [det.detect(s, threshold=min(ths)) for s in scenes]
    rows["detect_seconds_per_scene"] = (time.time() - t0) / len(scenes)
    rows["face_free_photos"] = len(scenes)
    sweep = {}
    for t in ths:
        false = [sum(1 for f in fl if f.score >= t) for fl in free]
        sweep[str(t)] = {"recall": {k: v[0] / max(1, v[1]) for k, v in bins[t].items()},
                         "false_per_composite": fps[t] / n,
                         "false_per_face_free_photo": float(np.mean(false)),
                         "face_free_photos_with_a_detection": int(sum(1 for f in false if f))}
    rows["detector_faces"] = {k: v[1] for k, v in bins[ths[0]].items()}
    rows["detector"] = sweep
    print(json.dumps(sweep, indent=1), rows["detector_faces"], flush=True)
    # the face-free photos with a detection at the stage's threshold, to look at
    hits = [(s, fl) for s, fl in zip(scenes, free, strict=True) if any(f.score >= F.DEFAULT_THRESHOLD for f in fl)]
    tiles = []
    for s, fl in hits[:12]:
        im = Image.fromarray(s)  # scenes are uint8
        d = ImageDraw.Draw(im)
        h, w = s.shape[:2]
        for f in fl:
            if f.score >= F.DEFAULT_THRESHOLD:
                d.rectangle([f.x0 * w, f.y0 * h, f.x1 * w, f.y1 * h], outline=(255, 0, 0), width=3)
        im.thumbnail((320, 320))
        tiles.append(im)
    if tiles:
        sheet = Image.new("RGB", (320 * 4, 320 * ((len(tiles) + 3) // 4)), (255, 255, 255))
        for i, tile in enumerate(tiles):
            sheet.paste(tile, ((i % 4) * 320, (i // 4) * 320))
        sheet.save(OUT / "sheet_false_detections.png")


def cost(rows: dict[str, object]) -> None:
    rng = np.random.default_rng(1)
    img = rng.random((3000, 4000, 3), dtype=np.float32) * 0.2 + 0.4
    params = {"faces": [{"box": [0.45, 0.4, 0.5, 0.47], "score": 1.0}]}
    path = REPO / "models" / "face_restorer.onnx"
    F.apply_faces(img, params, 0.0, path)
    t0 = time.time()
    for _ in range(5):
        F.apply_faces(img, params, 0.0, path)
    rows["stage_seconds_per_face_12mp"] = (time.time() - t0) / 5
    t0 = time.time()
    for _ in range(5):
        F.apply_faces(img, {"faces": []}, 0.0, path)
    rows["stage_seconds_no_face_12mp"] = (time.time() - t0) / 5
    view = cv2.resize(img, (1600, 1200), interpolation=cv2.INTER_AREA)
    det = F.FaceDetector(REPO / "models" / "face_detector.onnx")
    det.detect(view)
    t0 = time.time()
    for _ in range(5):
        det.detect(view)
    rows["detect_seconds_1600_view"] = (time.time() - t0) / 5
    print({k: rows[k] for k in ("stage_seconds_per_face_12mp", "stage_seconds_no_face_12mp",
                                "detect_seconds_1600_view")}, flush=True)


def face_tiles(found: list[F.Face], images: list[np.ndarray], size: int = 160) -> list[list[np.ndarray]]:
    """For each of the first two faces, the face's crop (framed as the stage frames it) of every
    image in ``images`` (all of one size), enlarged to ``size``; faces cropped to under 8 px left out."""
    h, w = images[0].shape[:2]
    rows = []
    for f in found[:2]:
        cx, cy, side = F.crop_geometry(f, w, h)
        x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        x1, y1 = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
        if x1 - x0 < 8 or y1 - y0 < 8:
            continue
        rows.append([cv2.resize(a[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_CUBIC) for a in images])
    return rows


def sheet_real(rows: dict[str, object], limit: int = 12) -> Path:
    """Real photos with authentic distortions (CLIVE val) where faces are found: before | after."""
    from models.training.iqa_data import load_clive
    from models.training.iqa_data import load_rgb as load_iqa

    det = F.FaceDetector(REPO / "models" / "face_detector.onnx")
    path = REPO / "models" / "face_restorer.onnx"
    tiles: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    n_photos = 0
    for r in load_clive("val"):
        img = dg.to_float(load_iqa(r.path))
        found = det.detect(img)
        n_photos += 1
        if not found:
            continue
        params = {"faces": [f.to_dict() for f in found]}
        out0 = F.apply_faces(img, params, 0.0, path)
        out1 = F.apply_faces(img, params, 1.0, path)
        tiles += [(a, b, c) for a, b, c in face_tiles(found, [img, out0, out1])]
        if len(tiles) >= limit:
            break
    rows["real_photos_scanned"] = n_photos
    rows["real_faces_shown"] = len(tiles)
    im = Image.new("RGB", (160 * 3, 16 + 160 * max(1, len(tiles))), (255, 255, 255))
    d = ImageDraw.Draw(im)
    for j, c in enumerate(["before", "after w=0", "after w=1"]):
        d.text((j * 160 + 2, 2), c, fill=(0, 0, 0))
    for i, row in enumerate(tiles):
        for j, a in enumerate(row):
            im.paste(Image.fromarray(dg.to_uint8(a)), (j * 160, 16 + i * 160))
    p = OUT / "sheet_real.png"
    im.save(p)
    return p


def sheet_compare(models: list[Path], limit: int = 16) -> Path:
    """The one-click question on real photos (CLIVE val, faces the shipped detector finds): the
    photo | the generic restorer on the whole photo | that, then the faces stage (w=0) of each
    model in ``models``; face crops, 160 px."""
    from models.training.iqa_data import load_clive
    from models.training.iqa_data import load_rgb as load_iqa

    det = F.FaceDetector(REPO / "models" / "face_detector.onnx")
    gen = generic_restorer()
    tiles: list[list[np.ndarray]] = []
    for r in load_clive("val"):
        img = dg.to_float(load_iqa(r.path))
        found = det.detect(img)
        if not found:
            continue
        restored = np.clip(gen.run(img), 0, 1).astype(np.float32)
        params = {"faces": [f.to_dict() for f in found]}
        outs = [F.apply_faces(restored, params, 0.0, m) for m in models]
        tiles += face_tiles(found, [img, restored, *outs])
        if len(tiles) >= limit:
            break
    from engine.enhance.recipes import file_version

    cols = ["photo", "generic restorer", *[f"+ faces {file_version(m)[:12]}" for m in models]]
    im = Image.new("RGB", (160 * len(cols), 16 + 160 * max(1, len(tiles))), (255, 255, 255))
    d = ImageDraw.Draw(im)
    for j, c in enumerate(cols):
        d.text((j * 160 + 2, 2), c, fill=(0, 0, 0))
    for i, row in enumerate(tiles):
        for j, a in enumerate(row):
            im.paste(Image.fromarray(dg.to_uint8(a)), (j * 160, 16 + i * 160))
    p = OUT / "sheet_compare.png"
    im.save(p)
    return p


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=635)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", default="", help="comma list of parts to skip: restorer,detector,cost,real")
    ap.add_argument("--previous", type=Path, default=None,
                    help="another face_restorer.onnx (the one being replaced) to evaluate beside it")
    ap.add_argument("--detector", type=Path, default=None,
                    help="the detector to evaluate (default models/face_detector.onnx)")
    ap.add_argument("--results", default="results.json", help="file name under runs/eval_faces/")
    ap.add_argument("--compare", default=None,
                    help="comma list of face_restorer.onnx files: only draw sheet_compare.png (real photos, "
                         "generic restorer then each model's faces stage)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    import os

    os.environ.setdefault("PHOTOLIFT_CPUS", str(a.threads))
    OUT.mkdir(parents=True, exist_ok=True)
    if a.compare:
        print(sheet_compare([Path(x) for x in a.compare.split(",")]))
        return
    skip = set(a.skip.split(","))
    rows: dict[str, object] = {"limit": a.limit, "threads": a.threads}
    t0 = time.time()
    if "restorer" not in skip:
        outs = eval_restorer(a.limit, rows, a.previous)
        print(sheet_synthetic(outs))
    if "detector" not in skip:
        eval_detector(rows, path=a.detector)
    if "cost" not in skip:
        cost(rows)
    if "real" not in skip:
        print(sheet_real(rows))
    rows["seconds"] = time.time() - t0
    (OUT / a.results).write_text(json.dumps(rows, indent=1))
    print("wrote", OUT / a.results)


if __name__ == "__main__":
    main()
