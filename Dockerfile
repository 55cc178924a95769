# The project's image: the `llmpipe` CLI and its flows, the configs and the sample data. It runs `llmpipe serve`
# (docker-compose.yml's worker) or any other llmpipe command.
#
#   docker build -t llm-pipeline .                                   # CPU torch
#   docker build -t llm-pipeline:cuda --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
FROM python:3.11-slim

# torch is installed first, from the index named here: the CPU build by default, a CUDA build with another index.
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX="https://download.pytorch.org/whl/cpu"
# Extras of the project to install (dask: the Dask task runner; ray: the Ray one).
ARG EXTRAS="dask"

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_HOME=/var/lib/prefect

# gcc: torch.compile builds its kernels with it, and llm_core/cpu_kernels.py the fused CPU kernels.
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ \
    && rm -rf /var/lib/apt/lists/*
RUN pip install "${TORCH_SPEC}" --index-url "${TORCH_INDEX}"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY llm_core llm_core
COPY tasks tasks
COPY flows flows
COPY cli cli
RUN pip install ".[${EXTRAS}]"
COPY configs configs
COPY data data
COPY ops ops

CMD ["llmpipe", "serve"]
