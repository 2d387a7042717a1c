#!/usr/bin/env bash
# Regenerate the pictures of docs/gallery.md and docs/articles.md: short MNIST runs of each seed article's own
# architecture (docs/articles.md maps them), a few generic runs (ae and vae with a 2-D code, a 16-D ae, a dae),
# then `aekit plot KIND RUN` for each experiment, each step timed. On a small shared machine run it alone:
#   flock /tmp/aekit-heavy.lock scripts/make_gallery.sh > gallery.log 2>&1
# Knobs (environment): AEKIT (the aekit command), THREADS (torch threads per process, default 1), EPOCHS (5),
# SAMPLES (training images, 10000), RUNS (runs/gallery). A run folder that already holds weights is reused.
# Output: docs/img/*.png and RUNS/timings.tsv (seconds per step, copied into docs/gallery.md by hand).
set -euo pipefail
cd "$(dirname "$0")/.."
AEKIT=${AEKIT:-.venv/bin/aekit}
THREADS=${THREADS:-1}
RUNS=${RUNS:-runs/gallery}
IMG=docs/img
EPOCHS=${EPOCHS:-5}
SAMPLES=${SAMPLES:-10000}
mkdir -p "$RUNS" "$IMG"
TIMES="$RUNS/timings.tsv"
printf 'step\tseconds\n' > "$TIMES"
T_START=$(date +%s.%N)

ak() { $AEKIT --threads "$THREADS" "$@"; }  # AEKIT may hold words of its own (e.g. "python -m aekit")

step() {  # step NAME COMMAND...: run, time, log
  local name=$1; shift
  local t0; t0=$(date +%s.%N)
  echo "== $name: $*"
  "$@"
  printf '%s\t%.1f\n' "$name" "$(echo "$(date +%s.%N) - $t0" | bc)" >> "$TIMES"
}

train() {  # train NAME MODEL [flags]: EPOCHS epochs on SAMPLES seeded MNIST training images, no early stopping
  local name=$1 model=$2; shift 2
  [ -f "$RUNS/$name/model.safetensors" ] && { echo "== $name exists, reusing"; return; }
  step "train $name" ak train --model "$model" --dataset mnist --epochs "$EPOCHS" \
    --max-train-samples "$SAMPLES" --patience 0 --no-progress --out "$RUNS/$name" "$@"
}

plot() {  # plot RUN KIND [options]: writes docs/img/RUN-KIND[-TAG].png
  local run=$1 kind=$2; shift 2
  local tag=${TAG:+-$TAG}
  step "plot $kind $run${tag}" ak plot "$kind" "$RUNS/$run" --out "$IMG/$run-$kind$tag.png" "$@"
  rm -f "$IMG/$run-$kind$tag.json"  # docs/img holds pictures only (without --out: RUN/figures/KIND.png + .json)
}

# ---- The seed articles' own nets (docs/articles.md). QuickDraw cannot be fetched here: its net runs on MNIST.
# [foster] SignalPlus / Foster ch. 3: conv AE 32-64-64-64 @3x3, strides 1,2,2,1, LeakyReLU, dense 2-D code,
# transposed-conv decoder 64-64-32-1; MSE, Adam lr 5e-4, batch 32 (200 epochs in the article).
FOSTER=(--arch conv --filters 32,64,64,64 --kernel-sizes 3,3,3,3 --strides 1,2,2,1 --decoder-filters 64,64,32
        --activation leaky_relu --leaky-slope 0.3 --loss mse --lr 0.0005 --batch-size 32)
train foster-ae-2 ae --latent-dim 2 "${FOSTER[@]}"
# [tf2] the TensorFlow 2 article: 4 strided convs of 8 filters, dense ReLU code (10, then 2), decoder
# dense -> 7x7 map -> conv 64, upsample, conv 32, conv 32, upsample, conv 1; MSE.
TF2=(--arch conv --filters 8,8,8,8 --kernel-sizes 3,3,3,3 --strides 2,1,2,1 --decoder upsample
     --decoder-filters 64,32,32 --code-activation relu --loss mse)
train tf2-ae-10 ae --latent-dim 10 "${TF2[@]}"
# A 2-D ReLU code dies in the first epoch here (both units stuck at 0: aekit warns "collapsed"): linear code.
train tf2-ae-2 ae --latent-dim 2 "${TF2[@]}" --code-activation linear
# [quickdraw] Oleszak (TDS) with Géron's net: conv 16-32-64 @3x3, SELU, 2x2 max-pool dropping the border
# (28 -> 14 -> 7 -> 3): the 3x3x64 map is the code; transposed-conv decoder; BCE (20 epochs in the article).
# Its VAE flattens the same encoder into a 576-d mean and log-variance.
QD=(--arch conv --encoder maxpool --pool-padding valid --filters 16,32,64 --kernel-sizes 3,3,3 --strides 2,2,2
    --activation selu)
train qd-ae ae --code conv --code-activation selu "${QD[@]}"
train qd-vae-576 vae --latent-dim 576 "${QD[@]}"
# [habr] the Habr (Keras) article: dense 49-d ReLU code; the deep dense one (147-98-49); the conv AE with a
# 7x7x1 code (128@7x7, pool, 32@2x2, pool, 1@7x7; upsampling decoder); that conv AE retrained as a denoiser on
# x + N(0.5, 0.5²) clipped, batch 16; a sparse AE (L1 on the code). BCE, Adam.
KERAS=(--arch conv --code conv --encoder maxpool --decoder upsample --filters 128,32,1 --kernel-sizes 7,2,7
       --strides 2,2,1 --code-activation relu)
# The dense nets are cheap: they get the Keras blog's 50 epochs of batch 256 (5 epochs leave them blurry).
train habr-dense-49 ae --latent-dim 49 --hidden-dims "" --code-activation relu --epochs 50 --batch-size 256
train habr-deep-49 ae --latent-dim 49 --hidden-dims 147,98 --epochs 50 --batch-size 256
train habr-conv ae "${KERAS[@]}" --batch-size 32
# On noisy inputs the 1-channel ReLU code dies in epoch 1 (a constant output); a leaky code keeps it alive.
train habr-dae dae "${KERAS[@]}" --code-activation leaky_relu --batch-size 16 --noise gaussian:0.5,0.5
train sparse-ae-16 sparse-ae --latent-dim 16
# [csdn] the CSDN (PyTorch) article: dense AE 784-256-64-256-784 with a ReLU code, MSE, Adam 1e-3;
# its VAE 784-256-(16, 16)-256-784, MSE + KL.
train csdn-ae-64 deep-ae --latent-dim 64 --hidden-dims 256 --code-activation relu --loss mse
train csdn-vae-16 vae --latent-dim 16 --hidden-dims 256 --loss mse

plot foster-ae-2 reconstruct
plot foster-ae-2 latent
plot foster-ae-2 defects
plot foster-ae-2 sample
TAG=grid plot foster-ae-2 manifold --range -5 5 --step 1.0
plot tf2-ae-10 reconstruct
TAG=n1000 plot tf2-ae-2 latent --n 1000
plot tf2-ae-2 manifold --range -5 5 --step 1.0
plot qd-ae reconstruct
TAG=tsne plot qd-ae latent --method tsne
plot qd-ae density
plot qd-ae slice3d --dims 0,1,2
plot qd-ae sample
plot qd-vae-576 reconstruct
plot qd-vae-576 interpolate --a 3 --b 2 --steps 10
plot qd-vae-576 arithmetic --expr "0 - 17"
plot habr-dense-49 reconstruct
plot habr-deep-49 reconstruct
plot habr-conv reconstruct
plot habr-dae denoise --noise gaussian:0.5,0.5
TAG=max plot sparse-ae-16 traverse --mode max
plot csdn-ae-64 reconstruct
plot csdn-vae-16 reconstruct
plot csdn-vae-16 sample

# ---- Generic runs: every plot kind on a small deep-ae / vae with a 2-D code, a 16-D ae and a dae.
train ae-2 deep-ae --latent-dim 2
train vae-2 vae --latent-dim 2
train ae-16 ae --latent-dim 16
train dae-16 dae --latent-dim 16 --noise gaussian:0.5

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

# ---- The families of issue 16 (docs/gallery.md "The issue-16 families"): 16-d codes, 2 epochs as the smoke
# leaderboard's runs, 6 where curves over epochs are the point; the cvae's per-class grid on a 2-d code.
train cvae-2 cvae --latent-dim 2 --epochs 4
train iwae-16 iwae --latent-dim 16 --epochs 6
train hvae-16 hvae --latent-dim 16 --epochs 6
train vae-16-e2 vae --latent-dim 16 --epochs 2
train wae-mmd-16 wae-mmd --latent-dim 16 --epochs 2
train beta-tc-vae-16 beta-tc-vae --latent-dim 16 --epochs 2
train vamp-vae-16 vamp-vae --latent-dim 16 --epochs 2
plot cvae-2 sample
plot iwae-16 curves
plot hvae-16 curves
plot hvae-16 sample
for run in vae-16-e2 wae-mmd-16 vamp-vae-16; do plot "$run" sample; done
for run in vae-16-e2 beta-tc-vae-16; do plot "$run" traverse --steps 7; done
step "report vae-2 --quick" ak report "$RUNS/vae-2" --quick

printf 'total\t%.1f\n' "$(echo "$(date +%s.%N) - $T_START" | bc)" >> "$TIMES"
echo "== sizes"; ls -l "$IMG"/*.png
echo "== timings"; cat "$TIMES"
