#!/usr/bin/env bash
# The checks that need a CUDA device, in one run: the torch paths on the GPU against the CPU
# reference (inference and training parity), what TF32 would do to the parity, and throughput
# against timm. Needs torch with CUDA, timm and zoo's core dependencies; results go to $OUT.
#     OUT=gpu-results bash benchmarks/gpu_checks.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-results}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" ZOO_HOME="${ZOO_HOME:-/tmp/zoo-gpu}" PYTHONUNBUFFERED=1
PY=${PY:-python3}
nvidia-smi -L
$PY - <<'PY' | tee "$out/tf32.txt"
# TF32 against IEEE fp32 on the GPU, both against a float64 CPU reference (realistic BN statistics
# from a few train-mode batches, so the logits have a realistic spread).
import torch, zoo
torch.manual_seed(0)
m = zoo.create_model("res2net50_26w_4s", framework="torch")
with torch.no_grad():
    m.train()
    for _ in range(3):
        m(torch.randn(16, 3, 224, 224))
m.eval()
x = torch.randn(8, 3, 224, 224)
with torch.no_grad():
    ref = m.double()(x.double())
    gpu = m.float().cuda()
    for tf32 in (True, False):
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        out = gpu(x.cuda()).double().cpu()
        rel = ((out - ref).abs().max() / ref.abs().max().clamp(min=1)).item()
        agree = (out.argmax(1) == ref.argmax(1)).float().mean().item()
        print(f"{torch.cuda.get_device_name()} res2net50_26w_4s fp32 {'TF32' if tf32 else 'IEEE'}: "
              f"logits max|d|/max(1,max|ref|) = {rel:.2e} vs float64 CPU, top-1 agreement {agree:.3f}")
PY
$PY -m zoo.cli verify res2net50_26w_4s res2net101_v1b res2net_dla60 res2next50 res2net50_vd_26w_4s \
    -f torch --device gpu --json > "$out/verify_gpu.json"; echo "verify --device gpu: exit $?"
$PY -m zoo.cli verify res2net50_26w_4s res2net101_v1b res2net_dla60 -f torch --train --device gpu \
    --json > "$out/verify_train_gpu.json"; echo "verify --train --device gpu: exit $?"
$PY -m pytest tests/test_verify_eval.py -m gpu -q -p no:cacheprovider 2>&1 | tail -3
$PY benchmarks/bench.py --only gpu --runs 7 --json "$out/results_gpu.json"
