#!/usr/bin/env bash
# One prepared check for a lent GPU machine: a CIFAR-10 target and a converter at the paper scale's
# epochs (pipeline/scales.py "paper": ResNet18 width 32 for 15 epochs, the converter for 5), with their
# figures, in under 10 minutes on one H100/H200-class GPU.
#
#   bench/device_check.sh prepare     here, beside ../shared: writes runs/device_data/{train,test}.npz,
#                                     a real CIFAR-10 subset under 60 MB, to carry (runs/device_data)
#   bench/device_check.sh [OUT]       on the GPU machine (OUT: $OUT, or runs/device_check): trains
#                                     and writes OUT/device_check.json and OUT/summary.txt
#
# Without runs/device_data it trains on the embedded sample (3,500 images): figures of a small set.
# The machine needs TensorFlow 2.21 with CUDA; the script says so in one line where it is missing.
# TARGET_EPOCHS, DAPTER_EPOCHS, DATA (a folder of train.npz / test.npz) and REQUIRE_GPU=0 shrink it
# for a smoke run on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] && PYTHON=.venv/bin/python

if [ "${1:-}" = prepare ]; then
  "$PYTHON" - <<'PY'
import os
import numpy as np

shared = os.environ.get("DAPTER_SHARED_DATA", "../shared/data")
os.makedirs("runs/device_data", exist_ok=True)
for split, name, n in (("train", "train_20k.npz", 15000), ("test", "test.npz", 2000)):
    with np.load(os.path.join(shared, "cifar10", name)) as f:
        order = np.random.default_rng(0).permutation(len(f["y"]))[:n]  # The files are sorted by class.
        np.savez_compressed(f"runs/device_data/{split}.npz", x=f["x"][order], y=f["y"][order])
size = sum(os.path.getsize(f"runs/device_data/{s}.npz") for s in ("train", "test")) / 2**20
assert size < 60, f"runs/device_data is {size:.1f} MB, over the 60 MB a device call carries"
print(f"wrote runs/device_data (15,000 training and 2,000 test images, {size:.1f} MB): carry runs/device_data")
PY
  exit 0
fi

OUT=${1:-${OUT:-runs/device_check}}
mkdir -p "$OUT"
if ! "$PYTHON" -c "import tensorflow" 2>/dev/null; then
  echo "error: TensorFlow is not installed for $PYTHON on this machine; install tensorflow[and-cuda]==2.21.* first" >&2
  exit 1
fi
"$PYTHON" -c "import tensorflow as tf, sys; g = tf.config.list_physical_devices('GPU'); print('GPUs:', g)
sys.exit('error: no GPU visible to TensorFlow (REQUIRE_GPU=0 runs on the CPU)' if not g and '${REQUIRE_GPU:-1}' == '1' else 0)"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DATA=${DATA:-runs/device_data}
data=()
if [ -f "$DATA/train.npz" ]; then
  data=(--source=npz --train_npz="$DATA/train.npz" --test_npz="$DATA/test.npz")
fi
start=$(date +%s)
"$PYTHON" -m experiments.train_target "${data[@]}" --model=resnet18 --width=32 --epochs="${TARGET_EPOCHS:-15}" --batch_size=128 \
  --mixed_precision=bfloat16 --workdir="$OUT/target" 2>&1 | grep -v "step - " | tail -n 5
target_done=$(date +%s)
"$PYTHON" -m experiments.train_dapter "${data[@]}" --target="$OUT/target/target.keras" --epochs="${DAPTER_EPOCHS:-5}" --batch_size=64 \
  --mixed_precision=bfloat16 --workdir="$OUT/dapter" 2>&1 | grep -v "step - " | tail -n 5
end=$(date +%s)
"$PYTHON" - "$OUT" "$((target_done - start))" "$((end - target_done))" <<'PY'
import json, sys

out, target_s, dapter_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
target = json.load(open(f"{out}/target/results.json"))
dapter = json.load(open(f"{out}/dapter/results.json"))
figures = {
    "target_test_accuracy": target["test_accuracy"],
    "target_seconds": target_s,
    "converter_accuracy_original": dapter["accuracy_original"],
    "converter_accuracy_converted": dapter["accuracy_converted"],
    "converter_entropy_ratio": dapter["entropy_ratio"],
    "converter_seconds": dapter_s,
}
json.dump(figures, open(f"{out}/device_check.json", "w"), indent=2)
text = "\n".join(f"{k}: {v}" for k, v in figures.items())
open(f"{out}/summary.txt", "w").write(text + "\n")
print(text)
PY
