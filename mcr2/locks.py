"""How a record is locked where flock cannot be relied on (NFS and other network filesystems).

:func:`mcr2.records.record_lock` takes one lock per record: ``flock`` on a hidden file beside it,
or, on a network filesystem (:func:`lock_mode`), an O_EXCL lock file holding its holder's host,
pid and a token, refreshed by a heartbeat and broken by the next taker once stale
(:func:`file_lock`). This module holds that choice and the lock file; the record folder's own
rules (tidying, atomic writes) stay in :mod:`mcr2.records`.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path

__all__ = ["LOCK_MODES", "lock_mode", "file_lock"]

#: Seconds a process waits on another's record lock before it says what it waits for.
LOCK_NOTICE_S = 2.0

#: How :func:`record_lock` locks a record, from ``$MCR2_LOCK``: "flock" (a kernel lock on a hidden
#: file beside the record, released however the process ends), "file" (a lock file created with
#: O_EXCL, holding the host and pid, for filesystems whose flock cannot be relied on, e.g. NFS), or
#: "auto" (the default: "file" where the runs folder is on a network filesystem, else "flock").
LOCK_MODES = ("auto", "flock", "file")
#: Filesystem types (/proc/mounts) on which "auto" takes lock files: flock there is emulated with
#: byte-range locks or local to one client, depending on the server and the mount options.
NETWORK_FILESYSTEMS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "afs"})
#: A lock file's holder refreshes its modification time this often (seconds) while it trains.
LOCK_HEARTBEAT_S = 30.0
#: A lock file not refreshed for this long is stale (its holder died on some host, or lost the
#: filesystem); on the holder's own host a lock file whose pid is gone is stale at once. Far above
#: the heartbeat and any clock skew between a cluster's nodes.
LOCK_STALE_S = 300.0
#: Seconds between attempts while another process holds a lock file.
LOCK_POLL_S = 1.0


def lock_mode(runs_dir: Path) -> str:
    """The lock :func:`record_lock` takes in ``runs_dir``: "flock" or "file" (see :data:`LOCK_MODES`)."""
    mode = os.environ.get("MCR2_LOCK", "auto").strip() or "auto"
    if mode not in LOCK_MODES:
        raise ValueError(f"MCR2_LOCK={mode!r} is not a lock mode; use one of {', '.join(LOCK_MODES)} "
                         f"(auto: lock files on a network filesystem, flock elsewhere)")
    if mode != "auto":
        return mode
    return "file" if _filesystem_type(Path(runs_dir)) in NETWORK_FILESYSTEMS else "flock"


def _filesystem_type(path: Path) -> str | None:
    """The type of the filesystem holding ``path`` (the longest mount point above it), or None."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:  # not Linux: flock it is
        return None
    path = path.resolve()
    best, kind = -1, None
    for line in mounts:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = Path(parts[1].replace("\\040", " "))
        if (path == point or point in path.parents) and len(str(point)) > best:
            best, kind = len(str(point)), parts[2]
    return kind


@contextlib.contextmanager
def file_lock(path: Path, wait: bool):
    """A lock that needs only an atomic exclusive create, which NFS (v3 and later) provides: the
    file ``path`` is created with O_EXCL and holds the host, pid and a token of its holder, who
    refreshes its modification time every :data:`LOCK_HEARTBEAT_S` on a thread and removes it at
    the end. A file left by a killed holder is broken by the next taker once stale
    (:func:`_lock_stale`). Breaking is a rename, then a check that the file moved is the stale one;
    two takers racing for a stale lock can at worst both train the record, and its write is atomic
    either way (:func:`write_record`)."""
    import socket

    me = {"host": socket.gethostname(), "pid": os.getpid(), "token": uuid.uuid4().hex,
          "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
    waited, told = None, False
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _lock_stale(path)
            if holder is not None:
                _break_lock(path, holder)
                continue
            if not wait:
                yield False
                return
            if waited is None:
                waited = time.monotonic()
            elif not told and time.monotonic() - waited >= LOCK_NOTICE_S:
                told = True  # once: a wait of minutes must not look like a hang
                holder = _lock_holder(path)
                print(f"-- waiting for the record lock {path}: {holder.get('host', '?')} pid {holder.get('pid', '?')} "
                      f"holds it (training or writing the record); this continues when it is released",
                      file=sys.stderr, flush=True)
            time.sleep(LOCK_POLL_S)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(me) + "\n")
        break
    stop = threading.Event()

    def heartbeat():
        while not stop.wait(LOCK_HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(path)

    beat = threading.Thread(target=heartbeat, name="mcr2-lock-heartbeat", daemon=True)
    beat.start()
    try:
        yield True
    finally:
        stop.set()
        beat.join()
        if _lock_holder(path).get("token") == me["token"]:  # never remove a lock another took over
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _lock_holder(path: Path) -> dict:
    """What a lock file says of its holder ({} if gone or unreadable: e.g. caught mid-write)."""
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _lock_stale(path: Path) -> dict | None:
    """The holder of a stale lock file (its pid gone on this host, or no heartbeat for
    :data:`LOCK_STALE_S`), else None."""
    import socket

    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None  # released meanwhile: the next create decides
    holder = _lock_holder(path)
    if age > LOCK_STALE_S:
        return holder
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return holder
        except PermissionError:  # alive, someone else's
            pass
    return None


def _break_lock(path: Path, holder: dict) -> None:
    """Remove a stale lock file; if the file caught is not the stale one (taken meanwhile), put it back."""
    aside = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex[:8]}")
    try:
        path.rename(aside)
    except FileNotFoundError:
        return
    caught = _lock_holder(aside)
    if holder and caught.get("token") != holder.get("token"):
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)  # back in place, unless a third taker already holds it
        aside.unlink()
        return
    print(f"-- broke the stale lock {path.name} of {holder.get('host', '?')} pid {holder.get('pid', '?')}", flush=True)
    aside.unlink()
