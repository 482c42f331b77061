# Two commands: `make test` and `make book`. Both create/update the local venv from the project's
# own files (pyproject.toml + requirements-pins.txt) first. Also: `make chapter NAME=...` (one
# chapter, then the HTML), `make lab` (JupyterLab on book/), `make bench`.
PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
# Profile of the executed chapters: auto (each experiment at the paper profile where its records
# are committed in results/paper or CUDA is here, else smoke), smoke (CPU, minutes) or paper.
# Empty = $MCR2_PROFILE, else auto.
PROFILE  ?=
NAME     ?=
MATHJAX_VERSION := 3.2.2
MATHJAX  := _vendor/mathjax/tex-chtml.js

.PHONY: test book chapter lab venv mathjax bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements-pins.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements-pins.txt -e '.[book,test]'
	touch $@

# MathJax is served from the built book itself (no CDN): fetched once from the npm registry.
mathjax: $(MATHJAX)
$(MATHJAX):
	rm -rf _vendor/mathjax _vendor/tmp && mkdir -p _vendor/tmp
	cd _vendor/tmp && npm pack --silent mathjax@$(MATHJAX_VERSION) >/dev/null && tar xzf mathjax-$(MATHJAX_VERSION).tgz
	mv _vendor/tmp/package/es5 _vendor/mathjax && rm -rf _vendor/tmp
	test -f $@

# Unit tests, every chapter executed on the smoke profile, the book built with warnings as
# errors and one page rendered in headless Chromium. Exit code 5 (no tests collected) fails too.
test: $(STAMP) $(MATHJAX)
	$(BIN)/python -m pytest -ra --durations=15 tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# Execute every chapter with papermill, then build the HTML into _build/html.
book: $(STAMP) $(MATHJAX)
	$(BIN)/python tools/book.py build $(if $(PROFILE),--profile $(PROFILE))

# One chapter alone, e.g. `make chapter NAME=06_masking PROFILE=smoke`, then the HTML rebuilt
# (once every chapter has been executed: `make book` does that the first time).
chapter: $(STAMP) $(MATHJAX)
	@test -n "$(NAME)" || { echo "make chapter needs NAME=..., e.g. make chapter NAME=06_masking"; exit 2; }
	$(BIN)/python tools/book.py execute $(NAME) --html $(if $(PROFILE),--profile $(PROFILE))

# JupyterLab on book/: the .py chapters open as notebooks (jupytext). LAB_ARGS go to jupyter-lab.
LAB_ARGS ?=
lab: $(STAMP)
	$(BIN)/python tools/book.py lab $(LAB_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_loss.py

clean:
	rm -rf _build
