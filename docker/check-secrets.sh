#!/bin/sh
# Refuse to start the team stack with a placeholder or short secret (one line on stderr, exit 1).
# Usage: check-secrets.sh NAME... (the values come from the environment, i.e. from .env).
set -u

for name in "$@"; do
    eval "value=\${$name-}"
    case "$value" in
        *CHANGE_ME*)
            echo "refusing to start: $name still holds the CHANGE_ME placeholder of docker/.env.example; set a real secret in .env" >&2
            exit 1
            ;;
    esac
    if [ "${#value}" -lt 12 ]; then
        echo "refusing to start: $name is ${#value} characters long; secrets need at least 12 (set it in .env)" >&2
        exit 1
    fi
done
exit 0
