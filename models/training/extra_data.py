"""Fetch the extra free-licensed training photos (Debian wallpaper packages).

    python -m models.training.extra_data            # into ../extra_data/photos

The packages come from Debian's archive through ``apt-get download`` (training only; nothing
at run time reads them). Only photographs are kept (illustrations and abstract art are not
tone or texture targets); the list is fixed here so every model sees the same set and the
hash split (``data.is_validation``) holds out the same ones. Licences: GPL-2+ and CC BY-SA,
see ``usr/share/doc/*/copyright`` inside the extracted packages.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from models.training.data import REPO

PACKAGES = ["mate-backgrounds", "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "ukui-wallpapers"]

PHOTOS = [
    "Aqua.jpg", "Blinds.jpg", "Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg", "Dune.jpg",
    "FreshFlower.jpg", "Garden.jpg", "GreenMeadow.jpg", "Kleiber_by_Lukas_Baubkus.jpg", "LadyBird.jpg",
    "Picture_0B_by_freespace.jpg", "Picture_1A_by_freespace.jpg", "RainDrops.jpg", "Storm.jpg",
    "TwoWings.jpg", "Wine_by_Jakkub_Mede.jpg", "Wood.jpg", "YellowFlower.jpg",
    "aitzgorri_by_Aitzol_Berasategi.jpg", "free_by_Peter_Nerlich.jpg", "friends_by_Aitzol_Berasategi.jpg",
    "greentock_by_Peter_Nerlich.jpg", "life_by_Aitzol_Berasategi.jpg",
    "picosdeeuropa_by_Aitzol_Berasategi.jpg", "seeding_by_Clements_Engelhardt.jpg",
    "sunset_by_Aitzol_Berasategi.jpg",
]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO.parent / "extra_data" / "photos")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run(["apt-get", "download", *PACKAGES], cwd=work, check=True)
        tree = work / "x"
        for deb in sorted(work.glob("*.deb")):
            subprocess.run(["dpkg", "-x", str(deb), str(tree)], check=True)
        found = {p.name: p for p in (tree / "usr" / "share" / "backgrounds").rglob("*") if p.is_file()}
        for name in PHOTOS:
            if name not in found:
                print(f"missing from the packages: {name}")
                continue
            shutil.copy2(found[name], args.out / name)
    print(f"{len(list(args.out.glob('*.jpg')))} photos in {args.out}")


if __name__ == "__main__":
    main()
