# MusicGen stem generation on the Azure Functions Python host.
#
#   CPU (default):  docker build -t stem-generation .
#   GPU (CUDA):     docker build --build-arg USE_GPU=true -t stem-generation:gpu .
#   Bake a model:   docker build --build-arg PRELOAD_MODEL=facebook/musicgen-small ...
#
# The host listens on port 80. Routes have no /api prefix (host.json): /generate, /health.
FROM mcr.microsoft.com/azure-functions/python:4-python3.11

ARG USE_GPU=false
# Must match the torch pin in requirements.txt.
ARG TORCH_VERSION=2.13.0
# Empty: nothing is baked in, and the first start downloads the model into the volume.
ARG PRELOAD_MODEL=""

ENV AzureWebJobsScriptRoot=/home/site/wwwroot \
    AzureFunctionsJobHost__Logging__Console__IsEnabled=true \
    AzureWebJobsFeatureFlags=EnableWorkerIndexing \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# One worker process, because each process would load its own MusicGen copy. Synchronous
# activities run on the thread pool, sized like maxConcurrentActivityFunctions (16), so
# the stems of concurrent requests can wait together on one batched generation.
ENV FUNCTIONS_WORKER_PROCESS_COUNT=1 \
    PYTHON_THREADPOOL_THREAD_COUNT=16

# The model cache sits on a mounted volume (an Azure Files share in Azure), so replicas and
# restarts reuse one download. The NVIDIA_* variables are read by the NVIDIA container
# runtime and do nothing on a CPU host.
ENV MODEL_CACHE_DIR=/models \
    HF_HOME=/models/hf \
    USE_GPU=${USE_GPU} \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# A C++ compiler: the CPU decoding path builds its small AVX-512 attention kernel on first
# use (generation/engines/musicgen/attention_kernel.py; without a compiler it falls back, slower).
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends g++; \
    rm -rf /var/lib/apt/lists/*

# torch first and on its own. The CPU build comes from the PyTorch CPU index, so the image
# skips the multi-GB CUDA libraries. The GPU build is the default PyPI wheel: on Linux
# x86_64 it is CUDA-enabled and brings its CUDA libraries as nvidia-* wheels, so the host
# only needs the NVIDIA driver.
RUN set -eux; \
    case "$(echo "$USE_GPU" | tr '[:upper:]' '[:lower:]')" in \
      true|1|yes) pip install "torch==${TORCH_VERSION}" ;; \
      *)          pip install --index-url https://download.pytorch.org/whl/cpu "torch==${TORCH_VERSION}" ;; \
    esac; \
    python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

# Then the rest, constrained to the exact torch build just installed (2.13.0+cpu satisfies
# requirements.txt's torch==2.13.0), so pip can never swap in another torch.
COPY requirements.txt /tmp/requirements.txt
RUN set -eux; \
    python -c "import torch; print('torch==' + torch.__version__)" > /tmp/torch-constraint.txt; \
    pip install -c /tmp/torch-constraint.txt -r /tmp/requirements.txt; \
    rm /tmp/requirements.txt /tmp/torch-constraint.txt

# Optional: bake a checkpoint into the cache. This step must come before VOLUME, because
# Docker discards build-time changes to a path that is already a volume. A fresh named
# Docker volume is seeded from this content. A bind mount or an Azure Files share hides it,
# and then the first start downloads into the share.
RUN set -eux; \
    mkdir -p "$MODEL_CACHE_DIR" "$HF_HOME"; \
    if [ -n "$PRELOAD_MODEL" ]; then \
      python -c "import os, sys; from transformers import MusicgenForConditionalGeneration as M, MusicgenProcessor as P; d = os.environ['MODEL_CACHE_DIR']; M.from_pretrained(sys.argv[1], cache_dir=d); P.from_pretrained(sys.argv[1], cache_dir=d)" "$PRELOAD_MODEL"; \
    fi

VOLUME ["/models"]

# The app goes in last, so a code change does not rebuild the dependency layers.
# .dockerignore keeps tests, benchmarks, .venv, local.settings.json and similar out.
COPY . /home/site/wwwroot
