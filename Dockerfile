# syntax=docker/dockerfile:1
# One image per workspace member: PACKAGE names it, and the image holds that member and what it
# declares, nothing else (no tooling in a service's image):
#   docker build --build-arg PACKAGE=pm-gateway -t pm-gateway .
# Services: pm-gateway, pm-orchestrator, pm-ledger-writer, pm-adapter-ipps, pm-adapter-qp,
# pm-reconciler, pm-webhooks (each runs its console script, e.g. `pm-gateway`); the sandboxes pm-sandbox-ipps,
# pm-sandbox-qp and pm-sandbox-auth (compose only); pm-tools for `pm migrate`, `pm streams --provision` and operators.
# compose/docker-compose.yml and compose/k8s build and run them; tests/test_members.py installs each
# member alone with the same `uv sync` and imports every module of it there.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: one member, exactly as uv.lock pins it, into a self-contained venv at /opt/pm ----
FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
ARG PACKAGE
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/opt/pm \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN test -n "$PACKAGE" || { echo "--build-arg PACKAGE=<workspace member> is required" >&2; exit 1; }
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /src

# Dependencies first (their layer survives a change of our own code): the lock and every member's
# pyproject (uv reads the whole workspace), only the dependencies of PACKAGE installed.
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/
COPY services/gateway/pyproject.toml services/gateway/
COPY services/orchestrator/pyproject.toml services/orchestrator/
COPY services/ledger-writer/pyproject.toml services/ledger-writer/
COPY services/adapter-ipps/pyproject.toml services/adapter-ipps/
COPY services/adapter-qp/pyproject.toml services/adapter-qp/
COPY services/reconciler/pyproject.toml services/reconciler/
COPY services/webhooks/pyproject.toml services/webhooks/
COPY sandboxes/ipps/pyproject.toml sandboxes/ipps/
COPY sandboxes/qp/pyproject.toml sandboxes/qp/
COPY sandboxes/auth-center/pyproject.toml sandboxes/auth-center/
COPY tools/pyproject.toml tools/
COPY clients/python/pyproject.toml clients/python/
RUN uv sync --frozen --no-dev --package "$PACKAGE" --no-install-workspace

# Then PACKAGE and the workspace members it depends on, installed as wheels (not editable): /opt/pm
# needs nothing from /src. Only the members PACKAGE declares are installed from these sources.
COPY shared/src shared/src
COPY services/gateway/src services/gateway/src
COPY services/orchestrator/src services/orchestrator/src
COPY services/ledger-writer/src services/ledger-writer/src
COPY services/adapter-ipps/src services/adapter-ipps/src
COPY services/adapter-qp/src services/adapter-qp/src
COPY services/reconciler/src services/reconciler/src
COPY services/webhooks/src services/webhooks/src
COPY sandboxes/ipps/src sandboxes/ipps/src
COPY sandboxes/qp/src sandboxes/qp/src
COPY sandboxes/auth-center/src sandboxes/auth-center/src
COPY tools/src tools/src
COPY clients/python/src clients/python/src
RUN uv sync --frozen --no-dev --package "$PACKAGE" --no-editable \
 && /opt/pm/bin/python -c "import importlib, sys; importlib.import_module(sys.argv[1])" "$(echo "$PACKAGE" | tr - _)"

# ---- runtime: the same Python, the venv, a non-root user; no build tools, no uv ----
FROM ${PYTHON_IMAGE} AS runtime
ARG PACKAGE
LABEL org.opencontainers.image.title="${PACKAGE}"
RUN groupadd --system --gid 10001 pm \
 && useradd --system --uid 10001 --gid pm --create-home --home-dir /home/pm --shell /usr/sbin/nologin pm
COPY --from=build /opt/pm /opt/pm
# MPLCONFIGDIR: matplotlib (pm-tools only) writes its cache there, the home may be read-only.
ENV PATH=/opt/pm/bin:$PATH \
    VIRTUAL_ENV=/opt/pm \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
WORKDIR /home/pm
# The command names the process, as compose and Kubernetes do: `docker run pm-gateway pm-gateway`,
# `docker run pm-tools pm --help`, `docker run pm-sandbox-qp python -m pm_sandbox_qp`.
