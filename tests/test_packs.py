"""The pack that brings GPU records back, and its import: every fault injected here ends in one
clear error naming the pack and the member, or in a complete record kept; nothing is written
outside the runs folder, and nothing half-copied is ever read as a record. Records are made by
:func:`mcr2.records.write_record` with synthetic series (no training: each test takes a second)."""
import errno
import io
import json
import os
import stat
import tarfile
import time
from pathlib import Path

import pytest

from mcr2 import costs as cost_table
from mcr2 import packs, paper
from mcr2.config import CODE_VERSION
from mcr2.experiments import experiment
from mcr2.packs import PackError
from mcr2.records import find_record, load_record, record_dir

from _fake_records import ROW, fake_record

def _pack(tmp_path, names=("cls_mnist_ce",), rows=None, device="cuda", dest="records.tar.xz") -> tuple[Path, list[Path]]:
    made = tmp_path / "made"
    paths = [fake_record(made, n, device=device) for n in names]
    rows = [{**ROW, "name": n, "seed": 0, "record": p.relative_to(made).as_posix()} for n, p in zip(names, paths)] \
        if rows is None else rows
    dest = tmp_path / dest
    packs.pack_records(paths, made, dest, rows)
    return dest, paths


def _members(pack: Path) -> dict[str, bytes]:
    with tarfile.open(pack) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def _rewrite(pack: Path, dest: Path, change=None, manifest: str = "keep", links=()) -> Path:
    """A copy of ``pack`` with members changed (name -> bytes, or None to drop), the manifest kept
    as it was (``"keep"``: the forger did not know of it), recomputed (``"recompute"``: they did)
    or dropped (``"drop"``)."""
    members = _members(pack)
    for name, data in (change or {}).items():
        if data is None:
            members.pop(name, None)
        else:
            members[name] = data
    if manifest == "recompute":
        meta = json.loads(members["manifest.json"])
        meta["sha256"] = {n: packs._sha256(d) for n, d in members.items() if n != "manifest.json"}
        members["manifest.json"] = json.dumps(meta).encode()
    elif manifest == "drop":
        members.pop("manifest.json")
    with tarfile.open(dest, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
        for name, target in links:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return dest


def _record_member(pack: Path, file: str = "record.json") -> str:
    return next(n for n in _members(pack) if n.endswith("/" + file))


def _files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _costs(tmp_path) -> Path:
    path = tmp_path / "costs.json"
    path.write_text(json.dumps({"device": "NVIDIA H100 80GB HBM3", "seconds": {"cls_mnist_ce": {"1": 165.0}},
                                "sources": {"cls_mnist_ce": {"1": "measured 2026-11-26 on NVIDIA H100 80GB HBM3"}},
                                "runs": {"cls_mnist_ce": {"1": 1}}}))
    return path


def test_a_pack_round_trips_with_its_manifest_and_only_the_records_own_files(tmp_path):
    pack, (made,) = _pack(tmp_path)
    (made / "notes.txt").write_text("not a record's file")  # never packed
    packs.pack_records([made], made.parents[1], pack, [])
    members = _members(pack)
    meta = json.loads(members["manifest.json"])
    assert meta["code_version"] == CODE_VERSION and set(meta["sha256"]) == set(members) - {"manifest.json"}
    assert not any(n.endswith("notes.txt") for n in members)
    runs = tmp_path / "runs"
    added = packs.import_pack(pack, runs, _costs(tmp_path))
    assert added == [record_dir(load_record(made).config, runs)]
    assert load_record(added[0]).status == "complete"
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in added[0].iterdir())
    assert sorted(p.name for p in added[0].iterdir()) == ["artefacts.npz", "history.csv", "record.json", "steps.npz"]


# --------------------------------------------------------------------------- 1. path traversal
@pytest.mark.parametrize("member", ["../../../x/seed0-0123456789ab/record.json", "/tmp/x/seed0-0123456789ab/record.json",
                                    "cls_mnist_ce/../../x/record.json", "Cls/seed0-0123456789ab/record.json"])
def test_members_outside_a_record_folder_are_refused_before_anything_is_written(tmp_path, member):
    pack, _ = _pack(tmp_path)
    evil = _rewrite(pack, tmp_path / "evil.tar", {member: b"{}"}, manifest="recompute")
    with pytest.raises(PackError, match=r"evil\.tar, member .*not a record's file"):
        packs.import_pack(evil, tmp_path / "runs", _costs(tmp_path))
    assert _files_under(tmp_path / "runs") == [] and not (tmp_path.parent / "x").exists()


def test_a_record_whose_config_names_a_path_is_refused(tmp_path):
    """config.name "../../../x" with its key recomputed to match: the name is no experiment's,
    and no Experiment takes it."""
    pack, _ = _pack(tmp_path)
    member = _record_member(pack)
    rec = json.loads(_members(pack)[member])
    rec["config"]["name"] = rec["name"] = "../../../x"
    evil = _rewrite(pack, tmp_path / "evil.tar", {member: json.dumps(rec).encode()}, manifest="recompute")
    with pytest.raises(PackError, match=r"member cls_mnist_ce/seed0-\w+: not a sound record: .*name='../../../x'"):
        packs.import_pack(evil, tmp_path / "runs", _costs(tmp_path))
    assert _files_under(tmp_path / "runs") == []


def test_links_and_unknown_experiments_are_refused(tmp_path):
    pack, _ = _pack(tmp_path)
    linked = _rewrite(pack, tmp_path / "l.tar", links=[("cls_mnist_ce/seed0-0123456789ab/steps.csv", "/etc/passwd")])
    with pytest.raises(PackError, match="not a regular file"):
        packs.import_pack(linked, tmp_path / "runs", _costs(tmp_path))
    unknown = _rewrite(pack, tmp_path / "u.tar", {"cls_nope/seed0-0123456789ab/record.json": b"{}"}, manifest="recompute")
    with pytest.raises(PackError, match="'cls_nope' is no experiment"):
        packs.import_pack(unknown, tmp_path / "runs", _costs(tmp_path))
    extra = _rewrite(pack, tmp_path / "e.tar", {_record_member(pack).replace("record.json", "run.sh"): b"rm -rf /"},
                     manifest="recompute")
    with pytest.raises(PackError, match="run.sh: not a record's file"):
        packs.import_pack(extra, tmp_path / "runs", _costs(tmp_path))
    assert _files_under(tmp_path / "runs") == []


# ------------------------------------------------------------------------ 2. forged or stale
def test_an_edited_summary_is_refused_with_or_without_a_new_manifest(tmp_path):
    pack, _ = _pack(tmp_path)
    member = _record_member(pack)
    rec = json.loads(_members(pack)[member])
    rec["summary"]["mnist_acc"] = 0.999
    forged = json.dumps(rec).encode()
    with pytest.raises(PackError, match="record.json: its sha256 differs from the manifest's"):
        packs.import_pack(_rewrite(pack, tmp_path / "a.tar", {member: forged}), tmp_path / "runs", _costs(tmp_path))
    with pytest.raises(PackError, match="summary mnist_acc=0.999 is not history.csv's last row"):
        packs.import_pack(_rewrite(pack, tmp_path / "b.tar", {member: forged}, manifest="recompute"),
                          tmp_path / "runs", _costs(tmp_path))
    assert _files_under(tmp_path / "runs") == []


def test_an_edited_summary_and_history_together_fail_the_manifest(tmp_path):
    pack, _ = _pack(tmp_path)
    member, hist = _record_member(pack), _record_member(pack, "history.csv")
    rec = json.loads(_members(pack)[member])
    rec["summary"]["mnist_acc"] = 0.999
    lines = _members(pack)[hist].decode().splitlines()
    header = lines[0].split(",")
    last = lines[-1].split(",")
    last[header.index("mnist_acc")] = "0.999"
    lines[-1] = ",".join(last)
    forged = _rewrite(pack, tmp_path / "f.tar", {member: json.dumps(rec).encode(), hist: "\n".join(lines).encode()})
    with pytest.raises(PackError, match="its sha256 differs from the manifest's: changed after packing"):
        packs.import_pack(forged, tmp_path / "runs", _costs(tmp_path))


def test_a_stale_record_renamed_to_todays_key_is_refused(tmp_path):
    """An older CODE_VERSION's record with its key removed and its folder renamed to the key its
    config has today."""
    pack, _ = _pack(tmp_path)
    member = _record_member(pack)
    rec = json.loads(_members(pack)[member])
    rec["code_version"] = "2025-01-01.0"
    del rec["key"]
    stale = _rewrite(pack, tmp_path / "s.tar", {member: json.dumps(rec).encode()}, manifest="recompute")
    with pytest.raises(PackError, match="made by code version '2025-01-01.0', this code is"):
        packs.import_pack(stale, tmp_path / "runs", _costs(tmp_path))
    rec["code_version"] = CODE_VERSION  # today's version, but no key
    keyless = _rewrite(pack, tmp_path / "k.tar", {member: json.dumps(rec).encode()}, manifest="recompute")
    with pytest.raises(PackError, match="its key is None"):
        packs.import_pack(keyless, tmp_path / "runs", _costs(tmp_path))
    meta = json.loads(_members(pack)["manifest.json"])
    meta["code_version"] = "2025-01-01.0"
    old = _rewrite(pack, tmp_path / "o.tar", {"manifest.json": json.dumps(meta).encode()})
    with pytest.raises(PackError, match="manifest.json: made by code version '2025-01-01.0'"):
        packs.import_pack(old, tmp_path / "runs", _costs(tmp_path))


def test_a_pack_without_a_manifest_or_with_members_outside_it_is_refused(tmp_path):
    pack, _ = _pack(tmp_path)
    with pytest.raises(PackError, match="no manifest.json"):
        packs.import_pack(_rewrite(pack, tmp_path / "n.tar", manifest="drop"), tmp_path / "runs", _costs(tmp_path))
    with pytest.raises(PackError, match="member costs.json: is in the manifest but missing"):
        packs.import_pack(_rewrite(pack, tmp_path / "m.tar", {"costs.json": None}), tmp_path / "runs",
                          _costs(tmp_path))
    steps = _record_member(pack, "steps.npz")
    added = _rewrite(pack, tmp_path / "a.tar", {steps.replace("steps.npz", "steps.csv"): b"epoch\n1\n"})
    with pytest.raises(PackError, match="steps.csv: is not in the manifest"):
        packs.import_pack(added, tmp_path / "runs", _costs(tmp_path))


def test_tarfile_data_filter_and_size_limits(tmp_path, monkeypatch):
    pack, _ = _pack(tmp_path)
    monkeypatch.setattr(packs, "UNPACKED_LIMIT_BYTES", 1000)
    with pytest.raises(PackError, match="unpack to over"):
        packs.import_pack(pack, tmp_path / "runs", _costs(tmp_path))
    monkeypatch.undo()
    monkeypatch.setattr(packs, "PACK_LIMIT_BYTES", 100)
    with pytest.raises(PackError, match="over the 0 MiB a pack may be"):
        packs.import_pack(pack, tmp_path / "runs", _costs(tmp_path))
    assert _files_under(tmp_path / "runs") == []


# ------------------------------------------------------------------------- 3. half-copied records
def test_a_full_disk_while_packing_keeps_the_last_whole_pack(tmp_path, monkeypatch):
    pack, (made,) = _pack(tmp_path)
    before = pack.read_bytes()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(packs.os, "replace", full)
    with pytest.raises(PackError, match=r"records.tar.xz could not be written \(the disk is full\); the records stay in"):
        packs.pack_records([made], made.parents[1], pack, [])
    assert pack.read_bytes() == before and [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_validation_of_every_record_comes_before_any_copy(tmp_path):
    pack, _ = _pack(tmp_path, names=("cls_mnist_ce", "cls_mnist_mcr2"))
    member = next(n for n in _members(pack) if n.startswith("cls_mnist_mcr2/") and n.endswith("record.json"))
    rec = json.loads(_members(pack)[member])
    rec["wall_time_s"] = "soon"
    bad = _rewrite(pack, tmp_path / "bad.tar", {member: json.dumps(rec).encode()}, manifest="recompute")
    with pytest.raises(PackError, match=r"bad\.tar, member cls_mnist_mcr2/seed0-\w+: .*wall_time_s"):
        packs.import_pack(bad, tmp_path / "runs", _costs(tmp_path))
    assert _files_under(tmp_path / "runs") == []  # cls_mnist_ce, sound, was not copied either


def test_a_full_disk_leaves_nothing_half_copied_and_a_reimport_completes(tmp_path, monkeypatch):
    pack, (made,) = _pack(tmp_path)
    runs, costs = tmp_path / "runs", _costs(tmp_path)
    real, calls = packs.shutil.copyfile, []

    def full(src, dst, *a, **k):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(packs.shutil, "copyfile", full)
    with pytest.raises(PackError, match=r"member cls_mnist_ce/seed0-\w+: could not be written to .*the disk is full.*"
                                        r"free space and import again"):
        packs.import_pack(pack, runs, costs)
    target = record_dir(load_record(made).config, runs)
    assert not target.exists() and not list(target.parent.glob(".tmp-*"))
    assert json.loads(costs.read_text())["seconds"]["cls_mnist_ce"] == {"1": 165.0}  # no cost without its record
    assert paper.plan_runs([0], runs, json.loads(costs.read_text()), names=["cls_mnist_ce"])[0].done is False
    monkeypatch.undo()
    assert packs.import_pack(pack, runs, costs) == [target]


def test_an_interrupted_import_leaves_no_record_and_a_half_copied_one_is_replaced(tmp_path, monkeypatch):
    pack, (made,) = _pack(tmp_path)
    runs = tmp_path / "runs"
    target = record_dir(load_record(made).config, runs)

    def killed(src, dst, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(packs.shutil, "copyfile", killed)
    with pytest.raises(KeyboardInterrupt):
        packs.import_pack(pack, runs, _costs(tmp_path))
    monkeypatch.undo()
    assert not target.exists() and not list(target.parent.glob(".tmp-*"))
    # What an older import left: record.json copied, the rest not. It reads as no record; the
    # import replaces it, and --dry-run counts it to import.
    target.mkdir(parents=True)
    (target / "record.json").write_bytes((made / "record.json").read_bytes())
    assert packs.import_pack(pack, runs, _costs(tmp_path), dry_run=True) == [target]
    assert sorted(p.name for p in target.iterdir()) == ["record.json"]  # a dry run writes nothing
    assert packs.import_pack(pack, runs, _costs(tmp_path)) == [target]
    assert find_record(load_record(target).config, runs).path == target
    assert not list(target.parent.glob(".old-*")) and not list(target.parent.glob(".tmp-*"))


def test_a_complete_record_in_place_is_kept_and_a_failed_one_replaced(tmp_path, capsys):
    pack, (made,) = _pack(tmp_path)
    runs = tmp_path / "runs"
    here = fake_record(runs)
    assert packs.import_pack(pack, runs, _costs(tmp_path)) == []
    assert "kept the complete record already in" in capsys.readouterr().out and load_record(here).status == "complete"
    rec = json.loads((here / "record.json").read_text())
    (here / "record.json").write_text(json.dumps({**rec, "status": "failed"}))
    assert packs.import_pack(pack, runs, _costs(tmp_path)) == [here]
    assert load_record(here).status == "complete"


@pytest.mark.parametrize("content, message", [(b"", "the file is empty"), (b"not a tar at all" * 40, "not a readable tar"),
                                              (None, "no such file")])
def test_empty_missing_or_non_tar_packs_are_one_line_errors(tmp_path, content, message):
    pack = tmp_path / "records.tar.xz"
    if content is not None:
        pack.write_bytes(content)
    with pytest.raises(PackError, match=message) as err:
        packs.import_pack(pack, tmp_path / "runs", _costs(tmp_path))
    assert "\n" not in str(err.value) and str(pack) in str(err.value)


def test_a_truncated_pack_is_a_one_line_error(tmp_path):
    pack, _ = _pack(tmp_path)
    cut = tmp_path / "cut.tar.xz"
    cut.write_bytes(pack.read_bytes()[: pack.stat().st_size // 2])
    with pytest.raises(PackError, match=r"cut\.tar\.xz: not a readable tar archive .*copy it again"):
        packs.import_pack(cut, tmp_path / "runs", _costs(tmp_path))


# ----------------------------------------------------------------------------- 4. the cost table
def test_costs_fold_only_cuda_paper_runs_once_each(tmp_path, capsys):
    costs = _costs(tmp_path)
    pack, _ = _pack(tmp_path)
    packs.import_pack(pack, tmp_path / "runs", costs)
    table = json.loads(costs.read_text())
    # A graphed time replaces the table's eager one; the sources say where each was measured.
    assert table["seconds"]["cls_mnist_ce"]["1"] == 120.0 and table["graphed"]["cls_mnist_ce"]["1"]
    assert table["sources"]["cls_mnist_ce"]["1"] == ("measured 2026-12-04 on NVIDIA H200, mean of 1 CUDA paper-profile "
                                                     "run (graphed steps)")
    assert table["device"] == "NVIDIA H100 80GB HBM3 and NVIDIA H200"
    for _ in range(3):  # re-imports of the same records move nothing
        packs.import_pack(pack, tmp_path / "runs2", costs)
        packs.import_pack(pack, tmp_path / "runs", costs)
    assert json.loads(costs.read_text())["seconds"] == table["seconds"]
    assert "its record's time is in the table already" in capsys.readouterr().out
    # An eager time is averaged with the eager ones, and its source names both devices.
    costs.write_text(json.dumps({**json.loads(_costs(tmp_path).read_text())}))
    made = tmp_path / "eager"
    path = fake_record(made)
    packs.pack_records([path], made, tmp_path / "e.tar", [{**ROW, "name": "cls_mnist_ce", "seed": 0, "cuda_graphs": False}])
    packs.import_pack(tmp_path / "e.tar", tmp_path / "runs3", costs)
    table = json.loads(costs.read_text())
    assert table["seconds"]["cls_mnist_ce"]["1"] == pytest.approx((165.0 + 120.0) / 2)
    assert table["sources"]["cls_mnist_ce"]["1"].startswith("measured 2026-12-04 on NVIDIA H100 80GB HBM3 and NVIDIA "
                                                            "H200, mean of 2")


@pytest.mark.parametrize("change, why", [
    ({"wall_s": -40.0}, "not a finite positive"), ({"wall_s": float("nan")}, "not a finite positive"),
    ({"wall_s": 0.0}, "not a finite positive"), ({"worker_start_s": 500.0}, "worker start"),
    ({"returncode": 1}, "did not complete"), ({"sharing": float("inf")}, "sharing")])
def test_costs_refuse_times_that_are_not_finite_positive(tmp_path, change, why, capsys):
    costs = _costs(tmp_path)
    pack, (made,) = _pack(tmp_path, rows=[])
    rows = [{**ROW, "name": "cls_mnist_ce", "seed": 0, **change}]
    packs.pack_records([made], made.parents[1], pack, rows)
    packs.import_pack(pack, tmp_path / "runs", costs)
    assert json.loads(costs.read_text())["seconds"]["cls_mnist_ce"] == {"1": 165.0}
    assert why in capsys.readouterr().out


def test_costs_of_cpu_runs_and_other_profiles_are_not_folded(tmp_path, capsys):
    costs = _costs(tmp_path)
    pack, _ = _pack(tmp_path, device="cpu")
    packs.import_pack(pack, tmp_path / "runs", costs)
    assert "trained on 'cpu', not CUDA" in capsys.readouterr().out
    made = tmp_path / "custom"
    path = fake_record(made, **{"optim.epochs": 3})  # a custom profile
    packs.pack_records([path], made, tmp_path / "c.tar", [{**ROW, "name": "cls_mnist_ce", "seed": 0}])
    packs.import_pack(tmp_path / "c.tar", tmp_path / "runs", costs)
    assert "of the 'custom' profile" in capsys.readouterr().out
    assert json.loads(costs.read_text())["seconds"]["cls_mnist_ce"] == {"1": 165.0}


def test_bad_cost_rows_refuse_the_pack_before_anything_is_copied(tmp_path):
    pack, (made,) = _pack(tmp_path)
    packs.pack_records([made], made.parents[1], pack, [{**ROW, "name": "cls_mnist_ce", "seed": "zero"}])
    with pytest.raises(PackError, match=r"member costs.json: runs\[0\].seed='zero' is not an integer"):
        packs.import_pack(pack, tmp_path / "runs", _costs(tmp_path))
    assert _files_under(tmp_path / "runs") == []


@pytest.mark.parametrize("table, field", [
    ([1, 2], "the whole file"), ({"seconds": {"cls_mnist_ce": {"1": -3}}}, "seconds.cls_mnist_ce.1"),
    ({"seconds": {"cls_mnist_ce": {"one": 3}}}, "seconds.cls_mnist_ce key"), ({"seconds": []}, "seconds"),
    ({"seconds": {"cls_mnist_ce": 165}}, "seconds.cls_mnist_ce"), ({"graph_speedup": {"unet/ce": "fast"}}, "graph_speedup")])
def test_a_bad_cost_table_is_one_line_naming_the_field(tmp_path, table, field):
    path = tmp_path / "paper_costs.json"
    path.write_text(json.dumps(table))
    with pytest.raises(cost_table.CostTableError, match=f"{path}: {field}.*git checkout") as err:
        cost_table.load_costs(path)
    assert "\n" not in str(err.value)
    path.write_text("{not json")
    with pytest.raises(cost_table.CostTableError, match="not valid JSON"):
        cost_table.load_costs(path)


def test_the_committed_cost_table_loads():
    costs = cost_table.load_costs()
    assert all(v > 0 for per in costs["seconds"].values() for v in per.values())


def test_pack_path_is_checked_before_any_run(tmp_path):
    with pytest.raises(PackError, match="a .tar.xz, .tar.gz, .tgz or .tar file"):
        packs.check_pack_path(tmp_path / "records.zip")
    (tmp_path / "dir.tar").mkdir()
    with pytest.raises(PackError, match="is a folder"):
        packs.check_pack_path(tmp_path / "dir.tar")
    (tmp_path / "file").write_text("")
    with pytest.raises(PackError, match="its folder cannot be written"):
        packs.check_pack_path(tmp_path / "file" / "records.tar")
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(PackError, match="cannot be written"):
            packs.check_pack_path(ro / "records.tar")
    assert packs.check_pack_path(tmp_path / "new" / "records.tar.gz") == tmp_path / "new" / "records.tar.gz"
