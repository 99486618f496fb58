# The proxy, the simulator and the load generator all run from this one image:
#   docker run IMAGE                                  -> the proxy (config at /etc/aoai-stream-proxy/config.yaml)
#   docker run IMAGE simulate --host 0.0.0.0 --port 8000
#   docker run IMAGE loadgen --target http://proxy:8080 --duration 60 --concurrency 4

# Build the wheel in a throwaway stage so the final image carries no source tree or build tools.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN pip wheel --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
# Debian already has a `proxy` user (uid 13), hence `aoai`. Numeric USER below so that
# Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN pip install /wheels/*.whl && rm -rf /wheels \
    && groupadd --system --gid 10001 aoai \
    && useradd --system --uid 10001 --gid aoai --no-create-home --shell /usr/sbin/nologin aoai

USER 10001:10001
EXPOSE 8080
# slim has no curl; python's urllib raises (exit 1) on a refused connection or a non-2xx answer.
# It probes the proxy's port: docker-compose.yml overrides it for the simulator and loadgen.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["aoai-stream-proxy"]
CMD ["--config", "/etc/aoai-stream-proxy/config.yaml"]
