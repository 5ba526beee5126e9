# otel-mlobs processor: receives OTLP on 4317 (gRPC) and 4318 (HTTP), serves /metrics, /healthz
# and the read-only JSON API on 9464. Build: `docker build -t otel-mlobs .`
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/otel-mlobs

# Dependencies first, read from pyproject.toml, so editing the code does not reinstall numpy,
# pandas and scikit-learn on every build.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY otel_mlobs ./otel_mlobs
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --create-home --home-dir /var/lib/mlobs \
        --shell /usr/sbin/nologin mlobs

# State (the embedded SQLite checkpoints) lives in the working directory: mount a volume here to
# keep it across restarts and upgrades.
USER mlobs
WORKDIR /var/lib/mlobs
VOLUME ["/var/lib/mlobs"]

EXPOSE 4317 4318 9464

# `mlobs healthcheck` reads the processor's own MLOBS_* settings: plain HTTP, or HTTPS pinning
# MLOBS_TLS_CERT when TLS is on (with mutual TLS, also set MLOBS_CLIENT_CERT/MLOBS_CLIENT_KEY).
# Non-zero exit on refusal, timeout or an unhealthy answer.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["mlobs", "healthcheck"]

CMD ["mlobs", "processor", "--host", "0.0.0.0"]
