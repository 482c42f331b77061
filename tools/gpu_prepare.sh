#!/usr/bin/env bash
# Make the folder that travels to a GPU machine with the checkout: the packed data, its unpack
# script, the committed code as source.tar (results/ left out: the records travel in the tree),
# pytest, and the notebook stack that executes chapters there with papermill (notebook.tar.xz).
#   bash tools/gpu_prepare.sh [--classification-only|--with-cifar] [--no-notebook] [DEST]   (DEST default: .gpudata)
# The CIFAR-100 pictures (39 of the 57 MB) go along only when a missing paper record needs them
# (`python -m mcr2.paper --backgrounds-needed`); MNIST and USPS (18 MB) serve classification and
# plain-MNIST segmentation. --classification-only leaves them out, --with-cifar takes them, whatever
# is missing. Checks that checkout + DEST fit the 64 MiB that travel.
set -euo pipefail
cd "$(dirname "$0")/.."
py=python3; [ -x .venv/bin/python ] && py=.venv/bin/python  # the project's venv where there is one
cls_only=auto; notebook=1
while [ $# -gt 0 ]; do
  case "$1" in
    --classification-only) cls_only=1; shift ;;
    --with-cifar) cls_only=0; shift ;;
    --no-notebook) notebook=0; shift ;;  # no chapter is executed in the window (saves ~10 MB)
    *) break ;;
  esac
done
if [ $cls_only = auto ]; then
  needs=$($py -m mcr2.paper --backgrounds-needed) || { echo "could not plan the missing records" >&2; exit 1; }
  if [ -z "$needs" ]; then cls_only=1; echo "no missing record needs background pictures: CIFAR-100 stays here"
  else cls_only=0; echo "missing records need: $needs"; fi
fi
dest=${1:-.gpudata}
# The notebook stack, for chapters executed by papermill on the GPU machine (tools/gpu_window.sh):
# papermill, jupytext, ipykernel, nbclient and what they need, with myst-nb and docutils alone (a
# chapter imports only myst_nb.glue, which needs IPython, nbformat and docutils, not Sphinx). The
# wheels are for the GPU machine's Python (MCR2_GPU_PYTHON, default 3.12), from PyPI, kept in a
# cache (MCR2_WHEEL_CACHE) once complete. What tools/gpu_site.txt lists stays here, and so do
# debugpy, jedi and parso (4.8 + 5.2 MB): ipykernel and IPython import them inside `try`, and a
# kernel starts without them (tests/test_gpu_tools.py executes a chapter so). The wheels are
# unpacked here, as pip would install them, into one archive to unpack there onto PYTHONPATH.
if [ $notebook = 1 ]; then
  gpu_py=${MCR2_GPU_PYTHON:-3.12}
  cache=${MCR2_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mcr2/gpu-wheels}/py$gpu_py
  want="papermill ipykernel nbclient jupytext; --no-deps myst-nb docutils"
  if [ "$(cat "$cache/.complete" 2>/dev/null)" != "$want" ]; then
    mkdir -p "$cache" && rm -f "$cache"/*.whl "$cache/.complete"
    wheels=(--only-binary=:all: --python-version "$gpu_py" --implementation cp --platform manylinux_2_28_x86_64
            --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$cache")
    if ! { $py -m pip download -q "${wheels[@]}" papermill ipykernel nbclient jupytext \
           && $py -m pip download -q --no-deps "${wheels[@]}" myst-nb docutils; } > "$cache/pip.log" 2>&1; then
      grep -v "^WARNING: Location" "$cache/pip.log" | tail -n 5 >&2
      echo "could not download the notebook wheels (papermill, ipykernel, nbclient, jupytext, myst-nb) for Python" \
           "$gpu_py from PyPI (log: $cache/pip.log). gpu_prepare.sh needs the registry once; the wheels are then" \
           "kept in $cache. --no-notebook leaves them out (the window then executes no chapter)." >&2
      exit 1
    fi
    echo "$want" > "$cache/.complete"
  fi
fi
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
if [ $notebook = 1 ]; then
  $py - "$cache" tools/gpu_site.txt "$dest/notebook.tar.xz" "$gpu_py" <<'PY'
import pathlib, re, shutil, sys, tarfile, tempfile, zipfile
cache, site, dest, version = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3]), sys.argv[4]
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
there = {norm(line.strip()) for line in site.read_text().splitlines() if line.strip() and not line.startswith("#")}
left = {"debugpy", "jedi", "parso"}  # imported inside try by ipykernel and IPython
wheels = sorted(cache.glob("*.whl"))
carried = [w for w in wheels if norm(w.name.split("-")[0]) not in there | left]
with tempfile.TemporaryDirectory() as tmp:
    root = pathlib.Path(tmp)
    for wheel in carried:
        with zipfile.ZipFile(wheel) as z:
            z.extractall(root)
    for data in root.glob("*.data"):  # purelib/platlib go beside the packages; scripts and share/ stay out
        for sub in ("purelib", "platlib"):  # (jupyter_client finds ipykernel's kernel without its spec file)
            for item in (data / sub).glob("*"):
                shutil.move(str(item), str(root / item.name))
        shutil.rmtree(data)
    with tarfile.open(dest, "w:xz") as tar:
        for item in sorted(root.iterdir()):
            tar.add(item, arcname=item.name)
print(f"notebook stack for Python {version}: {len(carried)} of {len(wheels)} wheels, {dest.stat().st_size / 1e6:.1f} MB "
      f"packed (the rest is on the GPU machine, or debugpy/jedi/parso)")
PY
fi
git rev-parse HEAD > "$dest/source.commit"
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
carried=$(du -sb "$dest" | cut -f1)
total=$((tree + carried))
printf 'travels: checkout %.1f MB + %s %.1f MB = %.1f MB of 67.1 MB (64 MiB)\n' \
  "$(echo "$tree/1000000" | bc -l)" "$dest" "$(echo "$carried/1000000" | bc -l)" "$(echo "$total/1000000" | bc -l)"
[ "$total" -le 67108864 ] || { echo "too large to travel: try --classification-only or --no-notebook, or commit fewer records" >&2; exit 1; }
