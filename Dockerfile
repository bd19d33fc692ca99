# syntax=docker/dockerfile:1
# The certorder operator image:
#   docker build -t ghcr.io/certorder/certorder:0.1.0 .
# The binary is also the kubectl plugin and the domain-validation solver (`certorder solver`).

# ---- build ----------------------------------------------------------------------------------------
FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target caches survive between builds (BuildKit); the binary is copied out of
# the cached target directory because cache mounts are not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin certorder \
    && install -D -m 0755 target/release/certorder /out/certorder

# ---- runtime --------------------------------------------------------------------------------------
# distroless "cc": glibc and CA certificates, no shell, no package manager; runs as the non-root
# user 65532 (the chart's securityContext sets the same user).
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="certorder" \
      org.opencontainers.image.description="Kubernetes operator that buys, validates, installs and renews TLS certificates" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/certorder /usr/local/bin/certorder
USER 65532:65532
# /metrics, /healthz and /readyz (--metrics-addr).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/certorder"]
CMD ["run"]
