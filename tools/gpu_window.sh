#!/usr/bin/env bash
# One GPU window, start to finish: rebuild the data root, measure the loss and a training step,
# execute a chapter whose missing paper records fit the time (papermill on this machine's kernel:
# the chapter trains them), train the other missing records inside what is left of the time, pack
# them for the way back. Run from the repository root on the GPU machine (torch + torchvision are
# enough; gpu_prepare.sh carries pytest and the notebook stack):
#   bash tools/gpu_window.sh PACKED_DATA_DIR OUT_DIR [SECONDS] [JOBS] [PAPER OPTIONS...]
# PACKED_DATA_DIR: made here by tools/gpu_prepare.sh (packed data, unpack-data.sh, source.tar).
# SECONDS (default 560): the whole script's wall time; the trainer gets what the set-up leaves.
# PAPER OPTIONS go to `python -m mcr2 paper`, e.g. `--only cls_mnist_ce cls_mnist_mcr2` in a window
# that carries the classification data only (tools/gpu_prepare.sh --classification-only).
# MCR2_WINDOW_BENCH: loss (default: bench_loss only, ~15 s), all (+ profile_loss, bench_train with
# CUDA graphs, the U-Net step's kernels: ~3 min), 0 (none: a second call on a warm machine, records only).
# MCR2_WINDOW_CHAPTER: auto (default: on CUDA, the chapter `tools/book.py pick` names for the time
# left; none without CUDA), a chapter's name, with `tools/book.py execute` options after it if any
# (executed whatever the device, e.g. "04_segmentation -p seeds=[0]"), or 0 (none).
# MCR2_WINDOW_TMP (default /tmp): where the data, the code, the records and the checks' logs go
# (tests/test_paper.py rehearses the whole window on a CPU in a folder of its own, and
# tests/test_gpu_tools.py does with the GPU machine's packages only and a chapter).
# Back here: python -m mcr2 paper --import-pack OUT_DIR/records.tar.xz (and OUT_DIR/chapter-records.tar.xz);
# OUT_DIR/NAME.ipynb is the executed chapter.
set -uo pipefail
packed=$(cd "$1" && pwd); out=$(mkdir -p "$2" && cd "$2" && pwd); total=${3:-560}; jobs=${4:-1}
work=${MCR2_WINDOW_TMP:-/tmp}
shift $(( $# < 4 ? $# : 4 ))
start=$SECONDS
exec > >(tee -a "$out/log.txt") 2>&1
stamp() { echo "== $1 at $((SECONDS - start)) s"; }

stamp env
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.cuda.is_available())"
nproc

stamp data
bash "$packed/unpack-data.sh" "$packed" "$work"/mcr2-data || { echo "data could not be rebuilt"; exit 1; }
export MCR2_DATA="$work"/mcr2-data

# The committed code travels as source.tar (tools/gpu_prepare.sh): a .git found on the GPU machine
# can be an older copy than the tree beside it. Records name the archive's commit
# (MCR2_SOURCE_COMMIT, see mcr2.records.provenance). They are read from and written to
# $work/mcr2-runs/paper, seeded with the committed ones: it outlives the call, so a second call on
# the same warm machine (whose tree comes fresh from the checkout) continues instead of retraining.
runs_dir="$work"/mcr2-runs/paper
mkdir -p "$runs_dir" && cp -rn results/paper/. "$runs_dir/"
if [ -f "$packed/source.tar" ] && rm -rf "$work"/mcr2-src && mkdir -p "$work"/mcr2-src && tar xf "$packed/source.tar" -C "$work"/mcr2-src; then
  export MCR2_SOURCE_COMMIT=$(cat "$packed/source.commit")
  cd "$work"/mcr2-src
  echo "code: commit $MCR2_SOURCE_COMMIT (source.tar)"
else
  echo "no source.tar: training in the tree as it came (its records' commit may not be this code's)"
fi
export PYTHONPATH=$(pwd)

# Training steps replay as CUDA graphs (mcr2.training.CUDA_GRAPHS). Before the paper runs depend on
# it, tests/test_graphs.py checks on this machine that graphed steps and a whole graphed run (MCR²
# switch, learning-rate decay, ragged batches) train as the eager ones do; without pytest, two
# smoke runs check that the capture works at all. When the whole check fails, the ResNet18 steps
# with SGD (the classification runs, where graphs pay 1.9-2.2x) are checked alone and keep their
# graphs if they pass (MCR2_CUDA_GRAPHS=resnet18); otherwise this window trains eagerly (the same
# updates, slower). The log says which. Everything reads MNIST only (no CIFAR needed).
stamp graphs_check
# What this Python lacks comes from the archives gpu_prepare.sh made: pytest, and the notebook stack
# (papermill, jupytext, ipykernel, nbclient, myst_nb's glue) that executes a chapter.
rm -rf "$work"/mcr2-pylib && mkdir -p "$work"/mcr2-pylib
notebook_stack="import papermill, jupytext, ipykernel, nbclient, myst_nb"
for lib in "pytest:import pytest" "notebook:$notebook_stack"; do
  name=${lib%%:*}
  if ! python3 -c "${lib#*:}" 2>/dev/null && [ -f "$packed/$name.tar.xz" ]; then
    tar xJf "$packed/$name.tar.xz" -C "$work"/mcr2-pylib && echo "$name: carried ($packed/$name.tar.xz)"
  fi
done
export PYTHONPATH="$PYTHONPATH:$work/mcr2-pylib"
if python3 -c "import pytest" 2>/dev/null; then
  check=(python3 -m pytest -q -x -p no:cacheprovider tests/test_graphs.py)
  resnet_check=("${check[@]}" -k sgd)
else
  check=(python3 -m mcr2 run cls_mnist_mcr2 seg_bg_mcr2_masked --profile smoke --device cuda
         --runs-dir "$work"/mcr2-graphs-check --retrain --set data.background=null)
  resnet_check=(python3 -m mcr2 run cls_mnist_mcr2 --profile smoke --device cuda
                --runs-dir "$work"/mcr2-graphs-check-resnet --retrain)
fi
if timeout 180 "${check[@]}" > "$work"/mcr2-graphs-check.log 2>&1; then
  tail -n 1 "$work"/mcr2-graphs-check.log
else
  tail -n 25 "$work"/mcr2-graphs-check.log
  if timeout 120 "${resnet_check[@]}" > "$work"/mcr2-graphs-check-resnet.log 2>&1; then
    tail -n 1 "$work"/mcr2-graphs-check-resnet.log
    echo "!! CUDA graphs failed their whole check but pass for ResNet18 with SGD: MCR2_CUDA_GRAPHS=resnet18"
    export MCR2_CUDA_GRAPHS=resnet18
  else
    tail -n 10 "$work"/mcr2-graphs-check-resnet.log
    echo "!! CUDA graphs failed their check: this window trains with MCR2_CUDA_GRAPHS=0 (eager steps)"
    export MCR2_CUDA_GRAPHS=0
  fi
fi

bench=${MCR2_WINDOW_BENCH:-loss}
if [ "$bench" != 0 ]; then
  stamp bench_loss
  timeout 45 python3 benchmarks/bench_loss.py --device cuda --repeats 10
fi
if [ "$bench" = all ]; then
  stamp profile_loss
  timeout 30 python3 benchmarks/profile_loss.py --device cuda --rows 15
  stamp bench_train
  timeout 120 python3 benchmarks/bench_train.py --device cuda --profile paper --steps 10 --cuda-graphs on --streams 2
  stamp profile_step
  timeout 60 python3 benchmarks/profile_step.py --device cuda --experiment seg_bg_mcr2_masked --rows 15
fi

# A chapter executed as a researcher with a GPU would (`tools/book.py execute NAME --profile paper`):
# it trains its missing records inside the kernel, one after another (their records say launcher
# papermill). It reads and writes the runner's records ($MCR2_RUNS/paper). The executed notebook
# comes back, and the records it made in a pack of their own, even when the chapter was stopped.
export MCR2_RUNS="$work"/mcr2-runs
stamp chapter
chapter=${MCR2_WINDOW_CHAPTER:-auto}
left=$((total - (SECONDS - start) - 40))
if [ "$chapter" = 0 ]; then
  chapter=""; echo "no chapter (MCR2_WINDOW_CHAPTER=0)"
elif ! why=$(python3 -c "$notebook_stack" 2>&1); then
  chapter=""; echo "!! no chapter executed: the notebook stack does not import (${why##*$'\n'}): not carried" \
                   "(gpu_prepare.sh --no-notebook), or packed for another Python (MCR2_GPU_PYTHON there)"
elif [ "$chapter" = auto ]; then
  if python3 -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
    chapter=$(python3 tools/book.py pick --budget "$left")
    [ -n "$chapter" ] || echo "no chapter's missing records fit the $left s left"
  else
    chapter=""; echo "no CUDA: no chapter trains paper records here"
  fi
fi
if [ -n "$chapter" ] && [ "$left" -lt 60 ]; then
  echo "no chapter: $left s left"
elif [ -n "$chapter" ]; then
  name=${chapter%% *}
  python3 tools/gpu_records.py list "$runs_dir" > "$work"/mcr2-before.txt
  # shellcheck disable=SC2086  # the chapter's name, then its options
  timeout "$left" python3 tools/book.py execute $chapter --profile paper
  echo "chapter $name: exit status $?"
  cp _build/executed/"$name".ipynb "$out"/ && echo "executed notebook: $out/$name.ipynb"
  python3 tools/gpu_records.py pack "$runs_dir" "$work"/mcr2-before.txt "$out"/chapter-records.tar.xz
fi

left=$((total - (SECONDS - start) - 10))
stamp "paper (budget $left s, $jobs jobs)"
python3 -m mcr2 paper --budget "$left" --jobs "$jobs" --runs-dir "$runs_dir" --pack "$out/records.tar.xz" "$@"
stamp done
