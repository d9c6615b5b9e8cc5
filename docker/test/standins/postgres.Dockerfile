# Stand-in for postgres:17.6 where no registry is reachable: Debian's PostgreSQL with the part of
# the official image's contract that docker/compose.yaml uses (POSTGRES_USER / _PASSWORD / _DB,
# PGDATA, pg_isready, password logins over TCP). PGPORT moves it off 5432 if needed.
ARG BASE_IMAGE=sweeper-test-base:torch2.14.1
FROM ${BASE_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PGDATA=/var/lib/postgresql/data
USER postgres
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
