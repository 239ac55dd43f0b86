#!/usr/bin/env bash
# The CUDA checks, for a machine with an NVIDIA GPU (CI has none), in one run:
#   1. recipes trained on the GPU in the background, each in its own process (the CPU recipes
#      unchanged, device=cuda): RECIPES, default the patch networks "hardnet_sos hardnet8_pca
#      hardnet_dog hardnet_dog_long"; also "gem" and "dolg" (GEM_STEPS / DOLG_STEPS steps);
#      weights and logs land in $OUT;
#   2. every device-parametrised test on cuda (pytest -k cuda; PYTEST_MARK selects markers);
#   3. benchmarks/global.py and benchmarks/matching.py (c) on the GPU (ratios to the anchors, and the
#      bfloat16 cosine to float32); BENCH=none skips them.
# lookalike must be importable (pip install -e . or PYTHONPATH=src). Usage:
#   OUT=/tmp/lookalike-cuda bash benchmarks/cuda_check.sh
# A dry run of the plumbing on a CPU machine: DEVICE=cpu STEPS=2 STEPS_LONG=2 TESTS=none bash ...
# PACK=1 packs the logs into logs.tar.gz, stores weights files over 15 MB as float16 and splits them
# into 15 MB parts (a transfer limit of the team's GPU tool: cat NAME.part* > NAME restores one).
set -uo pipefail
OUT=${OUT:-/tmp/lookalike-cuda}
DEVICE=${DEVICE:-cuda}
TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-360}
STEPS_LONG=${STEPS_LONG:-300}
TESTS=${TESTS:-cuda}
PYTEST_MARK=${PYTEST_MARK:-not slow and not data}
RECIPES=${RECIPES:-hardnet_sos hardnet8_pca hardnet_dog hardnet_dog_long}
BENCH=${BENCH:-all}
PY=${PYTHON:-python3}
RUNS=$(mktemp -d)
mkdir -p "$OUT"
export MPLBACKEND=Agg PYTHONUNBUFFERED=1
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/summary.txt"; }

"$PY" - <<'EOF' 2>&1 | tee -a "$OUT/summary.txt"
import torch, lookalike
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
print("torch", torch.__version__, "lookalike", lookalike.__version__, gpu)
EOF

train() {  # train NAME CONFIG [OVERRIDES...]: one recipe on $DEVICE, weights copied to $OUT/NAME.safetensors
    local name=$1 config=$2
    shift 2
    local steps=()  # STEPS (a dry run) overrides every recipe's steps
    [[ -n "${STEPS:-}" ]] && steps=("steps=$STEPS")
    (
        start=$(date +%s)
        timeout "$TRAIN_TIMEOUT" "$PY" -m lookalike.cli.main train --config "$config" --quiet \
            "device=$DEVICE" threads=4 "out_dir=$RUNS/$name" "$@" "${steps[@]}" \
            >"$RUNS/$name.log" 2>&1
        code=$?
        weights=$(find "$RUNS/$name" -name weights.safetensors | head -1)
        [[ -n "$weights" ]] && cp "$weights" "$OUT/$name.safetensors"
        echo "train $name: exit $code in $(($(date +%s) - start)) s" >>"$RUNS/$name.log"
    ) &
}

log "training in the background on $DEVICE: $RECIPES"
for recipe in $RECIPES; do
    case $recipe in
    hardnet_sos) train hardnet_sos configs/hardnet_sos_bundled.yaml ;;
    hardnet8_pca) train hardnet8_pca configs/hardnet8_pca_bundled.yaml ;;
    hardnet_dog) train hardnet_dog configs/hardnet_dog_bundled.yaml ;;
    hardnet_dog_long) train hardnet_dog_long configs/hardnet_dog_bundled.yaml "steps=$STEPS_LONG" ;;
    gem) train gem configs/gem_bundled.yaml "steps=${GEM_STEPS:-800}" checkpoint_every=0 ;;
    dolg) train dolg configs/dolg_bundled.yaml "steps=${DOLG_STEPS:-250}" checkpoint_every=0 ;;
    *) log "unknown recipe $recipe" ;;
    esac
done

if [[ "$TESTS" != none ]]; then
    log "tests: pytest -k $TESTS"
    timeout "${TEST_TIMEOUT:-200}" "$PY" -m pytest tests -q -k "$TESTS" -m "$PYTEST_MARK" -p no:cacheprovider \
        --continue-on-collection-errors -n "${TEST_WORKERS:-6}" >"$OUT/tests.log" 2>&1
    log "tests exit $?: $(tail -1 "$OUT/tests.log")"
fi

wait
for f in "$RUNS"/*.log; do
    echo "== $f" >>"$OUT/train.log"
    tail -40 "$f" >>"$OUT/train.log"
done
grep -h "^train " "$RUNS"/*.log | tee -a "$OUT/summary.txt"

if [[ "$BENCH" != none ]]; then
log "benchmarks on $DEVICE"
timeout "${BENCH_TIMEOUT:-110}" "$PY" benchmarks/global.py --device "$DEVICE" --batch "${BATCH:-128}" \
    --bf16 --rounds 3 --threads 4 >>"$OUT/bench.log" 2>&1
timeout "${BENCH_TIMEOUT:-110}" "$PY" benchmarks/matching.py --only c --device "$DEVICE" \
    --rounds 3 --threads 4 >>"$OUT/bench.log" 2>&1
fi
log "done"
if [[ -n "${PACK:-}" ]]; then  # the device tool brings back at most 8 files of at most 16 MiB
    cd "$OUT" || exit 1
    tar czf logs.tar.gz ./*.txt ./*.log && rm -f ./*.txt ./*.log
    for f in *.safetensors; do
        if [[ $(stat -c %s "$f") -gt 15000000 ]]; then
            "$PY" -c "import sys; from lookalike.core.weights import store_float16 as h; h(sys.argv[1])" "$f" && split -b 15000000 -d "$f" "$f.part" && rm "$f"
        fi
    done
fi
