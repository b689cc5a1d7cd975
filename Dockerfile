# The one image every pipeline component runs on: pinned dependencies plus this project.
# Build: docker build -t kfp-retrain:0.1.0 . ; then `retrain compile --image` with
# the exact, immutable tag you push, so the compiled YAML names it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# OpenMP threads spin only briefly before they sleep: on a shared node a spinning fit slows by
# 5-10x whenever another process holds a core (components/ml/threads.py).
ENV GOMP_SPINCOUNT=1000

WORKDIR /opt/retrain
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY pyproject.toml README.md ./
COPY components components
COPY pipelines pipelines
COPY app app
RUN pip install --no-deps .

# No secrets in the image: GCS credentials come from the environment (Workload Identity / ADC).
RUN useradd --create-home --uid 10001 retrain
USER retrain
WORKDIR /home/retrain
