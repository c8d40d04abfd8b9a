# syntax=docker/dockerfile:1
# The operator image: runtime dependencies only, non-root, fine with a read-only root FS.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
# A plain install pulls only [project.dependencies]; the dev extra stays out.
RUN python -m venv /venv \
 && /venv/bin/pip install --no-cache-dir --no-compile . \
 && /venv/bin/python -m compileall -q /venv

FROM python:3.11-slim
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin sprintops
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["sprintops", "run"]
