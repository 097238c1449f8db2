# syntax=docker/dockerfile:1
# One image for every PM service; the command chooses the process:
#   pm-gateway | pm-orchestrator | pm-ledger-writer | pm-adapter-ipps | pm-adapter-qp | pm-reconciler
#   python -m pm_sandbox_ipps | python -m pm_sandbox_qp | pm migrate | pm streams --provision
# (`python -m pm_<service>` works too). compose/docker-compose.yml builds and runs it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the uv workspace, exactly as uv.lock pins it, into a self-contained venv at /opt/pm ----
FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3 \
    UV_PROJECT_ENVIRONMENT=/opt/pm \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /src

# Dependencies first (their layer survives a change of our own code): the lock and every member's
# pyproject, nothing of the workspace itself installed yet.
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/
COPY services/gateway/pyproject.toml services/gateway/
COPY services/orchestrator/pyproject.toml services/orchestrator/
COPY services/ledger-writer/pyproject.toml services/ledger-writer/
COPY services/adapter-ipps/pyproject.toml services/adapter-ipps/
COPY services/adapter-qp/pyproject.toml services/adapter-qp/
COPY services/reconciler/pyproject.toml services/reconciler/
COPY sandboxes/ipps/pyproject.toml sandboxes/ipps/
COPY sandboxes/qp/pyproject.toml sandboxes/qp/
COPY tools/pyproject.toml tools/
COPY clients/python/pyproject.toml clients/python/
RUN uv sync --frozen --no-dev --all-packages --no-install-workspace

# Then the workspace members, installed as wheels (not editable): /opt/pm needs nothing from /src.
COPY shared/src shared/src
COPY services/gateway/src services/gateway/src
COPY services/orchestrator/src services/orchestrator/src
COPY services/ledger-writer/src services/ledger-writer/src
COPY services/adapter-ipps/src services/adapter-ipps/src
COPY services/adapter-qp/src services/adapter-qp/src
COPY services/reconciler/src services/reconciler/src
COPY sandboxes/ipps/src sandboxes/ipps/src
COPY sandboxes/qp/src sandboxes/qp/src
COPY tools/src tools/src
COPY clients/python/src clients/python/src
RUN uv sync --frozen --no-dev --all-packages --no-editable \
 && /opt/pm/bin/python -c "import pm_gateway, pm_orchestrator, pm_ledger_writer, pm_adapter_ipps, pm_adapter_qp, pm_reconciler, pm_shared"

# ---- runtime: the same Python, the venv, a non-root user; no build tools, no uv ----
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 pm \
 && useradd --system --uid 10001 --gid pm --create-home --home-dir /home/pm --shell /usr/sbin/nologin pm
COPY --from=build /opt/pm /opt/pm
ENV PATH=/opt/pm/bin:$PATH \
    VIRTUAL_ENV=/opt/pm \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib
USER 10001:10001
WORKDIR /home/pm
# gateway 8080; orchestrator, ledger-writer, adapter-ipps, adapter-qp, reconciler 9101-9105; sandboxes 9201-9202
EXPOSE 8080 9101 9102 9103 9104 9105 9201 9202
CMD ["pm", "--help"]
