# The Airflow image for the local docker-compose stack (docker-compose.yaml, docs/deployment.md).
#
# Extends the official Apache Airflow image the way its docs recommend
# (https://airflow.apache.org/docs/docker-stack/build.html): pip runs as the `airflow` user (the
# image installs Python packages into that user's ~/.local; pip as root is refused), pins
# apache-airflow to the image's own version so a dependency can never silently up/downgrade
# Airflow, and uses --no-cache-dir to keep the image small.
#
# The base image's Airflow version must equal the `apache-airflow==` pin in
# constraints/constraints-3.11.txt; tests/unit/test_docker_compose.py checks both.
FROM apache/airflow:3.3.2-python3.11

USER airflow

# The package source, only what `pip install .` needs (see .dockerignore: nothing else is sent).
COPY --chown=airflow:0 pyproject.toml README.md /home/airflow/src/airflow-training-guard/
COPY --chown=airflow:0 constraints/ /home/airflow/src/airflow-training-guard/constraints/
COPY --chown=airflow:0 airflow_training_guard/ /home/airflow/src/airflow-training-guard/airflow_training_guard/

# Same pinned versions as `make install`. The `examples` extra adds NumPy, which the example training
# program (examples/training/train.py, run by dags/daily_retraining.py) needs.
RUN cd /home/airflow/src/airflow-training-guard \
    && pip install --no-cache-dir \
        "apache-airflow==${AIRFLOW_VERSION}" \
        -c constraints/constraints-3.11.txt \
        ".[examples]"

# The example training program. dags/ is NOT copied: docker-compose mounts it, so DAG edits need no rebuild.
COPY --chown=airflow:0 examples/ /opt/airflow/examples/
ENV TRAINING_GUARD_EXAMPLES_DIR=/opt/airflow/examples

# Mount points of the compose file's named volumes. Created here, owned by airflow and group 0 with
# umask 0002 (the official image's rule for writable directories), so a fresh named volume starts
# with this ownership and is writable whatever AIRFLOW_UID the containers run as (always with GID 0).
RUN umask 0002; \
    mkdir -p \
        /opt/airflow/config \
        /opt/airflow/logs \
        /opt/airflow/checkpoints \
        /opt/airflow/training-guard/data \
        /opt/airflow/training-guard/models
