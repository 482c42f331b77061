#!/usr/bin/env bash
# Make the folder that travels to a GPU machine with the checkout: the packed data, its unpack
# script, and the committed code as source.tar (results/ left out: the records travel in the tree).
#   bash tools/gpu_prepare.sh [--classification-only|--with-cifar] [DEST]      (DEST default: .gpudata)
# The CIFAR-100 pictures (39 of the 57 MB) go along only when a missing paper record needs them
# (`python -m mcr2.paper --backgrounds-needed`); MNIST and USPS (18 MB) serve classification and
# plain-MNIST segmentation. --classification-only leaves them out, --with-cifar takes them, whatever
# is missing. Checks that checkout + DEST fit the 64 MiB that travel.
set -euo pipefail
cd "$(dirname "$0")/.."
py=python3; [ -x .venv/bin/python ] && py=.venv/bin/python  # the project's venv where there is one
cls_only=auto
case "${1:-}" in
  --classification-only) cls_only=1; shift ;;
  --with-cifar) cls_only=0; shift ;;
esac
if [ $cls_only = auto ]; then
  needs=$($py -m mcr2.paper --backgrounds-needed) || { echo "could not plan the missing records" >&2; exit 1; }
  if [ -z "$needs" ]; then cls_only=1; echo "no missing record needs background pictures: CIFAR-100 stays here"
  else cls_only=0; echo "missing records need: $needs"; fi
fi
dest=${1:-.gpudata}
packed=../shared/gpu
[ -f "$packed/unpack-data.sh" ] || { echo "no $packed/unpack-data.sh: the packed data lives in ../shared/gpu" >&2; exit 1; }
case "$dest" in  # inside the checkout: ignored by git, so it travels only where `carry` names it
  /*) ;;
  *) grep -qxF "/$dest/" .git/info/exclude 2>/dev/null || echo "/$dest/" >> .git/info/exclude ;;
esac
rm -rf "$dest" && mkdir -p "$dest"
cp "$packed/unpack-data.sh" "$dest/"
for f in "$packed"/data/*; do
  case "$(basename "$f")" in cifar*) [ $cls_only = 1 ] && continue ;; esac
  cp "$f" "$dest/"
done
[ -z "$(git status --porcelain --untracked-files=no -- mcr2 benchmarks tools)" ] \
  || echo "note: mcr2/, benchmarks/ or tools/ have uncommitted changes; source.tar holds HEAD only" >&2
git archive --format=tar -o "$dest/source.tar" HEAD -- . ':(exclude)results'
# pytest and what it imports (pure Python, ~1.2 MB packed), from this environment: the GPU machine's
# Python has none, and gpu_window.sh checks the CUDA-graph steps with tests/test_graphs.py.
$py - "$dest/pytest.tar.xz" <<'PY' || echo "note: pytest not packed; the window checks graphs with smoke runs" >&2
import importlib.metadata as md, pathlib, sys, tarfile
dists = ["pytest", "pluggy", "iniconfig", "packaging", "pygments"]
with tarfile.open(sys.argv[1], "w:xz") as tar:
    for name in dists:
        dist = md.distribution(name)
        for f in dist.files:
            if "__pycache__" not in f.parts and not str(f).startswith(".."):
                tar.add(dist.locate_file(f), arcname=str(f))
PY
git rev-parse HEAD > "$dest/source.commit"
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carried=$(du -sb "$dest" | cut -f1)
total=$((tree + carried))
printf 'travels: checkout %.1f MB + %s %.1f MB = %.1f MB of 67.1 MB (64 MiB)\n' \
  "$(echo "$tree/1000000" | bc -l)" "$dest" "$(echo "$carried/1000000" | bc -l)" "$(echo "$total/1000000" | bc -l)"
[ "$total" -le 67108864 ] || { echo "too large to travel: try --classification-only, or commit fewer records" >&2; exit 1; }
