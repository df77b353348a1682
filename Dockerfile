FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY responsecentre ./responsecentre
COPY rules ./rules
COPY escalation ./escalation
COPY devices ./devices
RUN pip install --no-cache-dir . && mkdir -p /app/.cache/numba
ENV NUMBA_CACHE_DIR=/app/.cache/numba PYTHONUNBUFFERED=1
# The package reads rules/, escalation/ and devices/ from /app by default.
ENV RC_RULES_PATH=/app/rules/default.yaml RC_CHAINS_PATH=/app/escalation/chains.yaml \
    RC_HOMES_PATH=/app/devices/homes.yaml RC_STAFF_PATH=/app/escalation/staff.yaml
EXPOSE 8080
CMD ["responsecentre", "run", "--host", "0.0.0.0"]
