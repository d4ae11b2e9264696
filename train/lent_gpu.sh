#!/bin/bash
# The next lent GPU's plan (docs/experiments.md, session 29): new from-scratch parents of s3's recipe, then
# fine-tunes of the best one with f2's recipe, within the 15 minutes a task may hold the machine. Each phase is
# one call of the device tool, run from the repo root there; $OUT is what comes back (at most 8 files, 64 MiB:
# five width-48 float16 checkpoints), so each phase sends five and the next one sends what is left.
#
# Here, first (the tree sent must stay under 64 MiB: checkpoints/ is 137 MB):
#   python train/device_sweep.py pack --out .gpu/data.npz --quality 80
#   mkdir -p .teach && cp checkpoints/fernet_duo.safetensors .teach/t_fernet_duo.safetensors \
#     && cp checkpoints/fernet.safetensors .teach/t_fernet.safetensors
#   mv checkpoints /work/ckpt_aside              # back after the calls: mv /work/ckpt_aside checkpoints
# Then, one call each, back to back (a warm machine waits ~30 s; an ignored folder is there only in the call
# whose carry names it):
#   carry [".gpu"]:   bash train/lent_gpu.sh keep           # the pack to /tmp/keep (~44 s with the start)
#   carry [".teach"]: bash train/lent_gpu.sh parents        # six parents, ~500 s on an H200 (timeout_s 600: the
#                                                           # sweep stops its runs at BUDGET + 20 s, keeping the best)
#   carry [".teach"]: bash train/lent_gpu.sh finetune       # three fine-tunes of the best parent, ~200 s
#   carry []:         bash train/lent_gpu.sh fetch          # what is left (run again while files remain)
# Here, after: python train/promote.py <run> --name fernet --margin 0.004 (re-scored on the original images).
# Timing (session 29, H200): seven runs side by side took 9.2-11.9 s per epoch, eight 12.7-13.5, the first epoch
# 58 s when compiling from cold; six parents x 40 epochs fit BUDGET 540. On an H100, or if unsure, EPOCHS=34.
# Dry run on a CPU: DEVICE=cpu LIMIT=300 EPOCHS=1 FT_EPOCHS=1 DATA=<a pack --limit 300> KEEP=/tmp/k OUT=/tmp/o
set -u -o pipefail
cd "$(dirname "$0")/.." || exit 1
export PYTHONUNBUFFERED=1
KEEP=${KEEP:-/tmp/keep}
DATA=${DATA:-$KEEP/data.npz}
DEVICE=${DEVICE:-cuda}
EPOCHS=${EPOCHS:-40}
FT_EPOCHS=${FT_EPOCHS:-14}
TEACH=".teach/t_fernet_duo.safetensors .teach/t_fernet.safetensors"
BASE="--arch fernet --width 48 --data raf-db:2 fer2013 --ema 0.996 --batch-size 256 --tta-flip --class-weights
  --class-weight-power 0.5 --label-smoothing 0 --rotation 15 --lowres 0.1 --split-seed 0 --teacher $TEACH
  --distill-temperature 2 --distill-alpha 0.5"
[ "$DEVICE" = cuda ] && BASE="$BASE --compile reduce-overhead"
SWEEP=(python train/device_sweep.py run --data "$DATA" --device "$DEVICE" --threads 2 --limit "${LIMIT:-0}")

send() {  # up to five checkpoints not sent yet (parents, then fine-tunes, by name) and the logs, to $OUT
  local n=0 f
  touch "$KEEP/sent"
  for f in $(ls "$KEEP"/parents/*.safetensors "$KEEP"/ft/*.safetensors 2>/dev/null); do
    grep -qxF "$f" "$KEEP/sent" && continue
    [ $n -ge 5 ] && { echo "left for the next call: $f"; continue; }
    cp "$f" "$OUT/" && echo "$f" >> "$KEEP/sent" && n=$((n + 1))
  done
  for d in parents ft; do [ -f "$KEEP/$d/logs.tar.gz" ] && cp "$KEEP/$d/logs.tar.gz" "$OUT/logs_$d.tar.gz"; done
  echo "sent $n checkpoint(s)"
}

best_parent() {  # the parent whose run recorded the highest validation macro-F1
  for log in /tmp/ds_parents/run/*_run.log; do
    f1=$(grep -o "best val macro-F1 [0-9.]*" "$log" | tail -1 | awk '{print $4}')
    [ -n "$f1" ] && echo "$f1 $(basename "$log" _run.log)"
  done | sort -rn | head -1 | awk '{print $2}'
}

case "${1:-}" in
  keep)
    mkdir -p "$KEEP" && cp .gpu/data.npz "$KEEP/" && ls -la "$KEEP" ;;
  parents)
    mkdir -p "$KEEP/parents"
    "${SWEEP[@]}" --work /tmp/ds_parents --out "$KEEP/parents" --budget "${BUDGET:-540}" --epochs "$EPOCHS" \
      --common "$BASE --lr 0.2 --mixup 0.2 --cutmix 1.0 --mix-prob 0.5" \
      --config p1 "--seed 301" --config p2 "--seed 302" --config p3 "--seed 303" \
      --config p4 "--seed 304" --config p5 "--seed 305" --config p6 "--seed 306" 2>&1 | tee "$OUT/parents.log"
    send ;;
  finetune)
    parent=${2:-$(best_parent)}
    [ -n "$parent" ] || { echo "no parent finished (see /tmp/ds_parents/run/*_run.log)"; exit 1; }
    echo "fine-tuning $parent"
    mkdir -p "$KEEP/ft"
    "${SWEEP[@]}" --work /tmp/ds_ft --out "$KEEP/ft" --budget "${BUDGET:-240}" --epochs "$FT_EPOCHS" \
      --common "$BASE --lr 0.02 --schedule cosine --init /tmp/ds_parents/run/fernet_$parent.safetensors" \
      --config "${parent}_f1" "--seed 311" --config "${parent}_f2" "--seed 312" \
      --config "${parent}_f3" "--seed 313" 2>&1 | tee "$OUT/finetune.log"
    send ;;
  fetch)
    send ;;
  *)
    echo "usage: bash train/lent_gpu.sh keep|parents|finetune [PARENT]|fetch (see the comments at the top)"; exit 2 ;;
esac
