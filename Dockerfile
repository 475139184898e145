# syntax=docker/dockerfile:1
# One image with every fleet-rs binary (the chart picks one per Deployment with `command`),
# plus the pinned helm and kustomize the agent runs. Non-root, no shell, no distribution: the
# same files as `cargo xtask image` writes without Docker (xtask/tests/image.rs compares them).
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

# The Rust binaries (libgit2 vendored; https through the system OpenSSL), laid out in /rootfs
# exactly as `cargo xtask image` lays them out without Docker: the binaries, the shared
# libraries they link at the paths ldd reports, the CA bundle, a non-root user, /tmp.
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p fleet-controller -p gitjob -p helmops -p fleet-agent -p fleet-cli --bins \
 && mkdir -p /rootfs/usr/local/bin /rootfs/etc/ssl/certs /rootfs/tmp \
 && cp target/release/fleet-controller target/release/gitjob target/release/helmops target/release/fleet-agent target/release/fleet /rootfs/usr/local/bin/ \
 && for lib in $(ldd /rootfs/usr/local/bin/* | grep -o '/[^ ]*' | sort -u); do \
      mkdir -p "/rootfs$(dirname "$lib")" && cp -L "$lib" "/rootfs$lib"; \
    done \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n' > /rootfs/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' > /rootfs/etc/group \
 && chmod 1777 /rootfs/tmp

FROM scratch
COPY --from=build /rootfs/ /
COPY --from=tools /out/helm /out/kustomize /usr/local/bin/
ENV PATH=/usr/local/bin:/usr/bin:/bin HOME=/tmp SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/fleet-controller"]
