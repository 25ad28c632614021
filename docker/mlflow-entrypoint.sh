#!/bin/sh
# Start the MLflow server of the compose stack. All secrets come from the environment
# (docker-compose passes them from .env); none are baked into the image.
set -eu

: "${POSTGRES_USER:?POSTGRES_USER is not set (see docker/.env.example)}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set (see docker/.env.example)}"
: "${POSTGRES_DB:?POSTGRES_DB is not set (see docker/.env.example)}"
: "${MLFLOW_BUCKET:?MLFLOW_BUCKET is not set (see docker/.env.example)}"
: "${MLFLOW_S3_ENDPOINT_URL:?MLFLOW_S3_ENDPOINT_URL is not set}"
: "${AWS_ACCESS_KEY_ID:?AWS_ACCESS_KEY_ID is not set}"
: "${AWS_SECRET_ACCESS_KEY:?AWS_SECRET_ACCESS_KEY is not set}"
# CSRF key of the basic-auth app, shared by all workers.
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?MLFLOW_FLASK_SERVER_SECRET_KEY is not set (see docker/.env.example)}"
# Needed the first time the auth store is created (MLflow 3 has no default admin password).
: "${MLFLOW_AUTH_ADMIN_PASSWORD:?MLFLOW_AUTH_ADMIN_PASSWORD is not set (see docker/.env.example)}"

# Placeholders from .env.example or short secrets: refuse with one line (docs/server.md).
"$(dirname "$0")/check-secrets.sh" POSTGRES_PASSWORD AWS_SECRET_ACCESS_KEY MLFLOW_AUTH_ADMIN_PASSWORD \
    MLFLOW_FLASK_SERVER_SECRET_KEY

exec mlflow server \
    --backend-store-uri "postgresql+psycopg2://${POSTGRES_USER}:${POSTGRES_PASSWORD}@${POSTGRES_HOST:-postgres}:${POSTGRES_PORT:-5432}/${POSTGRES_DB}" \
    --artifacts-destination "s3://${MLFLOW_BUCKET}/artifacts" \
    --host 0.0.0.0 \
    --port 5000 \
    --workers "${MLFLOW_WORKERS:-2}" \
    --app-name basic-auth \
    "$@"
