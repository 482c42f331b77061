"""Worker processes of the paper runner (:mod:`mcr2.paper`): each trains runs one after another.

    python -m mcr2.workers LAUNCHED     # one run per line on stdin (JSON); started by the runner

A run in a process of its own pays, before its first step, for the interpreter and torch imports,
the CUDA context and its libraries, and the data; and for the CUDA teardown after its record. On
an H100 each paper run's process took 14–20 s longer than the 60–80 s its record measured. A
worker pays the start once and then trains whatever the runner hands it, and the loaders' caches
(:mod:`mcr2.data`) keep the images between runs of the same data. Each run starts from its own
seeds (the trainer seeds the weights; batch orders, crops and samples have generators of their
own), so a run gives the same record in a worker, after other runs, as in a process of its own
(``tests/test_paper.py`` checks it).

After each run the worker prints one line ``@@mcr2-finished {json}``: what it trained, how it
ended, and where its seconds went; the runner (:class:`Worker`) takes that line from the pipe and
passes every other line through. A worker whose run failed exits rather than take another run
(a CUDA error leaves its context unusable); the runner starts a fresh one when it needs one.
"""
from __future__ import annotations

import gc
import json
import os
import queue
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

__all__ = ["Worker", "serve", "FINISHED"]

#: The line a worker prints after each run, followed by the run's outcome as JSON.
FINISHED = "@@mcr2-finished "
#: Seconds a worker is given to exit after its input closes (the CUDA teardown) before it is killed.
EXIT_WAIT_S = 30.0


class Worker:
    """One worker process, seen from the runner: :meth:`submit` hands it a run; its outcome arrives
    on ``events`` as ``(worker, outcome dict)``, and ``(worker, None)`` once the process has ended
    (its input closed, its run failed, or :meth:`stop`)."""

    def __init__(self, events: queue.Queue):
        self.launched = time.time()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # progress lines reach the runner as they are printed
        self.proc = subprocess.Popen([sys.executable, "-m", "mcr2.workers", repr(self.launched)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.runs = 0  # runs handed to it
        self._reader = threading.Thread(target=self._read, args=(events,), daemon=True)
        self._reader.start()

    def _read(self, events: queue.Queue) -> None:
        for line in self.proc.stdout:
            if line.startswith(FINISHED):
                events.put((self, json.loads(line[len(FINISHED):])))
            else:
                sys.stdout.write(line)
                sys.stdout.flush()
        events.put((self, None))

    def submit(self, spec: dict) -> bool:
        """Hand it one run (``name``, ``seed``, ``runs_dir``, ``device``, ``overrides``); False if the
        process has gone (its end is then on ``events``)."""
        self.runs += 1
        try:
            self.proc.stdin.write(json.dumps(spec) + "\n")
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            return False

    def returncode(self) -> int:
        """The exit status of an ended process (after its ``None`` event)."""
        return self.proc.wait()

    def close(self) -> int:
        """No more runs: the worker exits once its input ends (killed if it takes over EXIT_WAIT_S)."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def stop(self) -> None:
        """End it now (the deadline): its run leaves no record, only its lock-guarded temporary folder."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def serve(launched: float, lines=None) -> int:
    """The worker's side: train each run read from ``lines`` (default stdin), report it, repeat.
    Returns 0 when the input ends, 1 after a failed run."""
    import torch

    from .engine import run
    from .experiments import experiment

    cuda_ready = False
    start_s = None  # launch to ready for the first run: interpreter, imports, CUDA set-up
    for line in sys.stdin if lines is None else lines:
        if not line.strip():
            continue
        s = json.loads(line)
        if not cuda_ready and s["device"] != "cpu" and torch.cuda.is_available():
            torch.zeros(1, device="cuda")  # the CUDA context, timed here rather than inside the run
            cuda_ready = True
        ready = time.time()
        first = start_s is None
        if first:
            start_s = ready - launched
        status, path, in_record, error = "failed", None, None, None
        try:
            exp = experiment(s["name"], "paper", s["seed"], **s["overrides"])
            rec = run(exp, Path(s["runs_dir"]), device=s["device"], progress="lines")
            status, path, in_record = rec.status, str(rec.path), rec.record.get("wall_time_s")
        except Exception as err:  # reported, then this worker exits: the runner goes on with a fresh one
            traceback.print_exc()
            error = f"{type(err).__name__}: {err}"
        run_s = time.time() - ready
        around = "" if in_record is None else f" ({in_record:.1f} in its record, {run_s - in_record:.1f} around it: " \
                                              f"lock, artefacts, writing)"
        print(f"== {s['name']} seed {s['seed']}: {status}" + (f", {path}" if path else f" ({error})"), flush=True)
        print(f"-- worker seconds: {start_s if first else 0.0:.1f} start (interpreter, imports, CUDA set-up"
              f"{'' if first else '; paid by its first run'}), {run_s:.1f} the run{around}", flush=True)
        print(FINISHED + json.dumps({"name": s["name"], "seed": s["seed"], "status": status, "path": path,
                                     "error": error, "start_s": round(start_s if first else 0.0, 2),
                                     "run_s": round(run_s, 2), "record_wall_s": in_record}), flush=True)
        if status != "complete":
            return 1
        gc.collect()  # the run's model, graphs and batches, before the next run allocates its own
        if cuda_ready:
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(serve(float(sys.argv[1]) if len(sys.argv) > 1 else time.time()))
