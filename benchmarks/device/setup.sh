# Sourced at the start of every command on the lent GPU machine (see benchmarks/device/README.md):
# installs the pinned transformers stack from carried wheels, unpacks the offline MiniLM and the data.
set -e
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
if [ ! -d /tmp/m/minilm ]; then
  mkdir -p /tmp/m && tar xJf .dev/gpu/minilm16.tar.xz -C /tmp/m
  # The carried copy is fp16 to fit the transfer limit; restore fp32 storage before training.
  python3 - <<'PY'
import shutil
from safetensors.torch import load_file, save_file
shutil.copytree("/tmp/m/minilm16", "/tmp/m/minilm")
sd = load_file("/tmp/m/minilm16/model.safetensors")
save_file({k: v.float().contiguous() for k, v in sd.items()}, "/tmp/m/minilm/model.safetensors", metadata={"format": "pt"})
PY
fi
DATA=$PWD/.dev/gpu/data/ag_news
nvidia-smi -L
# pack DIR NAME: a checkpoint with fp16 weights (transfer limit), tarred and split into 15 MB parts under $OUT.
pack() {
  python3 - "$1" <<'PY'
import sys, pathlib
from safetensors.torch import load_file, save_file
d = pathlib.Path(sys.argv[1]); sd = load_file(d / "model.safetensors")
save_file({k: v.half().contiguous() for k, v in sd.items()}, d / "model.fp16.safetensors", metadata={"format": "pt"})
PY
  tar cf - -C "$(dirname "$1")" --exclude=model.safetensors --exclude='checkpoint-*' "$(basename "$1")" | split -b 15M - "$OUT/$2.tar.part-"
}
