"""The pack: what comes back from a GPU window, and its import. Nothing in a pack is trusted.

    python -m mcr2 paper --budget 520 --pack OUT/records.tar.xz    # a GPU machine writes it
    python -m mcr2 paper --import-pack records.tar.xz [--dry-run]  # back here

A pack is one tar archive (``.tar.xz``, ``.tar.gz``/``.tgz`` or ``.tar``) of
  ``<name>/seed<seed>-<key>/<file>``  each record's own files (:data:`RECORD_FILES`), mode 0644;
  ``costs.json``                      the runner's rows: each run tried, its wall time, sharing, device;
  ``manifest.json``                   the sha256 of every other member, with the commit and
                                      :data:`~mcr2.config.CODE_VERSION` that made them.
It is written atomically (a temporary file renamed into place), so a window cut short returns the
last whole pack.

The import reads the whole pack before it writes anything: the archive's size, every member's
name and kind (:data:`RECORD_FILES` under a known experiment's folder, nothing else), the
manifest (required: every member's sha256, today's CODE_VERSION), then every record
(:func:`~mcr2.records.load_record`; its key present and recomputed from its config, its folder,
name and seed its config's, its summary its history's last row) and the cost rows. Only then is
each record installed the way training writes one: under the record's lock, into a temporary
sibling folder, renamed into place last. A record already in place is kept only if it loads
complete. Every refusal is one :class:`PackError` line naming the pack and the member.
"""
from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .config import CODE_VERSION, config_key
from .experiments import EXPERIMENTS
from .records import RecordCorrupt, RunRecord, _git, check_runs_dir, load_record, place_folder, record_dir, record_lock

__all__ = ["PackError", "RECORD_FILES", "PACK_LIMIT_BYTES", "UNPACKED_LIMIT_BYTES", "check_pack_path",
           "pack_records", "read_pack", "import_pack"]

#: The files of a record that travel; anything else in a pack is refused.
RECORD_FILES = ("record.json", "history.csv", "steps.npz", "steps.csv", "artefacts.npz")
#: Largest pack (the files that come back from a GPU machine are at most 16 MiB each).
PACK_LIMIT_BYTES = 16 * 2**20
#: Largest total of a pack's members once unpacked (a paper record is a few MiB; this stops a
#: compression bomb before it fills the disk).
UNPACKED_LIMIT_BYTES = 512 * 2**20
#: The archive's suffixes and their tarfile modes.
_MODES = {".tar.xz": "xz", ".tar.gz": "gz", ".tgz": "gz", ".tar": ""}
#: A record member: ``<experiment>/seed<seed>-<12 hex key>/<one of RECORD_FILES>``.
_MEMBER = re.compile(r"(?P<name>[a-z][a-z0-9_]{0,63})/(?P<folder>seed(?P<seed>\d+)-(?P<key>[0-9a-f]{12}))/"
                     r"(?P<file>" + "|".join(map(re.escape, RECORD_FILES)) + ")")
_FOLDER = re.compile(r"[a-z][a-z0-9_]{0,63}(/seed\d+-[0-9a-f]{12})?/?")
_MANIFEST, _COSTS = "manifest.json", "costs.json"


class PackError(ValueError):
    """A pack that cannot be written or imported; one line naming the pack, the member and the fix."""


def _mode(dest: Path) -> str:
    for suffix, mode in _MODES.items():
        if dest.name.endswith(suffix):
            return mode
    raise PackError(f"--pack {dest}: a pack is a .tar.xz, .tar.gz, .tgz or .tar file, not {dest.suffix or 'no suffix'}")


def check_pack_path(dest: Path) -> Path:
    """Prove, before any run starts, that ``dest`` can be written as a pack: its suffix, its folder
    (created if needed) writable now. An existing pack there is for :func:`read_pack`."""
    dest = Path(dest)
    _mode(dest)
    if dest.is_dir():
        raise PackError(f"--pack {dest} is a folder: name the archive file in it, e.g. {dest / 'records.tar.xz'}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        probe = dest.with_name(f".{dest.name}.probe-{uuid.uuid4().hex[:8]}")
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise PackError(f"--pack {dest}: its folder cannot be written ({type(err).__name__}: "
                        f"{err.strerror or err}); pick a writable place before any run starts") from None
    return dest


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _commit() -> str | None:
    return os.environ.get("MCR2_SOURCE_COMMIT", "").strip() or _git("rev-parse", "HEAD")


def pack_records(paths: list[Path], runs_dir: Path, dest: Path, costs_rows: list[dict]) -> int:
    """Write the record folders (relative to ``runs_dir``, their own files only), ``costs.json``
    and ``manifest.json`` into one archive (compressed by ``dest``'s suffix), atomically. Returns
    its bytes; :class:`PackError`, leaving any earlier pack in place, if it would be over the limit."""
    dest, runs_dir = Path(dest), Path(runs_dir)
    mode = _mode(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    members: dict[str, bytes] = {}
    for path in dict.fromkeys(Path(p) for p in paths):
        rel = path.relative_to(runs_dir).as_posix()
        for name in RECORD_FILES:
            if (path / name).is_file():
                members[f"{rel}/{name}"] = (path / name).read_bytes()
    members[_COSTS] = json.dumps({"runs": costs_rows}, indent=1).encode()
    manifest = {"format": 1, "code_version": CODE_VERSION, "commit": _commit(),
                "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "sha256": {name: _sha256(data) for name, data in members.items()}}
    members[_MANIFEST] = json.dumps(manifest, indent=1, sort_keys=True).encode()
    tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with tarfile.open(tmp, f"w:{mode}" if mode else "w") as tar:
            now = int(time.time())
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), now, 0o644
                tar.addfile(info, io.BytesIO(data))
        size = tmp.stat().st_size
        if size > PACK_LIMIT_BYTES:
            raise PackError(f"the pack {dest} would be {size / 2**20:.1f} MiB, over the {PACK_LIMIT_BYTES / 2**20:.0f} "
                            f"MiB that come back from a GPU machine: pack fewer runs per file")
        os.replace(tmp, dest)
    except OSError as err:
        why = "the disk is full" if err.errno in (errno.ENOSPC, errno.EDQUOT) else f"{type(err).__name__}: {err}"
        raise PackError(f"the pack {dest} could not be written ({why}); the records stay in {runs_dir}, and the "
                        f"last pack written, if any, is whole") from None
    finally:
        tmp.unlink(missing_ok=True)
    return size


@dataclass
class PackedRecord:
    member: str  # "<name>/seed<seed>-<key>", as in the pack
    record: RunRecord  # loaded from the unpacked copy


@dataclass
class Pack:
    path: Path
    manifest: dict
    records: list[PackedRecord]
    rows: list[dict]  # costs.json's runs


def _fail(pack: Path, member: str | None, problem: str) -> PackError:
    where = f"{pack}" + (f", member {member}" if member else "")
    return PackError(f"pack {where}: {' '.join(problem.split())}")  # one line, whatever the problem quotes


def _members(pack: Path, tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """Every member, checked by name and kind before anything is read."""
    out: dict[str, tarfile.TarInfo] = {}
    total = 0
    for info in tar.getmembers():
        name = info.name
        if info.isdir():
            if _FOLDER.fullmatch(name) is None:
                raise _fail(pack, name, "a folder that is no record's (refused: the import writes only record folders)")
            continue  # packs of older runners listed the folders too
        if not info.isfile():
            raise _fail(pack, name, "not a regular file (a link or device; refused)")
        if name not in (_MANIFEST, _COSTS) and _MEMBER.fullmatch(name) is None:
            raise _fail(pack, name, f"not a record's file (<experiment>/seed<N>-<key>/ one of {', '.join(RECORD_FILES)}) "
                                    f"nor costs.json or manifest.json; refused: a pack holds nothing else")
        if name in out:
            raise _fail(pack, name, "is in the archive twice")
        m = _MEMBER.fullmatch(name)
        if m and m["name"] not in EXPERIMENTS:
            raise _fail(pack, name, f"{m['name']!r} is no experiment of this code (known: {', '.join(EXPERIMENTS)})")
        total += info.size
        if total > UNPACKED_LIMIT_BYTES:
            raise _fail(pack, name, f"the members unpack to over {UNPACKED_LIMIT_BYTES / 2**20:.0f} MiB; refused")
        out[name] = info
    return out


def _read_json(pack: Path, member: str, data: bytes) -> dict:
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _fail(pack, member, f"not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise _fail(pack, member, f"holds a {type(value).__name__}, not a JSON object")
    return value


def _check_manifest(pack: Path, manifest: dict, data: dict[str, bytes]) -> None:
    if manifest.get("code_version") != CODE_VERSION:
        raise _fail(pack, _MANIFEST, f"made by code version {manifest.get('code_version')!r}, this code is "
                                     f"{CODE_VERSION!r}: its records would not be this code's; train them again")
    sums = manifest.get("sha256")
    if not isinstance(sums, dict):
        raise _fail(pack, _MANIFEST, "has no sha256 table")
    for name in sorted(set(sums) | set(data)):
        if name not in sums:
            raise _fail(pack, name, "is not in the manifest (added after packing?)")
        if name not in data:
            raise _fail(pack, name, "is in the manifest but missing from the archive")
        if _sha256(data[name]) != sums[name]:
            raise _fail(pack, name, "its sha256 differs from the manifest's: changed after packing (or damaged)")


_ROW_NUMBERS = ("wall_s", "sharing", "worker_start_s", "record_wall_s")


def _check_rows(pack: Path, costs: dict) -> list[dict]:
    rows = costs.get("runs")
    if not isinstance(rows, list):
        raise _fail(pack, _COSTS, "has no list 'runs'")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise _fail(pack, _COSTS, f"runs[{i}] is a {type(row).__name__}, not an object")
        if row.get("name") not in EXPERIMENTS:
            raise _fail(pack, _COSTS, f"runs[{i}].name={row.get('name')!r} is no experiment of this code")
        for key in ("seed", "returncode"):
            if isinstance(row.get(key), bool) or not isinstance(row.get(key), int):
                raise _fail(pack, _COSTS, f"runs[{i}].{key}={row.get(key)!r} is not an integer")
        for key in _ROW_NUMBERS:
            value = row.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise _fail(pack, _COSTS, f"runs[{i}].{key}={value!r} is not a number")
    return rows


def _check_record(pack: Path, member: str, folder: Path) -> RunRecord:
    try:
        rec = load_record(folder)  # the completeness check: history, steps, metrics, summary, key
    except RecordCorrupt as err:
        raise _fail(pack, member, f"not a sound record: {err.problem}") from None
    name, folder_name = member.split("/")
    record, exp = rec.record, rec.config
    if rec.status != "complete":
        raise _fail(pack, member, f"its status is {rec.status!r}: only complete records travel")
    if record.get("code_version") != CODE_VERSION:
        raise _fail(pack, member, f"made by code version {record.get('code_version')!r}, this code is {CODE_VERSION!r}")
    key = config_key(exp)
    if record.get("key") != key:
        raise _fail(pack, member, f"its key is {record.get('key')!r}, its config's is {key}: edited by hand?")
    if (exp.name, f"seed{exp.seed}-{key}") != (name, folder_name) or record.get("name", name) != name \
            or record.get("seed", exp.seed) != exp.seed:
        raise _fail(pack, member, f"its folder is not its config's ({exp.name}/seed{exp.seed}-{key})")
    return rec


def read_pack(pack: Path, into: Path) -> Pack:
    """Check ``pack`` whole (see the module's docstring) with its files unpacked under ``into``
    (tarfile's "data" filter), writing nothing else. :class:`PackError` at the first problem."""
    pack, into = Path(pack), Path(into)
    if not pack.is_file():
        raise PackError(f"pack {pack}: no such file" + (" (a folder)" if pack.is_dir() else ""))
    size = pack.stat().st_size
    if size == 0:
        raise PackError(f"pack {pack}: the file is empty (a window cut short before its first pack?)")
    if size > PACK_LIMIT_BYTES:
        raise PackError(f"pack {pack}: {size / 2**20:.1f} MiB, over the {PACK_LIMIT_BYTES / 2**20:.0f} MiB a pack may be")
    try:
        with tarfile.open(pack) as tar:
            members = _members(pack, tar)
            if _MANIFEST not in members:
                raise _fail(pack, None, "no manifest.json: not a pack of this runner (or one of an older one, "
                                        "which cannot be checked); train the runs again")
            data = {name: tar.extractfile(info).read() for name, info in members.items()}
            tar.extractall(into, members=[members[n] for n in members if _MEMBER.fullmatch(n)], filter="data")
    except PackError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as err:  # lzma/zlib errors are OSError/ValueError/EOFError
        why = "neither a tar archive nor a compressed one" if type(err) is tarfile.ReadError else \
            f"{type(err).__name__}: {' '.join(str(err).split())}"
        raise PackError(f"pack {pack}: not a readable tar archive ({why}); copy it again from the GPU machine") from None
    manifest = _read_json(pack, _MANIFEST, data.pop(_MANIFEST))
    _check_manifest(pack, manifest, data)
    rows = _check_rows(pack, _read_json(pack, _COSTS, data[_COSTS])) if _COSTS in data else []
    records = []
    for member in sorted({n.rsplit("/", 1)[0] for n in data if _MEMBER.fullmatch(n)}):
        records.append(PackedRecord(member, _check_record(pack, member, into / member)))
    return Pack(pack, manifest, records, rows)


def _complete_there(target: Path) -> bool:
    if not (target / "record.json").exists():
        return False
    try:
        return load_record(target).status == "complete"
    except RecordCorrupt:
        return False


def _install(pack: Path, packed: PackedRecord, source: Path, runs_dir: Path) -> Path | None:
    """Copy one checked record into place as training writes one; None if a complete one is there."""
    exp = packed.record.config
    with record_lock(exp, runs_dir):  # tidies what an interrupted import (or run) left
        target = record_dir(exp, runs_dir)
        if _complete_there(target):
            return None
        tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir()
            for name in RECORD_FILES:
                if (source / name).is_file():
                    shutil.copyfile(source / name, tmp / name)
                    os.chmod(tmp / name, 0o644)
            load_record(tmp)  # what landed on this disk reads complete, before it is renamed in
            place_folder(tmp, target)  # a failed or damaged record there is set aside, as write_record does
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            why = "the disk is full" if err.errno in (errno.ENOSPC, errno.EDQUOT) else f"{type(err).__name__}: {err}"
            raise _fail(pack, packed.member, f"could not be written to {target} ({why}); nothing half-copied is "
                                             f"left there: free space and import again") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target


def import_pack(pack: Path, runs_dir: Path, costs_path: Path | None = None, dry_run: bool = False) -> list[Path]:
    """Install the records of ``pack`` into ``runs_dir`` and fold its costs into the cost table
    (:func:`mcr2.costs.merge_costs`: CUDA paper-profile runs only, each record once); everything
    is checked before anything is written. ``dry_run``: check, write nothing. Returns the record
    folders added (or that would be)."""
    from .costs import COSTS_FILE, merge_costs

    costs_path = COSTS_FILE if costs_path is None else Path(costs_path)
    pack = Path(pack)
    runs_dir = Path(runs_dir) if dry_run else check_runs_dir(runs_dir)
    with tempfile.TemporaryDirectory(prefix="mcr2-pack-") as tmp:
        read = read_pack(pack, Path(tmp))
        if dry_run:
            return [record_dir(p.record.config, runs_dir) for p in read.records
                    if not _complete_there(record_dir(p.record.config, runs_dir))]
        added = []
        for packed in read.records:
            target = _install(pack, packed, Path(tmp) / packed.member, runs_dir)
            if target is None:
                print(f"kept the complete record already in {record_dir(packed.record.config, runs_dir)}")
            else:
                added.append(target)
    rows = _rows_with_records(read)
    if rows:
        merge_costs(rows, costs_path)
    return added


def _rows_with_records(read: Pack) -> list[dict]:
    """Each cost row with what its record says of it: the record (``<name>/<folder>``, once per
    record), its profile and the device type it trained on; a row without a record says nothing of
    a cost (a failed run, a run stopped at the deadline)."""
    by_run: dict[tuple[str, int], PackedRecord] = {}
    for p in read.records:
        by_run.setdefault((p.record.config.name, p.record.config.seed), p)
    out = []
    for row in read.rows:
        packed = next((p for p in read.records if p.member == row.get("record")), None) \
            or by_run.get((row["name"], row["seed"]))
        if packed is None:
            continue
        rec = packed.record
        device = rec.record.get("provenance", {}).get("device", {})
        kind = str(device.get("type", "")) if isinstance(device, dict) else ""
        out.append({**row, "record": packed.member, "profile": rec.config.profile,
                    "device_type": kind.split(":")[0] or None,
                    "device": (device.get("name") if isinstance(device, dict) else None) or row.get("device")})
    return out

