#!/usr/bin/env bash
# Step time, examples/s and MFU on an accelerator, for (a) the main job (configs/late_fusion.py)
# and (b) a ViT-B-sized bottleneck-fusion (MBT) model in bfloat16, both on random inputs of their
# shapes (experiments/bench_configs.py), so no dataset is needed. A few minutes on one GPU:
#
#   pip install -e '.[cuda]' && bash experiments/gpu_benchmark.sh
#
# Environment: PYTHON (default python), STEPS (timed steps, default 30), OUT_DIR (where the JSON
# figures go, default a temporary directory), MMJAX_BENCH_TINY=1 (both models shrunk to seconds
# on a CPU: a check of this script, not a benchmark).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python}
steps=${STEPS:-30}
suffix=""
if [[ "${MMJAX_BENCH_TINY:-0}" == 1 ]]; then
  suffix=_tiny
  steps=2
fi
out=${OUT_DIR:-$(mktemp -d)}
mkdir -p "$out"

"$python" -c 'import jax; print("JAX", jax.__version__, jax.devices())'
for job in main_job mbt_vitb; do
  echo "== ${job}${suffix}"
  rm -f "$out/${job}.json"
  "$python" -m experiments.benchmark --config="experiments/bench_configs.py:${job}${suffix}" \
      --steps="$steps" --warmup=3 --eval_steps=3 --out="$out/${job}.json" 2>&1 |
    grep -v -E '^[IWE][0-9]{4} ' || true
  test -s "$out/${job}.json"
done

"$python" - "$out" <<'EOF'
import json, pathlib, sys
print(f'{"job":10} {"dtype":9} {"batch":>5} {"step ms":>9} {"examples/s":>11} {"TFLOP/s":>8} MFU')
for job in ('main_job', 'mbt_vitb'):
  r = json.loads((pathlib.Path(sys.argv[1]) / f'{job}.json').read_text())
  mfu = f'{100 * r["mfu"]:.1f}% of {r["peak_device"]}' if r['mfu'] is not None else (
      f'n/a ({r["device_kind"]})')
  tflops = r['flops_per_sec'] / 1e12 if r['flops_per_sec'] else float('nan')
  print(f'{job:10} {r["dtype"]:9} {r["batch_size"]:5d} {1e3 * r["step_s"]["median"]:9.2f} '
        f'{r["examples_per_sec"]:11,.0f} {tflops:8.2f} {mfu}')
EOF
