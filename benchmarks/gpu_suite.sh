#!/usr/bin/env bash
# The full-size GPU benchmark runs, in parts of under 10 minutes each.
# Usage (on the GPU machine, repository root):  bash benchmarks/gpu_suite.sh train|qlora|decode|smoke
# Figures: one JSON line per run appended to $OUT/gpu_bench.jsonl (benchmarks/out/ without $OUT),
# the printed tables in $OUT/<part>.log. See benchmarks/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
part="${1:?part: train | qlora | decode | smoke}"
out_dir="${OUT:-benchmarks/out}"
mkdir -p "$out_dir"

# Wheels made on a connected machine, for a GPU machine that cannot download (.whl: what the image
# lacks or has in another version; .whl-bnb: bitsandbytes for QLoRA). Installed beside the image's packages, never over them.
for d in .whl .whl-bnb; do
  if compgen -G "$d/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$d"/*.whl
  fi
done
export PYTHONPATH="/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
json="$out_dir/gpu_bench.jsonl"
log="$out_dir/$part.log"

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| transformers', transformers.__version__, '| peft', peft.__version__)"
} 2>&1 | tee -a "$log"

train() { python3 benchmarks/bench_gpu_train.py --json-out "$json" "$@" 2>&1 | tee -a "$log"; }
decode() { python3 benchmarks/bench_gpu_decode.py --json-out "$json" "$@" 2>&1 | tee -a "$log"; }

case "$part" in
  smoke)   # a minute: proves the wheels and the CUDA paths before the long parts
    train --arch qwen2-audio --scale 0.05 --steps 2 --seconds 4 --gradient-checkpointing both
    decode --arch qwen2-audio --scale 0.05 --utterances 16 --batch-size 8 --steps 2 ;;
  train)   # training cost: LoRA r=8 Qwen2-Audio; Phi-4 speech-LoRA (r=320) and Unfreeze; mean and max SO762 lengths
    train --arch qwen2-audio --method lora --seconds 4,20 --gradient-checkpointing both
    train --arch phi4-mm --method lora --seconds 4,20 --gradient-checkpointing both
    train --arch phi4-mm --method unfreeze --seconds 4,20 --gradient-checkpointing both ;;
  qlora)   # training cost: QLoRA (4-bit NF4 base through load_backbone); needs .whl-bnb
    train --arch qwen2-audio --qlora --seconds 4,20 --gradient-checkpointing both --workdir /tmp/bench-qlora ;;
  decode)  # decoding cost: SO762-shaped test set throughput + single-utterance latency, constrained vs free
    decode --arch qwen2-audio --utterances 256 --free-utterances 64 --batch-size 16 --steps 5
    decode --arch qwen2-audio --utterances 256 --batch-size 32 --steps 3 --decodings constrained --sort-by-length ;;
  *) echo "unknown part $part (train | qlora | decode | smoke)" >&2; exit 2 ;;
esac
