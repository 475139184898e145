# syntax=docker/dockerfile:1
# One image with every fleet-rs binary (the chart picks one per Deployment with `command`),
# plus the pinned helm and kustomize the agent runs. Non-root, no shell needed at run time.
#
#   docker build -t ghcr.io/fleet-rs/fleet-rs:0.1.0 .

# The pinned tools, built from the same go.mod files the tests use (e2e/tools).
FROM golang:1.26-bookworm AS tools
WORKDIR /tools
COPY e2e/tools/helm/ helm/
COPY e2e/tools/kustomize/ kustomize/
RUN cd helm && go build -trimpath \
      -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$(go list -m -f '{{.Version}}' helm.sh/helm/v4)" \
      -o /out/helm helm.sh/helm/v4/cmd/helm
RUN cd kustomize && go build -trimpath -ldflags "-s -w" -o /out/kustomize sigs.k8s.io/kustomize/kustomize/v5

# The Rust binaries (libgit2 vendored; https through the system OpenSSL).
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p fleet-controller -p gitjob -p helmops -p fleet-agent -p fleet-cli --bins \
 && mkdir -p /out \
 && cp target/release/fleet-controller target/release/gitjob target/release/helmops target/release/fleet-agent target/release/fleet /out/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
COPY --from=tools /out/helm /out/kustomize /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/fleet-controller"]
