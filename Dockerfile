# agentboard, one image for every role: `docker run IMAGE api|relay|projections run|worker|init`.
# Multi-stage: uv builds the virtual environment from the lock file; the final stage holds
# that environment and nothing else, and runs as a user without privileges.
# Not built or run here (no container runtime on the machine it was written on): see
# docs/deploy.md.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG UV_VERSION=0.13.9
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/agentboard
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /src
# the dependencies first: a change of our code does not rebuild them
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY domain/ domain/
COPY projections/ projections/
COPY api/ api/
COPY workers/ workers/
COPY infra/ infra/
RUN uv sync --frozen --no-dev --no-editable

FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 agentboard \
    && useradd --system --uid 10001 --gid agentboard --home-dir /var/lib/agentboard \
       --create-home agentboard
COPY --from=build /opt/agentboard /opt/agentboard
ENV PATH=/opt/agentboard/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AGENTBOARD_DATA_DIR=/var/lib/agentboard \
    AGENTBOARD_HTTP_HOST=0.0.0.0 \
    AGENTBOARD_HTTP_PORT=8000 \
    AGENTBOARD_LOG_FORMAT=json
USER agentboard:agentboard
WORKDIR /var/lib/agentboard
EXPOSE 8000
ENTRYPOINT ["agentboard"]
CMD ["api"]
