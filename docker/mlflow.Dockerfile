# MLflow tracking server for the team stack (docker-compose.yml at the repo root):
# PostgreSQL backend, MinIO (S3) artifacts behind the server's artifact proxy, basic auth.
FROM python:3.11-slim

ARG MLFLOW_VERSION=3.17.2
RUN pip install --no-cache-dir "mlflow[auth]==${MLFLOW_VERSION}" "psycopg2-binary>=2.9" "boto3>=1.34"

RUN useradd --create-home --uid 1000 mlflow \
    && mkdir -p /mlflow/auth \
    && chown -R mlflow /mlflow
COPY docker/basic_auth.ini /mlflow/basic_auth.ini
COPY --chmod=0755 docker/check-secrets.sh /usr/local/bin/check-secrets.sh
COPY --chmod=0755 docker/mlflow-entrypoint.sh /usr/local/bin/mlflow-entrypoint.sh

USER mlflow
WORKDIR /mlflow
ENV MLFLOW_AUTH_CONFIG_PATH=/mlflow/basic_auth.ini
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=10 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://localhost:5000/health', timeout=4).status != 200)"
ENTRYPOINT ["/usr/local/bin/mlflow-entrypoint.sh"]
