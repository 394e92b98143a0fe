# syntax=docker/dockerfile:1
# The Stratos service and the indexer in one small image (docs/operators.md, "Containers").
# Build: docker build -t stratos .   Run: docker run -p 3100:3100 -v stratos-data:/data stratos
# scripts/container-check runs this file's build command and its runtime checks without a
# container runtime (CI has none); what that does and does not cover is written there.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# One release build of both binaries (the build command scripts/container-check runs).
RUN cargo build --release --locked -p stratos-service --bin stratos -p stratos-indexer --bin stratos-indexer

FROM debian:bookworm-slim
# ca-certificates: outbound TLS (PLC directory, PDSes) and the system roots for rediss://;
# curl: the health check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home stratos \
 && mkdir -p /data && chown stratos:stratos /data
COPY --from=build /src/target/release/stratos /src/target/release/stratos-indexer /usr/local/bin/
USER 10001:10001
ENV STRATOS_DATA_DIR=/data \
    STRATOS_BIND=0.0.0.0 \
    STRATOS_PORT=3100 \
    STRATOS_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 3100
# Liveness only: /ready would restart a healthy process during a database outage.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:3100/live >/dev/null || exit 1
ENTRYPOINT ["stratos"]
