"""Worker processes of the paper runner (:mod:`mcr2.paper`): each trains runs one after another.

    python -m mcr2.workers LAUNCHED [STREAMS]    # one run per line on stdin (JSON); started by the runner

A run in a process of its own pays, before its first step, for the interpreter and torch imports,
the CUDA context and its libraries, and the data; and for the CUDA teardown after its record. On
an H100 each paper run's process took 14–20 s longer than the 60–80 s its record measured. A
worker pays the start once and then trains whatever the runner hands it, and the loaders' caches
(:mod:`mcr2.data`) keep the images between runs of the same data. Each run starts from its own
seeds (the trainer seeds the weights; batch orders, crops and samples have generators of their
own), so a run gives the same record in a worker, after other runs, as in a process of its own
(``tests/test_paper.py`` checks it).

A worker trains on one device (``cuda:N`` with ``python -m mcr2 paper --devices``: the runner
starts ``--jobs`` workers per device, :mod:`mcr2.executors`), and its records name the launcher
and the executor (``MCR2_LAUNCHER``, ``MCR2_EXECUTOR=workers`` in its environment).

With ``STREAMS`` > 1 (``python -m mcr2 paper --streams N``) a worker trains up to that many runs at
once, each on a thread and, on CUDA, a stream of its own: the kernels of separate processes take
turns on a GPU, those of streams in one process can overlap (``benchmarks/bench_train.py --streams
N`` measures whether that pays). The runs draw their initial weights one at a time (the global
generator is seeded per run), and graphs are captured in "thread_local" mode on streams of their
own (:data:`mcr2.graphs.THREADED_CAPTURE`); on a CPU two runs at once give the records each gives
alone (tested).

After each run the worker prints one line ``@@mcr2-finished {json}``: what it trained, how it
ended, and where its seconds went; the runner (:class:`Worker`) takes that line from the pipe and
passes every other line through. A worker whose run failed takes no further run (a CUDA error
leaves its context unusable): with one stream it exits at once, with several once the runner has
seen its other runs end; the runner starts a fresh worker when it needs one.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
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

from .executors import launch_env

__all__ = ["Worker", "serve", "FINISHED"]

#: The line a worker prints after each run, followed by the run's outcome as JSON.
FINISHED = "@@mcr2-finished "
#: Seconds a worker is given to exit after its input closes (the CUDA teardown) before it is killed.
EXIT_WAIT_S = 30.0


class Worker:
    """One worker process, seen from the runner: :meth:`submit` hands it a run (up to ``streams`` at
    once); each outcome arrives on ``events`` as ``(worker, outcome dict)``, and ``(worker, None)``
    once the process has ended (its input closed, a run failed, or :meth:`stop`)."""

    def __init__(self, events: queue.Queue, streams: int = 1, device: str = "auto", shared: int | None = None):
        self.launched, self.streams, self.device = time.time(), streams, device  # device: its runs' (cuda:N, cpu, auto)
        env = {**os.environ, "PYTHONUNBUFFERED": "1",  # progress lines reach the runner as they are printed
               **launch_env("workers"),  # its records say how they were launched, and how many runs share
               # their device at most (``shared``, default this worker's streams), ``streams`` of them in one process
               "MCR2_SHARED_GPU_RUNS": str(shared or streams), "MCR2_GPU_STREAMS": str(streams)}
        self.proc = subprocess.Popen([sys.executable, "-m", "mcr2.workers", repr(self.launched), str(streams)],
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.runs = 0  # runs handed to it
        self.busy = 0  # runs it is training now (at most ``streams``)
        self.broken = False  # one of its runs failed: it gets no further run
        self._reader = threading.Thread(target=self._read, args=(events,), daemon=True)
        self._reader.start()

    def _read(self, events: queue.Queue) -> None:
        try:
            for line in self.proc.stdout:
                if line.startswith(FINISHED):
                    try:
                        events.put((self, json.loads(line[len(FINISHED):])))
                        continue
                    except json.JSONDecodeError:  # shown as it came; the run ends with the process
                        print(f"-- unreadable report from a worker: {line.strip()!r}", flush=True)
                sys.stdout.write(line)
                sys.stdout.flush()
        finally:
            events.put((self, None))  # always: the runner never waits on a worker that has gone

    def submit(self, spec: dict) -> bool:
        """Hand it one run (``name``, ``seed``, ``runs_dir``, ``overrides``; the device is the
        worker's); False if the process has gone (its end is then on ``events``)."""
        spec = {**spec, "device": self.device}
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


class _WholeLines:
    """Standard output shared by run threads: each thread's text goes out in whole lines, one line
    at a time (``print`` writes a text and its newline separately, and another thread's report could
    land between them, where the runner would not find it)."""

    def __init__(self, out):
        self.out, self.lock, self.local = out, threading.Lock(), threading.local()

    def write(self, text: str) -> int:
        *lines, self.local.rest = (getattr(self.local, "rest", "") + text).split("\n")
        if lines:
            with self.lock:
                self.out.write("".join(line + "\n" for line in lines))
                self.out.flush()
        return len(text)

    def flush(self) -> None:
        self.out.flush()

    def __getattr__(self, name):  # encoding, isatty, fileno ...: those of the stream it wraps
        return getattr(self.out, name)


def serve(launched: float, lines=None, streams: int = 1) -> int:
    """The worker's side: train each run read from ``lines`` (default stdin), report it, repeat.
    ``streams`` > 1: up to that many runs at once, each on a thread of its own and, on CUDA, a
    stream of its own (the runner never hands it more). Returns 0 when the input ends, 1 after a
    failed run (with one stream at once it then exits without reading further)."""
    import torch

    from . import graphs
    from .engine import run
    from .experiments import experiment

    lock = threading.Lock()  # the CUDA set-up, the start's accounting and the reports, one at a time
    state = {"cuda": False, "start_s": None, "failed": False}
    if streams > 1:
        graphs.THREADED_CAPTURE = True  # captures may happen while another run's thread uses the GPU
        sys.stdout = _WholeLines(sys.stdout)

    def train(s: dict) -> bool:
        ready, first = time.time(), False
        status, path, in_record, error = "failed", None, None, None
        try:  # whatever goes wrong is reported: the runner waits for every run's report
            with lock:
                if not state["cuda"] and s["device"] != "cpu" and torch.cuda.is_available():
                    device = torch.device("cuda" if s["device"] == "auto" else s["device"])
                    if device.index is not None:  # its streams, graphs and context on that device, not on cuda:0
                        torch.cuda.set_device(device)
                    torch.zeros(1, device=device)  # the CUDA context, timed here rather than inside the run
                    state["cuda"] = True
                ready = time.time()
                first = state["start_s"] is None
                if first:
                    state["start_s"] = ready - launched  # launch to ready: interpreter, imports, CUDA set-up
            stream = torch.cuda.Stream() if state["cuda"] and streams > 1 else None
            exp = experiment(s["name"], "paper", s["seed"], **s["overrides"])
            with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
                rec = run(exp, Path(s["runs_dir"]), device=s["device"], progress="lines")
            status, path, in_record = rec.status, str(rec.path), rec.record.get("wall_time_s")
        except Exception as err:  # reported; the runner gives this worker no further run
            traceback.print_exc()
            error = f"{type(err).__name__}: {err}"
        run_s = time.time() - ready
        start_s = (state["start_s"] or 0.0) if first else 0.0
        around = "" if in_record is None else f" ({in_record:.1f} in its record, {run_s - in_record:.1f} around it: " \
                                              f"lock, artefacts, writing)"
        with lock:
            state["failed"] |= status != "complete"
            print(f"== {s['name']} seed {s['seed']}: {status}" + (f", {path}" if path else f" ({error})"), flush=True)
            print(f"-- worker seconds: {start_s:.1f} start (interpreter, imports, CUDA set-up"
                  f"{'' if first else '; paid by its first run'}), {run_s:.1f} the run{around}", flush=True)
            print(FINISHED + json.dumps({"name": s["name"], "seed": s["seed"], "status": status, "path": path,
                                         "error": error, "start_s": round(start_s, 2), "run_s": round(run_s, 2),
                                         "record_wall_s": in_record}), flush=True)
        gc.collect()  # the run's model, graphs and batches, before the next run allocates its own
        if state["cuda"] and streams == 1:  # (never while another thread may be capturing a graph)
            torch.cuda.empty_cache()
        return status == "complete"

    specs = (json.loads(line) for line in (sys.stdin if lines is None else lines) if line.strip())
    if streams == 1:
        return 0 if all(train(s) for s in specs) else 1  # stops at the first failed run
    with concurrent.futures.ThreadPoolExecutor(max_workers=streams, thread_name_prefix="run") as pool:
        for s in specs:
            pool.submit(train, s)
    return 1 if state["failed"] else 0


if __name__ == "__main__":
    sys.exit(serve(float(sys.argv[1]) if len(sys.argv) > 1 else time.time(),
                   streams=int(sys.argv[2]) if len(sys.argv) > 2 else 1))
