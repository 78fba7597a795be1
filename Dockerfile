# The oberta inference server: Python 3.11 slim, the serve and DeepSparse extras only (no torch), a non-root user.
#
#   docker build -t oberta:latest .                                # models mounted at run time (read-only) on /models
#   docker build --target with-models -t oberta:models .           # ./models baked into the image (for Kubernetes)
#   docker run --rm -p 8000:8000 -v "$PWD/models:/models:ro" oberta:latest
#
# Configuration is by environment variables: OBERTA_HOST, OBERTA_PORT, OBERTA_MODELS_DIR, OBERTA_CONFIG (a YAML
# endpoint file, e.g. mounted next to the models), OBERTA_THREADS (engine threads; default: every core it sees).
# See deploy/README.md. No `# syntax` line: any builder works, BuildKit (the default since Docker 23, which skips
# unused stages) or the classic one (DOCKER_BUILDKIT=0; give it --target server or it also builds with-models), and
# nothing is fetched from Docker Hub but the base image (PYTHON_IMAGE: CI builds on a local Debian one).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: a virtual environment with oberta and its serving dependencies, nothing else ----
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/oberta
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY oberta/ oberta/
COPY service/ service/
# `oberta serve` needs these packages only (the CLI reads compression's recipe list); tests/deploy checks it.
COPY compression/ compression/
# The serve and deepsparse extras only: the image must never pull torch (it is ~1 GB and not used to serve).
# Then trimmed where it is cheap (~150 MB): pip itself, the packages' own test suites (pandas, numpy, sympy) and
# ONNX's backend test models; the compiled .pyc files stay (without them every start compiles the imports again).
RUN /opt/oberta/bin/pip install '.[serve,deepsparse]' \
    && if /opt/oberta/bin/python -c "import torch" 2>/dev/null; then echo "torch must not be installed" >&2; exit 1; fi \
    && /opt/oberta/bin/python -m pip uninstall -q -y pip \
    && find /opt/oberta/lib/python3.11/site-packages -mindepth 2 -type d -name tests -prune -exec rm -rf {} + \
    && rm -rf /opt/oberta/lib/python3.11/site-packages/onnx/backend/test/data

# ---- server: the runtime image; models are mounted read-only on /models ----
FROM ${PYTHON_IMAGE} AS server
RUN groupadd --system --gid 10001 oberta \
    && useradd --system --uid 10001 --gid oberta --home-dir /home/oberta --create-home --shell /usr/sbin/nologin oberta \
    && mkdir -p /models
COPY --from=build /opt/oberta /opt/oberta
ENV PATH=/opt/oberta/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    NM_DISABLE_ANALYTICS=1 \
    HF_HUB_OFFLINE=1 \
    OBERTA_HOST=0.0.0.0 \
    OBERTA_PORT=8000 \
    OBERTA_MODELS_DIR=/models
WORKDIR /home/oberta
USER 10001:10001
EXPOSE 8000
# Healthy once every model is loaded and warmed up (/health/ready answers 503 before that). A DeepSparse model is
# ready once its first shape is compiled (the others follow in the background): the three shipped models in ~10 s
# on 2 cores alone (README, "Measured"); before that change, 3 models per replica and 2 replicas took ~3 min, which
# the start period still covers. Checks every 5 s (healthy, and so behind nginx via depends_on, within 5 s of
# ready); failures count only after the 300 s start period.
HEALTHCHECK --interval=5s --timeout=3s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('OBERTA_PORT', '8000') + '/health/ready', timeout=2)"]
# `oberta serve` reads OBERTA_HOST, OBERTA_PORT, OBERTA_MODELS_DIR, OBERTA_CONFIG and OBERTA_THREADS.
CMD ["oberta", "serve"]

# ---- with-models: the server with ./models baked in (docker build --target with-models) ----
FROM server AS with-models
COPY --chown=root:root models/ /models/

# ---- the default target: the server without models ----
FROM server
