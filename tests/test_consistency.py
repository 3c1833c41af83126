"""One answer everywhere: the grid's badge, the details pane, the library's degradation filter and
the CLI's reasons all use the assessor's calibrated per-degradation thresholds."""

from __future__ import annotations

import json
from datetime import datetime

from db.catalog import Catalog
from db.queries import refresh_current_scores
from db.schema import Photo, Score
from engine.assess.degrade import SEVERITY_NAMES
from engine.assess.scoring import Scorer, reasons_for, shipped_thresholds
from engine.library import Library


def test_badge_filter_and_cli_reasons_agree(tmp_catalog: Catalog) -> None:
    from app.delegate import top_problem

    th = shipped_thresholds().severity
    names = sorted(SEVERITY_NAMES, key=lambda n: th[n])
    low, high = names[0], names[-1]
    assert th[high] - th[low] > 0.04  # calibrated: not one flat level
    # ``high`` has the larger value but is under its own threshold; ``low`` is just over its own
    sev = {n: 0.0 for n in SEVERITY_NAMES}
    sev[low] = th[low] + 0.01
    sev[high] = th[high] - 0.01
    assert sev[high] > sev[low]

    def add(s):  # type: ignore[no-untyped-def]
        p = Photo(path="/p/a.jpg", path_bytes=b"/p/a.jpg", size=1, mtime_ns=1, fingerprint="f" * 32,
                  indexed_at=datetime.now())
        s.add(p)
        s.flush()
        s.add(Score(photo_id=p.id, model="assessor", model_version="v", fingerprint="f" * 32, improvability=1.0,
                    quality=5.0, severity_json=json.dumps(sev), recommended=True, scored_at=datetime.now()))
        refresh_current_scores(s)

    tmp_catalog.write(add)
    lib = Library(tmp_catalog)
    row = lib.query("/p", "improvability", {}, 0, 10)[0]
    assert row.top_degradation == low  # the library's badge
    assert top_problem(row)[0] == low  # type: ignore[index]  # the grid's
    assert top_problem(type("R", (), {"severity": sev})())[0] == low  # type: ignore[index]  # from the full dict
    assert reasons_for(sev, shipped_thresholds()) == (low,)  # the CLI's reasons (score / rank JSON)
    scorer_reasons = Scorer.make_assessment(type("S", (), {"thresholds": shipped_thresholds()})(),  # type: ignore[arg-type]
                                            1.0, 5.0, sev, None).reasons  # type: ignore[arg-type]
    assert scorer_reasons == (low,)
    assert lib.photo_record(row.id)["reasons"] == [low]  # rank --json
    assert lib.count("/p", {"degradation": low}) == 1
    assert lib.count("/p", {"degradation": high}) == 0  # under its threshold: not listed as having it


def test_compression_is_not_a_reason_for_a_jpeg_the_enhancer_would_not_deblock(tmp_catalog: Catalog) -> None:
    """A good JPEG (quality at or above the restorer's dead zone) never gets the compression reason,
    in the badge, the record, the filter or the details pane, however high the assessor rates its
    compression; a JPEG below the zone and a photo of unknown quality keep it."""
    from app.services import Services
    from engine.enhance.levels import JPEG_ZONE

    th = shipped_thresholds().severity
    sev = {n: 0.0 for n in SEVERITY_NAMES}
    sev["compression"] = min(1.0, th["compression"] + 0.2)
    qualities = {"good.jpg": 95, "zone.jpg": JPEG_ZONE, "poor.jpg": JPEG_ZONE - 1, "png.png": None}

    def add(s):  # type: ignore[no-untyped-def]
        for i, (name, q) in enumerate(qualities.items()):
            p = Photo(path=f"/p/{name}", path_bytes=f"/p/{name}".encode(), size=1, mtime_ns=1, fingerprint=f"{i}" * 32,
                      indexed_at=datetime.now(), jpeg_quality=q)
            s.add(p)
            s.flush()
            s.add(Score(photo_id=p.id, model="assessor", model_version="v", fingerprint=f"{i}" * 32,
                        improvability=1.0, quality=5.0, severity_json=json.dumps(sev), recommended=True,
                        scored_at=datetime.now()))
        refresh_current_scores(s)

    tmp_catalog.write(add)
    lib = Library(tmp_catalog)
    rows = {r.name: r for r in lib.query("/p", "name", {}, 0, 10)}
    named = {"poor.jpg", "png.png"}
    assert {n for n, r in rows.items() if r.top_degradation == "compression"} == named
    assert {n for n, r in rows.items() if lib.photo_record(r.id)["reasons"] == ["compression"]} == named
    assert {lib.photo(i).display_path.rsplit("/", 1)[1] for i in lib.photo_ids("/p", {"degradation": "compression"})} \
        == named
    assert lib.photo(rows["good.jpg"].id).jpeg_quality == 95
    assert Services.reasons_skipped(95) == {"compression"} and Services.reasons_skipped(None) == frozenset()
