"""The records a chapter trained in a GPU window, packed for the way back (tools/gpu_window.sh).

    python3 tools/gpu_records.py list RUNS_DIR > BEFORE          # complete records before the chapter
    python3 tools/gpu_records.py pack RUNS_DIR BEFORE OUT.tar.xz  # those complete after it and not before

A chapter executed by papermill trains its missing records inside the kernel, where the paper
runner's pack (``python -m mcr2 paper --pack``) does not see them. ``pack`` writes them into a pack
of the same form (:func:`mcr2.paper.pack_records`), with a ``costs.json`` row per record measured
from the record itself (its phases' seconds), so that ``python -m mcr2 paper --import-pack`` checks
and imports them and folds their times into the cost table. Records that were complete before are
left out; a chapter stopped halfway still returns the records it finished.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # mcr2 from this checkout


def complete_records(runs_dir: Path) -> list[str]:
    """``name/seed…-key`` of every complete record under ``runs_dir`` (reading record.json only)."""
    found = []
    for path in sorted(Path(runs_dir).glob("*/*/record.json")):
        if path.parent.name.startswith("."):
            continue
        try:
            complete = json.loads(path.read_text(encoding="utf-8")).get("status") == "complete"
        except (OSError, ValueError):
            continue  # unreadable: not a record to pack (load_record names it on import)
        if complete:
            found.append(f"{path.parent.parent.name}/{path.parent.name}")
    return found


def cost_row(record: dict) -> dict:
    """A costs.json row (:func:`mcr2.costs.merge_costs`) for a record trained outside the runner:
    its wall seconds are its phases' (set-up to writing), one run on the device unless it says more."""
    prov = record.get("provenance", {})
    phases = record.get("phase_seconds") or {}
    wall = sum(phases.values()) if phases else record.get("wall_time_s")
    return {"name": record["name"], "seed": record["seed"], "returncode": 0, "wall_s": round(wall, 1),
            "worker_start_s": None, "sharing": float(prov.get("shared_gpu_runs") or 1),
            "streams": prov.get("gpu_streams") or 1, "device": prov.get("gpu_name"),
            "date": (record.get("started") or "")[:10], "record_wall_s": round(record["wall_time_s"], 1),
            "cuda_graphs": bool(record.get("cuda_graphs", False)), "launcher": prov.get("launcher")}


def pack_new(runs_dir: Path, before: list[str], dest: Path) -> list[str]:
    """Pack the complete records of ``runs_dir`` not named in ``before`` into ``dest``; returns them
    (nothing is written when there are none)."""
    from mcr2.paper import pack_records

    new = [r for r in complete_records(runs_dir) if r not in set(before)]
    if new:
        rows = [cost_row(json.loads((Path(runs_dir) / r / "record.json").read_text(encoding="utf-8"))) for r in new]
        pack_records([Path(runs_dir) / r for r in new], Path(runs_dir), Path(dest), rows)
    return new


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "list":
        print("\n".join(complete_records(Path(argv[1]))))
        return 0
    if len(argv) == 4 and argv[0] == "pack":
        before = Path(argv[2]).read_text().split()
        new = pack_new(Path(argv[1]), before, Path(argv[3]))
        print(f"-- chapter records: {len(new)} new" + (f", packed into {argv[3]}: " + ", ".join(new) if new else
                                                      " (no pack written)"), flush=True)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
