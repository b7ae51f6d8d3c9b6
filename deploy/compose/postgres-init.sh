#!/usr/bin/env bash
# The ledger's own role and database beside Temporal's, in the one PostgreSQL of deploy/docker-compose.yml.
#
# The postgres image runs this once, when its data volume is first initialised (mounted into
# /docker-entrypoint-initdb.d), as the superuser POSTGRES_USER that Temporal's auto-setup also uses; auto-setup creates
# Temporal's databases (temporal, temporal_visibility) itself. The ledger role owns only its own database.
# Changing AISAFE_DB_PASSWORD later does not re-run this: use ALTER ROLE, or start from an empty volume.
set -euo pipefail

: "${AISAFE_DB_PASSWORD:?AISAFE_DB_PASSWORD is not set (see deploy/.env.example)}"
AISAFE_DB_USER="${AISAFE_DB_USER:-aisafe}"
AISAFE_DB_NAME="${AISAFE_DB_NAME:-aisafe}"

# psql quotes the names and the password itself (:"name", :'value'), so no value is spliced into SQL text.
psql --no-psqlrc -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
    -v owner="$AISAFE_DB_USER" -v password="$AISAFE_DB_PASSWORD" -v dbname="$AISAFE_DB_NAME" <<'SQL'
CREATE ROLE :"owner" LOGIN PASSWORD :'password';
CREATE DATABASE :"dbname" OWNER :"owner";
REVOKE ALL ON DATABASE :"dbname" FROM PUBLIC;
SQL
echo "postgres-init: database ${AISAFE_DB_NAME} owned by ${AISAFE_DB_USER} is ready for the aisafe ledger"
