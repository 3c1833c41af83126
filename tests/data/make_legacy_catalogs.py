"""Make the legacy catalog fixtures with the released code itself (run from the repository root).

``python tests/data/make_legacy_catalogs.py`` extracts ``db/`` of two commits (``git archive``)
and runs their own ``Catalog.open`` and ORM into ``tests/data/catalog_v1.sqlite`` (schema version
1, commit 27fb8e0^, before ``exports.out_path_bytes``) and ``tests/data/catalog_v2.sqlite``
(schema version 2, commit 59418b1, the hand-written migrations' last release). The files are
committed, so the tests need neither git history nor the old code.

Content: a folder, three photos (one scored with a base and a fine-tuned head row written with
one timestamp, one whose newest score is for an older fingerprint, one unscored), an active head,
a recipe applied to the first photo, a rating, a job and an export.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMITS = {"catalog_v1.sqlite": "27fb8e0^", "catalog_v2.sqlite": "59418b1"}

FILL = r'''
import sqlite3, sys
from datetime import datetime
from db.catalog import Catalog
from db.schema import Export, Folder, Head, Job, Photo, Rating, Recipe, Score
out = sys.argv[1]
t = datetime(2026, 1, 2, 3, 4, 5)
with Catalog.open(out, backups=False) if "backups" in Catalog.open.__code__.co_varnames else Catalog.open(out) as cat:
    def fill(s):
        f = Folder(path="/lib", path_bytes=b"/lib", added_at=t)
        s.add(f); s.flush()
        ps = []
        for i, fp in enumerate(["fpA", "fpB", "fpC"]):
            p = Photo(folder_id=f.id, path=f"/lib/p{i}.jpg", path_bytes=f"/lib/p{i}.jpg".encode(), size=100 + i,
                      mtime_ns=1_700_000_000_000_000_000 + i, fingerprint=fp, width=64, height=48,
                      status="ok", indexed_at=t, has_gps=False)
            s.add(p); ps.append(p)
        s.flush()
        h = Head(model="assessor", model_version="v1", created_at=t, weights=b"\0" * 8, n_ratings=3, active=True)
        s.add(h); s.flush()
        def score(p, fp, imp, head, rec):
            s.add(Score(photo_id=p.id, model="assessor", model_version="v1", fingerprint=fp, improvability=imp,
                        quality=5.0, severity_json='{"noise": 0.6, "defocus_blur": 0.1}', embedding=b"\0" * 8,
                        recommended=rec, head=head, scored_at=t))
            s.flush()
        score(ps[0], "fpA", 0.5, "", False)          # base row ...
        score(ps[0], "fpA", 2.5, str(h.id), True)    # ... and the active head's, same timestamp
        score(ps[1], "fpOLD", 3.0, "", True)         # scored before the file changed: not current
        r = Recipe(photo_id=ps[0].id, version=1, created_at=t, recipe_json='{"ops": ["restore"]}',
                   quality_before=4.0, quality_after=5.0, measured_gain=1.0, status="ok")
        s.add(r); s.flush()
        ps[0].current_recipe_id = r.id
        s.add(Rating(photo_id=ps[0].id, recipe_id=r.id, rating=2, created_at=t))
        s.add(Job(kind="enhance", photo_id=ps[0].id, params_json="{}", state="done", created_at=t, updated_at=t))
        kw = {"out_path_bytes": b"/out/p0_enhanced.jpg"} if hasattr(Export, "out_path_bytes") else {}
        s.add(Export(photo_id=ps[0].id, recipe_id=r.id, out_path="/out/p0_enhanced.jpg", format="jpeg",
                     created_at=t, **kw))
    cat.write(fill)
con = sqlite3.connect(out)
con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
con.execute("PRAGMA journal_mode=DELETE")
print(out, con.execute("SELECT value FROM catalog_info WHERE key='schema_version'").fetchone())
con.close()
'''


def main() -> int:
    for name, commit in COMMITS.items():
        out = Path(__file__).with_name(name)
        out.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            archive = subprocess.run(["git", "archive", commit, "db"], cwd=ROOT, check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
            subprocess.run([sys.executable, "-c", FILL, str(out)], cwd=tmp, check=True,
                           env={"PYTHONPATH": tmp, "PATH": "/usr/bin:/bin"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
