"""Does improvability predict the enhancer's gain on real photos? (no references needed)

    python -m models.training.contact_sheet --by improvability        # writes runs/review/improvability.json
    python -m models.training.eval_real_gain runs/review/improvability.json [OTHER.json ...]

The labels' synthetic photos have clean references; real photos do not, but the quantity the
assessor predicts needs none: ``Q(enhanced) - Q(original)`` for the one-click enhancement. Here it
is measured on the review set (CLIVE validation photos and the clean VAL photos, never trained on)
exactly as the labels measure it (``labels.Enhancer``: restorer, then the Q-gated tone stage; Q =
``models/quality.onnx`` on the whole photo), and compared with the improvability each given ranking
(a ``contact_sheet`` json, made with whatever assessor) predicted for the same photos: Spearman, the
share recommended, the mean measured gain of the recommended photos and of the rest, and
precision/recall of "recommended" for a measured gain >= 1. Photos with a long side above
``--max-side`` are skipped (the enhancer's cost; the assessor saw them at full size).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from models.training.data import REPO
from models.training.labels import Enhancer, QModel, _default_quality, _restorer_path


def measure(paths: list[str], max_side: int, restorer: Path | None = None) -> dict[str, float]:
    from engine.ingest.imageio import load_image

    enh = Enhancer(restorer or _restorer_path())
    q = QModel(_default_quality())
    out: dict[str, float] = {}
    for p in paths:
        try:
            rgb = np.asarray(load_image(Path(p)).rgb)
        except Exception as e:  # noqa: BLE001 - an evaluation reports an unreadable photo and goes on
            print(f"skip {p}: {e}", flush=True)
            continue
        if max(rgb.shape[:2]) > max_side:
            continue
        x = np.ascontiguousarray(rgb.astype(np.float32) / 255.0)
        out[p] = q(enh(x)) - q(x)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rankings", type=Path, nargs="+", help="contact_sheet json files (the same photos)")
    ap.add_argument("--max-side", type=int, default=1024)
    ap.add_argument("--pos", type=float, default=1.0, help="measured gain that counts as worth enhancing")
    ap.add_argument("--restorer", type=Path, default=None, help="another restorer ONNX (default: the shipped one)")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "review" / "real_gain.json")
    args = ap.parse_args(argv)
    from scipy.stats import spearmanr

    ranks = [{r["path"]: r for r in json.loads(f.read_text())} for f in args.rankings]
    gain = measure(sorted(ranks[0]), args.max_side, args.restorer)
    res: dict[str, object] = {"n": len(gain), "max_side": args.max_side, "pos": args.pos,
                              "restorer": str(args.restorer or _restorer_path())}
    for f, rk in zip(args.rankings, ranks, strict=True):
        for part, keep in (("all", lambda n: True), ("CLIVE", lambda n: n.startswith("CLIVE/")),
                           ("clean", lambda n: not n.startswith("CLIVE/"))):
            ps = [p for p in gain if p in rk and keep(rk[p]["name"])]
            g = np.array([gain[p] for p in ps])
            imp = np.array([rk[p]["improvability"] for p in ps])
            rec = np.array([bool(rk[p]["recommended"]) for p in ps])
            pos = g >= args.pos
            res[f"{f.parent.name}/{f.name} {part}"] = {
                "n": len(ps), "spearman_imp_vs_gain": round(float(spearmanr(imp, g)[0]), 3),
                "measured_gain_mean": round(float(g.mean()), 3), "share_gain_ge_pos": round(float(pos.mean()), 3),
                "recommended": int(rec.sum()),
                "gain_of_recommended": round(float(g[rec].mean()), 3) if rec.any() else None,
                "gain_of_rest": round(float(g[~rec].mean()), 3) if (~rec).any() else None,
                "precision": round(float(pos[rec].mean()), 3) if rec.any() else None,
                "recall": round(float(rec[pos].mean()), 3) if pos.any() else None,
            }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"gain": gain, "summary": res}, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
