# Sourced by the device scripts: installs the wheels carried in .whl/ (packages the GPU image lacks, e.g.
# hydra) into /tmp/site, puts them and the repository on PYTHONPATH, and defines device_stamp.
if ls .whl/*.whl > /dev/null 2>&1; then
  # once per machine: a second install would rewrite the packages under runs still importing them
  if [ ! -f /tmp/site/.installed ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    touch /tmp/site/.installed
  fi
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1

device_stamp() {  # the GPU and the versions a device log starts with
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
  python3 -c "import torch, triton, pytorch_lightning as pl; print('torch', torch.__version__, 'triton', triton.__version__, 'lightning', pl.__version__)"
}
