# Build stage: the same steps as scripts/demo (cmake for pingora, a locked release build).
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked

# Runtime stage: the binary alone, run by an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/keyfront keyfront
COPY --from=build /src/target/release/keyfront /usr/local/bin/keyfront
USER keyfront
ENTRYPOINT ["keyfront"]
CMD ["demo"]
