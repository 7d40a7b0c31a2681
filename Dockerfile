# syntax=docker/dockerfile:1
#
# Two images from one build:
#   docker build --target services -t server-manager:0.1.0 .        # every core service
#   docker build --target agent    -t server-manager-agent:0.1.0 .  # the node agent alone
#
# The services image runs one service per container (`smctl serve SERVICE`,
# see docker-compose.yml and k8s/), and the web client (`sm-client --web`, the
# `web` container: sm-ctl depends on sm-client, so it is installed with
# everything it serves, no CDN); the agent image holds only the agent and
# its three dependencies. Both install exactly what uv.lock pins.

# The builder and the final stages must use the same Python image: the virtual
# environments are copied across and point at its interpreter.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: uv, the lock file and the workspace sources ----
FROM ${PYTHON_IMAGE} AS builder
# uv from PyPI, the version the lock was made with.
RUN pip install --no-cache-dir uv==0.13.9
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=python3.11
WORKDIR /src
# The workspace's manifests first: dependencies are a layer of their own and are
# rebuilt only when the lock or a manifest changes.
COPY pyproject.toml uv.lock ./
COPY services/shared/pyproject.toml services/shared/
COPY services/registry/pyproject.toml services/registry/
COPY services/metrics/pyproject.toml services/metrics/
COPY services/commands/pyproject.toml services/commands/
COPY services/gateway/pyproject.toml services/gateway/
COPY agent/pyproject.toml agent/
COPY client/pyproject.toml client/
COPY cli/pyproject.toml cli/
RUN --mount=type=cache,target=/root/.cache/uv \
    UV_PROJECT_ENVIRONMENT=/opt/server-manager \
    uv sync --frozen --no-dev --no-install-workspace --package sm-ctl
RUN --mount=type=cache,target=/root/.cache/uv \
    UV_PROJECT_ENVIRONMENT=/opt/sm-agent \
    uv sync --frozen --no-dev --no-install-workspace --package sm-agent
# Then the sources; the services' wheels carry their OpenAPI documents (openapi/).
COPY openapi/ openapi/
COPY services/ services/
COPY agent/ agent/
COPY client/ client/
COPY cli/ cli/

# ---- the two environments (non-editable: they do not need /src afterwards) ----
FROM builder AS services-build
RUN --mount=type=cache,target=/root/.cache/uv \
    UV_PROJECT_ENVIRONMENT=/opt/server-manager \
    uv sync --frozen --no-dev --no-editable --package sm-ctl

FROM builder AS agent-build
RUN --mount=type=cache,target=/root/.cache/uv \
    UV_PROJECT_ENVIRONMENT=/opt/sm-agent \
    uv sync --frozen --no-dev --no-editable --package sm-agent

# ---- services: registry, metrics, commands, gateway, worker, web client (one per container) ----
FROM ${PYTHON_IMAGE} AS services
LABEL org.opencontainers.image.title="Server Manager core services" \
      org.opencontainers.image.description="smctl serve registry|metrics|commands|gateway|worker; sm-client --web"
RUN groupadd --system --gid 10001 server-manager \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /var/lib/server-manager --shell /usr/sbin/nologin server-manager \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/server-manager /var/lib/server-manager-edge
COPY --from=services-build /opt/server-manager /opt/server-manager
COPY deploy/healthcheck.py /opt/server-manager/healthcheck.py
ENV PATH=/opt/server-manager/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SM_DATA_DIR=/var/lib/server-manager
USER 10001:10001
WORKDIR /var/lib/server-manager
VOLUME ["/var/lib/server-manager"]
# registry, metrics, commands, gateway (sm_shared.routes.DEFAULT_PORTS)
EXPOSE 8101 8102 8103 8104
# the web client (sm_shared.routes.WEB_PORT; plain HTTP, behind the edge)
EXPOSE 8105
# /readyz of the HTTP service this container runs, the worker's key in Redis, or
# GET / of the web client.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/opt/server-manager/healthcheck.py"]
ENTRYPOINT ["smctl"]
CMD ["--help"]

# ---- agent: the node agent alone (psutil, websockets, cryptography) ----
FROM ${PYTHON_IMAGE} AS agent
LABEL org.opencontainers.image.title="Server Manager agent"
RUN groupadd --system --gid 10002 sm-agent \
    && useradd --system --uid 10002 --gid 10002 --no-create-home \
       --home-dir /var/lib/sm-agent --shell /usr/sbin/nologin sm-agent \
    && install -d -o 10002 -g 10002 -m 0700 /var/lib/sm-agent
COPY --from=agent-build /opt/sm-agent /opt/sm-agent
ENV PATH=/opt/sm-agent/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SM_AGENT_STATE_DIR=/var/lib/sm-agent
USER 10002:10002
VOLUME ["/var/lib/sm-agent"]
# The agent listens on nothing; a dead agent ends the container (it is PID 1), and
# whether it is connected is the core's to say (presence). Nothing meaningful to
# probe from inside yet, so no check rather than one that cannot fail.
HEALTHCHECK NONE
ENTRYPOINT ["sm-agent"]
