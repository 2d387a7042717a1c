#!/usr/bin/env bash
# Regenerate the pictures of docs/gallery.md: short MNIST runs (ae and vae with a 2-D code, a 16-D ae, a dae),
# then every `aekit plot` kind, each step timed. Run it alone under the shared lock on a small machine:
#   flock /tmp/aekit-heavy.lock scripts/make_gallery.sh > gallery.log 2>&1
# Output: docs/img/*.png and RUNS/timings.tsv (seconds per step, copied into docs/gallery.md by hand).
set -euo pipefail
cd "$(dirname "$0")/.."
AEKIT=${AEKIT:-.venv/bin/aekit}
RUNS=${RUNS:-runs/gallery}
IMG=docs/img
EPOCHS=${EPOCHS:-5}
SAMPLES=${SAMPLES:-10000}
mkdir -p "$RUNS" "$IMG"
TIMES="$RUNS/timings.tsv"
printf 'step\tseconds\n' > "$TIMES"

step() {  # step NAME COMMAND...: run, time, log
  local name=$1; shift
  local t0; t0=$(date +%s.%N)
  echo "== $name: $*"
  "$@"
  printf '%s\t%.1f\n' "$name" "$(echo "$(date +%s.%N) - $t0" | bc)" >> "$TIMES"
}

train() {  # train NAME MODEL LATENT [extra flags]
  local name=$1 model=$2 dim=$3; shift 3
  [ -f "$RUNS/$name/model.safetensors" ] && { echo "== $name exists, reusing"; return; }
  step "train $name" "$AEKIT" train --model "$model" --dataset mnist --latent-dim "$dim" --epochs "$EPOCHS" \
    --max-train-samples "$SAMPLES" --patience 0 --no-progress --out "$RUNS/$name" "$@"
}

plot() {  # plot RUN KIND [options]: writes docs/img/RUN-KIND[-TAG].png
  local run=$1 kind=$2; shift 2
  local tag=${TAG:+-$TAG}
  step "plot $kind $run${tag}" "$AEKIT" plot "$kind" "$RUNS/$run" --out "$IMG/$run-$kind$tag.png" "$@"
  rm -f "$IMG/$run-$kind$tag.json"  # the numbers stay in the run folder; docs/img holds pictures only
}

train ae-2 deep-ae 2
train vae-2 vae 2
train ae-16 ae 16
train dae-16 dae 16 --noise gaussian:0.5

for kind in curves reconstruct latent density sample interpolate traverse defects; do plot ae-2 $kind; done
plot ae-2 manifold --range -5 5 --step 1.0
TAG=classes plot ae-2 arithmetic --classes 1,7,9
for kind in latent sample manifold defects; do plot vae-2 $kind; done
TAG=slerp plot vae-2 interpolate --mode slerp
plot ae-16 density
plot ae-16 slice3d --dims 0,1,2
TAG=tsne plot ae-16 latent --method tsne
TAG=max plot ae-16 traverse --mode max
plot ae-16 denoise --noise gaussian:0.5
plot dae-16 denoise --noise gaussian:0.5
step "report vae-2 --quick" "$AEKIT" report "$RUNS/vae-2" --quick

echo "== sizes"; ls -l "$IMG"/*.png
echo "== timings"; cat "$TIMES"
