#!/usr/bin/env bash
# The GPU check of `fgclip-doctor live` (run when a GPU machine is lent; CI never runs it):
#   1. live on CUDA, the default tiny run (fp32, as its launch says) and the same launch with --bf16 True;
#   2. live on CUDA, bf16, ViT-B/16-shaped towers from random weights at 224 px, batch 32 (B16_BATCH);
#   3. the probe overhead (bench/live_overhead.py) on CUDA in bf16, tiny and b16;
#   4. b16_scratch: the same towers from random weights for SCRATCH_STEPS (200) at a constant LR, to see
#      when each term leaves chance (loss-chance's scratch_steps, bench/from_scratch.py);
#   5. foreign: live on the FG-CLIP v1-style checkout (tests/trees/fgclip_v1_live, its own `fgclip`
#      package: a child process) on CUDA, and its DeepSpeed ZeRO-2 launch under DeepSpeed itself.
# Needs the synthetic data + tiny base in $FGCLIP_CACHE/synthetic-v1 (generated if absent, ~1 min).
# Reports go to $OUT (default runs/gpu-check): one JSON per live run and log.txt.
#
#     FGCLIP_CACHE=... bash bench/gpu_check.sh
# A smoke test of the script itself on a CPU: DEVICE=cpu STEPS=3 B16_BATCH=2 ROUNDS=2 BLOCK=1 bash bench/gpu_check.sh
set -uo pipefail
OUT=${OUT:-runs/gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda} STEPS=${STEPS:-60} B16_BATCH=${B16_BATCH:-32} ROUNDS=${ROUNDS:-10} BLOCK=${BLOCK:-6}
SCRATCH_STEPS=${SCRATCH_STEPS:-200}
PARTS=${PARTS:-"default tiny_bf16 b16_bf16 b16_scratch foreign overhead"}  # a subset reruns only those
DATA=${FGCLIP_CACHE:-$HOME/.cache/fgclip-doctor}/synthetic-v1
exec > >(tee "$OUT/log.txt") 2>&1

step() { echo; echo "=== $* ($(date +%T))"; }

step environment
nvidia-smi -L || true
$PY -c "import sys, torch, transformers, typer; print(sys.version.split()[0], 'torch', torch.__version__,
'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'typer', typer.__version__,
torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA')"
$PY -c "from fgclip.presets import ensure_synthetic; print(ensure_synthetic())"

# Launches: the tiny script with --bf16, and b16 towers from scratch (no base weights) with --bf16.
$PY bench/live_overhead.py --write-config "$OUT/b16_config.json"
sed -e "s|^DATA=.*|DATA=$DATA|" -e 's|--seed 0|--seed 0 --bf16 True|' scripts/train_tiny.sh > "$OUT/tiny_bf16.sh"
sed -e "s|^DATA=.*|DATA=$DATA|" -e 's|--seed 0|--seed 0 --bf16 True|' \
    -e '/--model_name_or_path/d' -e '/--from_openai/d' \
    -e "s|--base_image_size 64|--base_image_size 224 --model_config $OUT/b16_config.json|" \
    -e "s|--per_device_train_batch_size 8|--per_device_train_batch_size $B16_BATCH|" \
    scripts/train_tiny.sh > "$OUT/b16_bf16.sh"

for run in "default:" "tiny_bf16:$OUT/tiny_bf16.sh" "b16_bf16:$OUT/b16_bf16.sh"; do
    name=${run%%:*} target=${run#*:}
    [[ " $PARTS " == *" $name "* ]] || continue
    step "live $name"
    start=$(date +%s%N)
    $PY -m fgclip_doctor live $target --device $DEVICE --steps $STEPS --format json -o "$OUT/live_$name.json"
    code=$?
    echo "live $name: exit $code, wall $(( ($(date +%s%N) - start) / 1000000 )) ms"
    $PY - "$OUT/live_$name.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
for f in r["findings"]:
    if f["status"] != "PASS":
        print(f"  {f['status']:4s} {f['rule']}: {f['message']}")
for note in r["live"].get("notes", []):
    print("  note:", note)
print("  statuses:", {s: sum(f["status"] == s for f in r["findings"]) for s in ("PASS", "WARN", "FAIL", "SKIP")})
for name, t in r["live"]["terms"].items():
    keys = ("dtype", "candidates_first", "candidates_last", "loss_first", "loss_last", "ratio_last")
    print(f"  {name}:", ", ".join(f"{k} {t[k]:.4g}" if isinstance(t[k], float) else f"{k} {t[k]}" for k in keys))
EOF
done

if [[ " $PARTS " == *" b16_scratch "* ]]; then
    step "b16 from scratch, $SCRATCH_STEPS steps"
    $PY bench/from_scratch.py --size b16 --steps $SCRATCH_STEPS --batch $B16_BATCH --device $DEVICE --bf16 \
        --constant-lr
fi

if [[ " $PARTS " == *" foreign "* ]]; then
    tree=$(mktemp -d)/FG-CLIP
    cp -r tests/trees/fgclip_v1_live "$tree"
    for launch in train_tiny.sh train_ds.sh; do
        step "live foreign $launch"
        (cd "$tree" && $PY -m fgclip_doctor live scripts/$launch --device $DEVICE --steps $STEPS -q)
        echo "live foreign $launch: exit $?"
    done
fi

[[ " $PARTS " == *" overhead "* ]] || { step done; exit 0; }
step "overhead tiny bf16"
$PY bench/live_overhead.py --device $DEVICE --bf16 --size tiny --batch 8 --rounds $ROUNDS --block $BLOCK
step "overhead b16 bf16"
$PY bench/live_overhead.py --device $DEVICE --bf16 --size b16 --batch $B16_BATCH --rounds $ROUNDS --block $BLOCK
step done
