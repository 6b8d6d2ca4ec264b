# Build stage: the same steps as scripts/demo (cmake for pingora, a locked release build).
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked

# Runtime stage: the binary alone, run by an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/keyfront --create-home keyfront \
    && mkdir -p /etc/keyfront && chown keyfront /etc/keyfront
COPY --from=build /src/target/release/keyfront /usr/local/bin/keyfront
USER keyfront
WORKDIR /var/lib/keyfront
VOLUME ["/etc/keyfront", "/var/lib/keyfront"]
# 8580, 9580, 9581: `keyfront emulate` (edge, S3, CloudFront's API); 8480:
# the demo's edge; 8080: the example config's listener; 9090: the admin
# listener of the demo and the example config (health, metrics).
EXPOSE 8580 9580 9581 8480 8080 9090
# `keyfront health` asks /healthz on 127.0.0.1:9090 (KEYFRONT_ADMIN_URL changes it).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["keyfront", "health"]
ENTRYPOINT ["keyfront"]
CMD ["emulate", "--listen", "0.0.0.0:8580", "--s3-listen", "0.0.0.0:9580", "--control-listen", "0.0.0.0:9581", "--admin-listen", "127.0.0.1:9090"]
