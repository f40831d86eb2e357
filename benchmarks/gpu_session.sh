#!/usr/bin/env bash
# The GPU measurements still owed (docs/results.md §4, docs/benchmarks.md, docs/gan.md), as stages sized for one lent
# H100/H200 call each (a device session has 15 minutes in all, the machine's start included). Run from the repo root:
#
#   python benchmarks/pack_dataset.py ../shared/data/pbc-dev .carry/pbc224 --size 224 \
#       --split-file runs/accuracy-cpu/splits.json              # once, here: 42 MiB, travels with `carry: [".carry"]`
#   bash benchmarks/gpu_session.sh check accuracy              # ~6 min on an H200: one call
#   bash benchmarks/gpu_session.sh b7                          # ~7 min: a second call, or the next session
#   bash benchmarks/gpu_session.sh throughput                  # ~5 min: the next session
#   bash benchmarks/gpu_session.sh gan                         # one seed of the rare-class experiment: its own session
#   python benchmarks/pack_dataset.py ../shared/data/neutro-vac-dev .carry/vac360 --size 360   # once: ~16 MiB
#   bash benchmarks/gpu_session.sh vacuoles                    # the GAN at 128 px on neutro-vac-dev's folds; resumes:
#                                                              # call it again until EXP/results.md is in the tarball
#
# Every stage writes its log and a tarball of its results (tables, metrics, logs; no checkpoints) under $OUT (the
# device tool brings that folder back), so a stage cut off by the time limit still returns what it finished.
# SMOKE=1 runs the same commands at toy size on this machine's CPU, to check the plumbing before spending GPU time.
set -euo pipefail

PACK=${PACK:-.carry/pbc224}
VAC_PACK=${VAC_PACK:-.carry/vac360}
OUT=${OUT:-/tmp/neunn-gpu-session}
RUNS=${RUNS:-/tmp/neunn-gpu-runs}
SMOKE=${SMOKE:-0}
mkdir -p "$OUT" "$RUNS"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

if [[ $SMOKE == 1 ]]; then  # toy sizes on the CPU: the same code paths, in a couple of minutes
    DEVICE=cpu; COMPILE=false; ACC_SET=(img_size=32 epochs=1 workers=2); B7_SET=(model=resnet10t img_size=32 epochs=1 batch_size=32)
    TP_ARGS=(--preset cpu-small --batch-size 32 --epochs 2 --steps 3 --set img_size=32)
    GAN_ARGS=(--seeds 0 --preset cpu-small img_size=32 epochs=1 --gan-preset gan-cpu gan.steps=20 gan.resolution=32 --no-gan-eval)
    VAC_ARGS=(img_size=32 epochs=1 --n-synthetic 10 --gan-preset gan-cpu gan.steps=20 gan.resolution=32 gan.min_images=5)
    VAC_LIMIT=600
else
    DEVICE=cuda; COMPILE=true; ACC_SET=(img_size=224 epochs=60 workers=8); B7_SET=(img_size=224 epochs=40 batch_size=64)
    TP_ARGS=(--preset neunn-b7 --batch-size 64 --epochs 3 --compile)
    GAN_ARGS=(--seeds "${GAN_SEED:-0}" --preset cpu-small model=efficientnet_b0 img_size=224
              epochs=30 batch_size=64 device=cuda --gan-preset gan-128 gan.device=cuda)
    # The CPU arms of docs/results.md §6 (crop 0.5 at 128 px, 15 epochs), with the GAN at the paper's 128 px.
    VAC_ARGS=(img_size=128 crop=0.5 epochs=15 device=cuda workers=8 --n-synthetic 100 --gan-preset gan-128 gan.device=cuda)
    VAC_LIMIT=${VAC_LIMIT:-540}  # stop inside one call's 10 minutes; the next call resumes the experiment
fi

pack_results() {  # pack_results NAME FOLDER...: tables, metrics and logs of the folders' runs, without weights
    (cd "$RUNS" && find "${@:2}" \( -path '*/synthetic/*' -o -path '*/painted/*' -o -path '*/runs/*/splits.json' \) -prune -o \
        \( -name '*.md' -o -name '*.json' -o -name '*.jsonl' -o -name '*.yaml' -o -name '*.html' -o -name '*.png' \) \
        -size -4M -print0 | tar czf "$OUT/$1.tgz" --null -T -)
}

stage_check() {  # the software and the GPU code paths: placement, bf16, channels_last, compile, evaluate, predict, export
    nvidia-smi -L || true
    $PY -c "import torch, timm, onnxruntime; print('torch', torch.__version__, 'timm', timm.__version__, 'ort', \
onnxruntime.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name(0))"
    local pytest_cmd=($PY -m pytest -q -p no:cacheprovider -x tests/test_train.py tests/test_training_data.py
                      tests/test_evaluate_predict.py tests/test_distributed.py tests/test_predict_distributed.py
                      tests/test_gan_train.py tests/test_ensemble.py)
    [[ $SMOKE == 1 ]] || "${pytest_cmd[@]}"  # device=auto: on the GPU machine these tests run on its GPU
    local run=$RUNS/check
    rm -rf "$run"
    $PY -m neunn train "$PACK/data" --out "$run" --split-file "$PACK/splits.json" --preset cpu-small \
        device=$DEVICE epochs=2 img_size=64 compile=$COMPILE
    $PY -m neunn evaluate "$run" --data "$PACK/data" --device $DEVICE
    $PY -m neunn predict "$run" "$PACK/data/basophil" --out "$run/basophil.csv" --device $DEVICE
    $PY -m neunn export "$run"
    pack_results check check
}

stage_accuracy() {  # issue 3: cpu-robust and its textbook baseline at GPU size
    $PY benchmarks/accuracy.py "$PACK/data" --out "$RUNS/acc-robust" --split-file "$PACK/splits.json" \
        --presets cpu-robust --tta --set device=$DEVICE "${ACC_SET[@]}"
    pack_results accuracy acc-robust
}

stage_b7() {  # issue 3: the paper's B7 from scratch, the neunn-b7 recipe against textbook B7 at the same budget
    $PY benchmarks/accuracy.py "$PACK/data" --out "$RUNS/acc-b7" --split-file "$PACK/splits.json" \
        --presets neunn-b7 --tta --set device=$DEVICE "${B7_SET[@]}"
    pack_results b7 acc-b7
}

stage_throughput() {  # issue 6: end-to-end neunn train against model-only, B7 at 360 px (the pack is upsampled: speed only)
    $PY benchmarks/train_throughput.py "$PACK/data" "${TP_ARGS[@]}" --json "$OUT/train_throughput.json"
}

stage_gan() {  # issue 4: the rare-class experiment at 128 px, one seed per call
    $PY -m neunn experiment rare-class "$PACK/data" --class basophil --keep 100 --out "$RUNS/exp-basophil100" \
        --split-file "$PACK/splits.json" "${GAN_ARGS[@]}"
    pack_results gan exp-basophil100
}

stage_vacuoles() {  # issue 17 (2): the rare-class experiment on neutro-vac-dev's 5 folds, its GAN arm at 128 px
    [[ -d $VAC_PACK/data ]] || { echo "No pack at $VAC_PACK: run benchmarks/pack_dataset.py (top of $0)." >&2; return 2; }
    timeout "$VAC_LIMIT" $PY -m neunn experiment rare-class "$VAC_PACK/data" --class vacuolated --folds 5 \
        --out "$RUNS/exp-vac" --arms a c d --paste-from normal --target-sensitivity 0.9 --tta \
        --preset cpu-robust-160 "${VAC_ARGS[@]}" || echo "stopped at the time limit: call the stage again to resume"
    pack_results vacuoles exp-vac
}

[[ $# -gt 0 ]] || { echo "usage: $0 check|accuracy|b7|throughput|gan|vacuoles ..." >&2; exit 2; }
[[ -f $PACK/splits.json || " $* " == " vacuoles " ]] || {
    echo "No pack at $PACK: run benchmarks/pack_dataset.py first (see the top of $0)." >&2; exit 2; }
for stage in "$@"; do
    declare -F "stage_$stage" >/dev/null || { echo "Unknown stage '$stage'; use check, accuracy, b7, throughput, gan or vacuoles." >&2; exit 2; }
    echo "=== $stage ($(date -u +%H:%M:%S))"
    SECONDS=0
    "stage_$stage" 2>&1 | tee "$OUT/$stage.log"
    echo "=== $stage done in ${SECONDS}s" | tee -a "$OUT/$stage.log"
done
