# The pipeline as make targets. Every artifact is a file target made by one ekv tool, with the
# tool, its inputs and its options as prerequisites: `make` re-runs only what changed and, after
# a failure, resumes at the step that failed (tools write atomically; .DELETE_ON_ERROR drops a
# half-written report). scripts/run-pipeline.sh sets up, builds and fetches, then runs this.
#
#   make                   the main job: calibrate, select RoPE, J-LRD at 25 %, export, decode check,
#                          fidelity report (out/fidelity.json) and the report (out/report.md)
#   make compare           the comparison tables: RoPE methods, J-LRD variants (scripts/compare-*.sh)
#   make ablation          the fidelity ablation at 50/25/12.5 % (scripts/compare-export.sh, ~1 h)
#   make compare-recovery  which starting point wins once trained: the export, the paper's plain
#                          configuration and KV-Latent-style, each recovered with the preset's
#                          [compare-recovery] budget (scripts/compare-recovery.sh, ~45 min)
#   make recover           the full CPU recovery of the main job's export (ekv-uptrain, [recover] of the
#                          preset, about 45 minutes on 2 cores) and its fidelity (out/fidelity-recovered.json)
#   make TRAIN_TEXT=FILE   recover on another training text (default: the corpora's train.txt)
#   make curve             held-out KL, ppl and top-1 against the cache ratio (10-75 %), the preset's
#                          J-LRD and the paper's, training-free and after the short recovery
#                          (scripts/cache-curve.py: OUT/curve/curve.md, .csv, .png; CURVE_RATIOS=0.1,0.5
#                          the ratios, CURVE_RECOVER=0.25 the ones recovered, CURVE_RECOVER= all of them)
#   make fit KL=0.5        the smallest cache ratio whose KL on the calibration corpus's held-out
#                          windows is at most 0.5, by bisection, r growing with the ratio, the choice
#                          measured in the preset's layout too (scripts/fit-cache.py: OUT/fit-kl0.5.md;
#                          FIT_R=preset keeps the preset's r and searches the latent alone)
#   make OUT=dir R=8 CACHE=0.5     another folder or setting (an option change re-runs its step): R=
#                          the elite chunks per KV head, CACHE= the cache ratio (the preset's kind:
#                          one latent rank for all layers, or per-layer ranks for a budget preset)
#   make -j2 SHARDS=4 ROPE_SHARDS=2  calibration in 4 slices of the sample and the RoPE search in 2
#                          layer ranges, each its own target (run side by side with -j), merged
#                          (scripts/slurm-shards.sh runs the same shards as Slurm array jobs)
#   make PRESET=configs/smollm2-135m-50.toml OUT=out-50     another preset
#   make PRESET=configs/qwen2.5-coder-0.5b-25.toml OUT=out-qwen   the second family (Qwen2.5-Coder-0.5B);
#                          its preset names its model, which is fetched on first use
#
# The model and corpora come from scripts/fetch-model.sh and scripts/make-corpora.sh (cached).
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DELETE_ON_ERROR:
.SUFFIXES:

OUT ?= out
BUILD ?= build
BIN := $(BUILD)/apps
# The main job's settings: a preset (configs/) that every tool reads with --config; R= and
# CACHE= override its [jlrd] values (empty: the preset's).
PRESET ?= configs/smollm2-135m-25.toml
ifeq ($(wildcard $(PRESET)),)
$(error PRESET=$(PRESET): no such preset file (see configs/))
endif
# The preset names its model on a comment line "# fetch-model: NAME" (scripts/fetch-model.sh
# --list); presets without one are the default model's.
MODEL_NAME ?= $(or $(shell sed -n 's/^# fetch-model: *//p' $(PRESET)),smollm2-135m)
MODEL := $(shell scripts/fetch-model.sh $(MODEL_NAME) 2>/dev/null)
CORPORA := $(shell scripts/make-corpora.sh 2>/dev/null)
# The recovery's training text (ekv-uptrain --text): never the calibration or evaluation text.
TRAIN_TEXT ?= $(CORPORA)/train.txt
ifeq ($(MODEL),)
$(error scripts/fetch-model.sh $(MODEL_NAME) printed no model path; run it by hand to see why)
endif

# The formats of stock engines that the recovered model is also written in (docs/formats.md,
# "Engine formats"): the preset lists them on a comment line "# engine-formats: gguf hf-deepseek"
# (its selection must be one they hold: ekv-select-rope --layout); none by default.
ENGINE_FORMATS ?= $(shell sed -n 's/^# engine-formats: *//p' $(PRESET))
ENGINE_TARGETS := $(if $(filter gguf,$(ENGINE_FORMATS)),$(OUT)/model-uptrained.gguf) \
                  $(if $(filter hf-deepseek,$(ENGINE_FORMATS)),$(OUT)/model-uptrained-deepseek/config.json)

R ?=
CACHE ?=
BUDGET ?=
SHARDS ?= 1
ROPE_SHARDS ?= 1
# Empty: the preset's [check.ppl] / [check.compare] max-windows.
PPL_WINDOWS ?=
FIDELITY_WINDOWS ?=

CALIB_ARGS := --config $(PRESET)
PRESET_LAYOUT := $(shell sed -n '/^\[select-rope\]/,/^\[/{s/^layout *= *"\(.*\)"/\1/p;}' $(PRESET))
ROPE_ARGS := --config $(PRESET) $(if $(and $(R),$(filter-out free,$(or $(PRESET_LAYOUT),free))),--r-max $(R))
# CACHE= overrides the preset's cache ratio in the preset's own kind (--cache-ratio, one rank for every
# layer, or --budget, ranks per layer); BUDGET= is CACHE= for a budget preset (ekv-jlrd takes one
# kind: a preset's --cache-ratio cannot be swapped for a --budget on the command line). An engine
# layout's selection is made for its r: R= re-runs the selection too.
PRESET_BUDGET := $(shell sed -n '/^\[jlrd\]/,/^\[/{s/^budget *= *//p;}' $(PRESET))
ifneq ($(BUDGET),)
ifeq ($(PRESET_BUDGET),)
$(error BUDGET=$(BUDGET): $(PRESET) sets one cache ratio for every layer (cache-ratio), not a budget; use CACHE=$(BUDGET))
endif
CACHE := $(BUDGET)
endif
JLRD_ARGS := $(strip --config $(PRESET) $(if $(R),--r $(R)) \
  $(if $(CACHE),$(if $(PRESET_BUDGET),--budget $(CACHE),--cache-ratio $(CACHE))))

# A step's options live in $(OUT)/.make/NAME.args, rewritten only when they change, so a new
# option re-runs that step (and what depends on it) and nothing else. They are written when
# make reads this file, so `make -n R=8` records R=8 as well.
define options
$(shell mkdir -p $(OUT)/.make && f=$(OUT)/.make/$(1).args && \
  { [ -f $$f ] && [ "$$(cat $$f)" = "$(strip $(2))" ] || echo "$(strip $(2))" > $$f; } && echo $$f)
endef
# A digest of one [section] of the preset: editing [jlrd] re-runs J-LRD, not the calibration.
# Headers as TOML allows them: "[ jlrd ]", a trailing comment, a byte-order mark before the first.
section = $(shell sed -n '/^\(\xef\xbb\xbf\)\?[[:space:]]*\[[[:space:]]*$(1)[[:space:]]*\]/,/^[[:space:]]*\[/{/^[[:space:]]*[^#[[:space:]]/p;}' \
  $(PRESET) | sha256sum | cut -c1-16)
CALIB_OPTIONS := $(call options,calib,$(CALIB_ARGS) $(call section,calibrate) shards=$(SHARDS))
ROPE_OPTIONS := $(call options,rope,$(ROPE_ARGS) $(call section,select-rope) shards=$(ROPE_SHARDS))
JLRD_OPTIONS := $(call options,jlrd,$(JLRD_ARGS) $(call section,jlrd))
UPTRAIN_OPTIONS := $(call options,uptrain,$(call section,uptrain))
RECOVER_OPTIONS := $(call options,recover,$(call section,recover))
CHECK_ARGS := --config $(PRESET)
PPL_ARGS := $(CHECK_ARGS) $(if $(PPL_WINDOWS),--max-windows $(PPL_WINDOWS))
COMPARE_ARGS := $(CHECK_ARGS) $(if $(FIDELITY_WINDOWS),--max-windows $(FIDELITY_WINDOWS))
CHECK_OPTIONS := $(call options,check,$(PPL_ARGS) $(COMPARE_ARGS) $(call section,check.ppl) $(call section,check.compare) \
                   $(call section,check.decode))

LOG = 2> >(tee $(OUT)/logs/$(1).log >&2)

.PHONY: all compare ablation recover compare-recovery curve fit
all: $(OUT)/info.txt $(OUT)/ppl-original.txt $(OUT)/decode.txt $(OUT)/fidelity.json $(OUT)/decode-uptrained.txt \
     $(OUT)/fidelity-uptrained.json $(ENGINE_TARGETS) $(OUT)/report.md
	@echo "== fidelity report: $(OUT)/fidelity.json; the report: $(OUT)/report.md" >&2

$(OUT)/logs:
	mkdir -p $@

$(OUT)/info.txt: $(BIN)/ekv-info $(MODEL) | $(OUT)/logs
	$(BIN)/ekv-info $(MODEL) > $@ $(call LOG,info)

$(OUT)/ppl-original.txt: $(BIN)/ekv-check $(MODEL) $(CORPORA)/eval.txt $(CHECK_OPTIONS) | $(OUT)/logs
	$(BIN)/ekv-check ppl --model $(MODEL) --text $(CORPORA)/eval.txt $(PPL_ARGS) > $@ $(call LOG,ppl)

ifeq ($(SHARDS),1)
$(OUT)/calib.h5: $(BIN)/ekv-calibrate $(MODEL) $(CORPORA)/calib.txt $(CALIB_OPTIONS) | $(OUT)/logs
	$(BIN)/ekv-calibrate --model $(MODEL) --text $(CORPORA)/calib.txt $(CALIB_ARGS) -o $@ $(call LOG,calibrate)
else
# Sharded: slice I of the one sample (--shard I/N) per target; the merge is the unsharded file.
CALIB_SLICES := $(foreach i,$(shell seq 0 $$(($(SHARDS) - 1))),$(OUT)/shards/calib-$(i)-of-$(SHARDS).h5)
$(OUT)/shards/calib-%-of-$(SHARDS).h5: $(BIN)/ekv-calibrate $(MODEL) $(CORPORA)/calib.txt $(CALIB_OPTIONS) | $(OUT)/logs
	mkdir -p $(@D)
	$(BIN)/ekv-calibrate --model $(MODEL) --text $(CORPORA)/calib.txt $(CALIB_ARGS) --shard $*/$(SHARDS) -o $@ \
	  $(call LOG,calibrate-$*)
$(OUT)/calib.h5: $(CALIB_SLICES)
	$(BIN)/ekv-calibrate merge $(CALIB_SLICES) -o $@ $(call LOG,calibrate-merge)
endif

ifeq ($(ROPE_SHARDS),1)
$(OUT)/rope-elite-l1.h5: $(BIN)/ekv-select-rope $(OUT)/calib.h5 $(ROPE_OPTIONS) | $(OUT)/logs
	$(BIN)/ekv-select-rope --model $(MODEL) --calib $(OUT)/calib.h5 $(ROPE_ARGS) -o $@ $(call LOG,select-rope)
else
# Sharded by layer ranges a:b (scripts/layer-ranges.sh splits the model's layers evenly).
ROPE_RANGES := $(shell scripts/layer-ranges.sh $(MODEL) $(ROPE_SHARDS) $(BIN))
ifeq ($(ROPE_RANGES),)
$(error ROPE_SHARDS=$(ROPE_SHARDS): scripts/layer-ranges.sh printed no layer ranges (are the tools built? scripts/build.sh --tools))
endif
ROPE_PARTS := $(foreach r,$(ROPE_RANGES),$(OUT)/shards/rope-$(subst :,-,$(r)).h5)
$(OUT)/shards/rope-%.h5: $(BIN)/ekv-select-rope $(OUT)/calib.h5 $(ROPE_OPTIONS) | $(OUT)/logs
	mkdir -p $(@D)
	$(BIN)/ekv-select-rope --model $(MODEL) --calib $(OUT)/calib.h5 $(ROPE_ARGS) --layers $(subst -,:,$*) -o $@ \
	  $(call LOG,select-rope-$*)
$(OUT)/rope-elite-l1.h5: $(ROPE_PARTS)
	$(BIN)/ekv-select-rope merge $(ROPE_PARTS) -o $@ $(call LOG,select-rope-merge)
endif

$(OUT)/jlrd.h5: $(BIN)/ekv-jlrd $(OUT)/rope-elite-l1.h5 $(OUT)/calib.h5 $(JLRD_OPTIONS) | $(OUT)/logs
	$(BIN)/ekv-jlrd --model $(MODEL) --rope $(OUT)/rope-elite-l1.h5 --calib $(OUT)/calib.h5 $(JLRD_ARGS) -o $@ \
	  $(call LOG,jlrd)

# The export is a folder, replaced atomically; its config.json stands for it.
$(OUT)/model-elitekv/config.json: $(BIN)/ekv-export $(OUT)/jlrd.h5 $(OUT)/rope-elite-l1.h5 | $(OUT)/logs
	$(BIN)/ekv-export --model $(MODEL) --rope $(OUT)/rope-elite-l1.h5 --jlrd $(OUT)/jlrd.h5 -o $(OUT)/model-elitekv \
	  $(call LOG,export)

$(OUT)/decode.txt: $(BIN)/ekv-check $(OUT)/model-elitekv/config.json $(CHECK_OPTIONS) | $(OUT)/logs
	$(BIN)/ekv-check decode --compressed $(OUT)/model-elitekv --model $(MODEL) --text $(CORPORA)/eval.txt \
	  $(CHECK_ARGS) > $@ $(call LOG,decode)

$(OUT)/fidelity.json: $(BIN)/ekv-check $(OUT)/model-elitekv/config.json $(CORPORA)/eval.txt $(CHECK_OPTIONS) | $(OUT)/logs
	$(BIN)/ekv-check compare --model $(MODEL) --compressed $(OUT)/model-elitekv --text $(CORPORA)/eval.txt \
	  $(COMPARE_ARGS) -o $@ > $(OUT)/fidelity.txt $(call LOG,compare)

# Recovery (ekv-uptrain, Python): distillation from the original on the training corpus. The main
# job runs the preset's short [uptrain] stage; `make recover` the full CPU one ([recover]).
UPTRAIN := $(BIN)/ekv-uptrain $(wildcard python/elitekv/uptrain/*.py) python/elitekv/modeling_elitekv.py

$(OUT)/model-uptrained/config.json: $(UPTRAIN) $(OUT)/model-elitekv/config.json $(TRAIN_TEXT) \
                                    $(UPTRAIN_OPTIONS) | $(OUT)/logs
	$(BIN)/ekv-uptrain --config $(PRESET) --export $(OUT)/model-elitekv --model $(MODEL) \
	  --text $(TRAIN_TEXT) -o $(OUT)/model-uptrained $(call LOG,uptrain)

$(OUT)/model-recovered/config.json: $(UPTRAIN) $(OUT)/model-elitekv/config.json $(TRAIN_TEXT) \
                                    $(RECOVER_OPTIONS) | $(OUT)/logs
	$(BIN)/ekv-uptrain --config $(PRESET) --config-section recover --export $(OUT)/model-elitekv --model $(MODEL) \
	  --text $(TRAIN_TEXT) -o $(OUT)/model-recovered $(call LOG,recover)

$(OUT)/decode-%.txt: $(BIN)/ekv-check $(OUT)/model-%/config.json $(CHECK_OPTIONS) | $(OUT)/logs
	$(BIN)/ekv-check decode --compressed $(OUT)/model-$* --model $(MODEL) --text $(CORPORA)/eval.txt \
	  $(CHECK_ARGS) > $@ $(call LOG,decode-$*)

$(OUT)/fidelity-%.json: $(BIN)/ekv-check $(OUT)/model-%/config.json $(CORPORA)/eval.txt $(CHECK_OPTIONS) | $(OUT)/logs
	$(BIN)/ekv-check compare --model $(MODEL) --compressed $(OUT)/model-$* --text $(CORPORA)/eval.txt \
	  $(COMPARE_ARGS) -o $@ > $(OUT)/fidelity-$*.txt $(call LOG,compare-$*)

# An export (training-free or recovered) in an engine's format: llama.cpp's deepseek2 GGUF, and
# transformers' DeepseekV3 folder (no remote code). Exact: the peer test runs both engines on them.
$(OUT)/model-%.gguf: $(BIN)/ekv-export $(OUT)/model-%/config.json | $(OUT)/logs
	$(BIN)/ekv-export --config $(PRESET) --model $(MODEL) --compressed $(OUT)/model-$* --format gguf -o $@ \
	  > $(OUT)/logs/gguf-$*.txt $(call LOG,gguf-$*)

$(OUT)/model-%-deepseek/config.json: $(BIN)/ekv-export $(OUT)/model-%/config.json | $(OUT)/logs
	$(BIN)/ekv-export --config $(PRESET) --model $(MODEL) --compressed $(OUT)/model-$* --format hf-deepseek \
	  -o $(OUT)/model-$*-deepseek > $(OUT)/logs/deepseek-$*.txt $(call LOG,deepseek-$*)

recover: $(OUT)/decode-recovered.txt $(OUT)/fidelity-recovered.json
	$(PYTHON) scripts/make-report.py $(OUT) --preset $(PRESET)

compare: $(OUT)/calib.h5 $(OUT)/rope-elite-l1.h5
	scripts/compare-rope.sh $(OUT) $(call LOG,compare-rope)
	scripts/compare-jlrd.sh $(OUT) $(call LOG,compare-jlrd)

ablation: $(OUT)/calib.h5 $(OUT)/rope-elite-l1.h5
	scripts/compare-export.sh $(OUT) $(call LOG,compare-export)

compare-recovery: $(OUT)/model-elitekv/config.json $(OUT)/fidelity.json
	PRESET=$(PRESET) scripts/compare-recovery.sh $(OUT) $(call LOG,compare-recovery)

# The report a person reads: tables, the per-layer figure, the elite heat map, the commands.
PYTHON ?= .venv/bin/python

# Choosing a cache: the curve a user reads, and the smallest ratio for a KL they accept.
CURVE_RATIOS ?=
CURVE_CONFIGS ?= pipeline,paper
CURVE_RECOVER ?= 0.1,0.25,0.5,0.75# of the ratios, those recovered: each costs the short recovery (~4 min here)
TOOLS_ARGS = --out $(OUT) --preset $(PRESET) --bin $(BIN) --model $(MODEL) --corpora $(CORPORA)
curve: $(OUT)/calib.h5 $(BIN)/ekv-select-rope $(BIN)/ekv-jlrd $(BIN)/ekv-export $(BIN)/ekv-check $(UPTRAIN)
	$(PYTHON) scripts/cache-curve.py $(TOOLS_ARGS) --configs $(CURVE_CONFIGS) --recover --train-text $(TRAIN_TEXT) \
	  $(if $(CURVE_RATIOS),--ratios $(CURVE_RATIOS)) $(if $(CURVE_RECOVER),--recover-ratios $(CURVE_RECOVER)) \
	  $(call LOG,curve)

KL ?=
FIT_R ?= grow# grow: r follows the ratio (then the choice in the preset's layout); preset: the preset's r
fit: $(OUT)/calib.h5 $(if $(filter preset,$(FIT_R)),$(OUT)/rope-elite-l1.h5) $(BIN)/ekv-select-rope $(BIN)/ekv-jlrd \
     $(BIN)/ekv-export $(BIN)/ekv-check
	$(if $(KL),,$(error make fit needs KL=x, the largest held-out KL accepted, e.g. make fit KL=0.5))
	$(PYTHON) scripts/fit-cache.py $(TOOLS_ARGS) --kl $(KL) --r-rule $(FIT_R) $(call LOG,fit)
$(OUT)/rope-elite.png: scripts/plot-rope.py $(OUT)/rope-elite-l1.h5 $(OUT)/fidelity.json
	$(PYTHON) scripts/plot-rope.py $(OUT)/rope-elite-l1.h5 \
	  --r $$($(PYTHON) -c 'import json,sys; print(json.load(open(sys.argv[1]))["r"])' $(OUT)/fidelity.json) -o $@

$(OUT)/report.md: scripts/make-report.py $(OUT)/fidelity.json $(OUT)/decode.txt $(OUT)/rope-elite.png $(PRESET) \
                  $(OUT)/fidelity-uptrained.json $(OUT)/decode-uptrained.txt $(ENGINE_TARGETS)
	$(PYTHON) scripts/make-report.py $(OUT) --preset $(PRESET)
