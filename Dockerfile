# The project's Airflow image: the official Airflow 3 image plus what
# requirements.txt adds to it, with the DAGs, plugins and SQL baked in.
#
#   docker compose build            (docker-compose.yaml builds it as events-pipeline-airflow)
#   docker build -t events-pipeline-airflow .
#
# The base tag must match the apache-airflow pin of requirements.txt
# (tests/integration/test_compose.py checks it).
FROM apache/airflow:3.3.2-python3.11

ARG AIRFLOW_VERSION=3.3.2

# Dependencies first (cached until requirements.txt changes). image_requirements.py
# lists the pins the image does not already have (leaving out the local-only
# pgserver/moto stack) and constrains everything the image ships to its own
# version: a conflict fails the build instead of replacing Airflow or a provider.
COPY --chown=airflow:0 requirements.txt docker/image_requirements.py /tmp/build/
RUN python /tmp/build/image_requirements.py /tmp/build/requirements.txt \
        --out /tmp/build/extra.txt --constraints-out /tmp/build/image-constraints.txt \
    && if [ -s /tmp/build/extra.txt ]; then \
        pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" \
            -r /tmp/build/extra.txt -c /tmp/build/image-constraints.txt; \
    fi \
    && python -c "import psycopg, pyarrow, orjson, airflow.providers.amazon, airflow.providers.postgres" \
    && rm -rf /tmp/build

# The project itself. docker-compose.yaml also bind-mounts these folders for
# development; a deployment without the mounts runs exactly what was built.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 include/ /opt/airflow/include/
COPY --chown=airflow:0 docker/airflow/ /opt/airflow/docker/
# The runbook and the other docs, so on-call can read what a failure line links to
# (set EVENTS_DOCS_BASE_URL to where they are served to make those links URLs).
COPY --chown=airflow:0 docs/ /opt/airflow/docs/
COPY --chown=airflow:0 README.md /opt/airflow/README.md

# `python -m events_pipeline.common.migrations` and task code import the package from plugins/.
# The auth folder holds the simple auth manager's password file (a named volume in compose).
ENV PYTHONPATH=/opt/airflow/plugins
RUN mkdir -p /opt/airflow/auth && chmod -R g+rwX /opt/airflow/auth /opt/airflow/docker
