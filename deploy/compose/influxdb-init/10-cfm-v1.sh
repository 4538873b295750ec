#!/bin/bash
# InfluxQL access to the cfm bucket for Grafana (and anything else speaking the 1.x API).
#
# The influxdb:2.x image runs the executable *.sh files of /docker-entrypoint-initdb.d once, right after its
# first-start setup (DOCKER_INFLUXDB_INIT_MODE=setup, an empty data volume), with the influx CLI already logged
# in as the admin (operator token, setup org) and DOCKER_INFLUXDB_INIT_BUCKET_ID exported. It never runs again:
# on an existing volume, run the same two commands by hand with `docker compose exec influxdb …`.
#
# 1. A DBRP mapping: InfluxQL names a database and retention policy; 2.x maps them to a bucket. 2.x already has
#    a virtual mapping per bucket (same name, rp autogen); an explicit one is listed by `influx v1 dbrp list`,
#    survives a bucket rename, and is what the 1.x docs and tools expect.
# 2. A v1 authorization (username/password) that can only read this bucket: the login of the Grafana
#    datasource (grafana/provisioning/datasources/cfm-influxdb.yaml).
#
# The project's services do not need either: they write through /api/v2/write and query /query with a token.
set -euo pipefail

: "${DOCKER_INFLUXDB_INIT_BUCKET:?}" "${DOCKER_INFLUXDB_INIT_BUCKET_ID:?}"
: "${GRAFANA_INFLUX_USER:?set GRAFANA_INFLUX_USER}" "${GRAFANA_INFLUX_PASSWORD:?set GRAFANA_INFLUX_PASSWORD}"

influx v1 dbrp create \
  --db "${DOCKER_INFLUXDB_INIT_BUCKET}" \
  --rp autogen \
  --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --default

influx v1 auth create \
  --username "${GRAFANA_INFLUX_USER}" \
  --password "${GRAFANA_INFLUX_PASSWORD}" \
  --read-bucket "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --description "Grafana: InfluxQL, read-only on ${DOCKER_INFLUXDB_INIT_BUCKET}"
