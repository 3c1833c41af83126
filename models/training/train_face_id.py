"""Train the identity embedding used to measure identity in ``eval_faces`` (not shipped).

    python -m models.training.train_face_id --minutes 8

UTKFace has no identity labels, so each TRAIN face is its own identity (contrastive instance
discrimination, InfoNCE over the batch at temperature 0.1): two views of one face (flip, small shift/rotation/scale, colour jitter,
and the face degradation at random strengths) must embed close, other faces far. The embedding
therefore measures "is this still the same face" under the changes a restorer may make, which is
what the identity check needs; it is not a face-recognition model across different photos of a
person. Writes ``runs/face_id/face_id.pt``.
"""

from __future__ import annotations

import argparse
import math
import time

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from models.training import face_data as fd
from models.training.data import REPO
from models.training.face_nets import IdentityNet, count_params

RUNS = REPO / "runs" / "face_id"
SIDE = 64


def view(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    f = fd.augment(face, rng)
    if rng.random() < 0.7:
        f = fd.random_degrade(f, rng)
    return cv2.resize(f, (SIDE, SIDE), interpolation=cv2.INTER_AREA)


def prep(faces: np.ndarray) -> torch.Tensor:
    """float32 or uint8 (N, H, W, 3) faces -> (N, 3, 64, 64) tensor."""
    a = np.stack([cv2.resize(fd.dg.to_float(f), (SIDE, SIDE), interpolation=cv2.INTER_AREA) for f in faces])
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))).float()


def load() -> IdentityNet:
    s = torch.load(RUNS / "face_id.pt")
    net = IdentityNet(s["n"])
    net.load_state_dict(s["net"])
    net.eval()
    return net


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--batch", type=int, default=48, help="faces per batch (two views each)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    RUNS.mkdir(parents=True, exist_ok=True)
    faces = fd.load_faces("train")
    net = IdentityNet(len(faces))
    print(f"params {count_params(net)}", flush=True)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    rng = np.random.default_rng(3)
    t0 = time.time()
    it = 0
    while time.time() - t0 < a.minutes * 60:
        frac = (time.time() - t0) / (a.minutes * 60)
        for g in opt.param_groups:
            g["lr"] = 2e-3 * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))
        idx = rng.choice(len(faces), a.batch, replace=False)
        v1 = np.stack([view(faces[i], rng) for i in idx])
        v2 = np.stack([view(faces[i], rng) for i in idx])
        x = torch.from_numpy(np.concatenate([v1, v2]).transpose(0, 3, 1, 2).copy()).float()
        e = net.embed(x)
        sim = e @ e.t() / 0.1
        sim.fill_diagonal_(-1e4)
        n = a.batch
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
        loss = F.cross_entropy(sim, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        it += 1
        if it % 50 == 0:
            print(f"it {it} t {time.time() - t0:.0f}s loss {loss.item():.3f}", flush=True)
    torch.save({"net": net.state_dict(), "n": len(faces)}, RUNS / "face_id.pt")
    print("done", it, flush=True)


if __name__ == "__main__":
    main()
