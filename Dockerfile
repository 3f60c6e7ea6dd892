# syntax=docker/dockerfile:1
#
# kar's images, all from one build of the Go binaries (see `make docker`):
#
#   kar            the sidecar image: /kar/bin/kar (injected next to Pods,
#                  or run as `kar run ...`)
#   kar-injector   the admission webhook: /kar/bin/kar-injector
#   kar-scaler     KEDA's external scaler over the mesh's load: /kar/bin/kar-scaler
#   kar-dev        `kar dev` in a container: /kar/bin/kar and /kar/bin/kar-dev
#                  (a Kafka-protocol broker and Redis for development; the
#                  sidecar image leaves kar-dev out)
#   kar-js         base image for Node.js components: node + /kar/bin/kar
#   kar-go         base image for Go components (static binaries): /kar/bin/kar
#   example-js     an example on kar-js     (--build-arg EXAMPLE=service-hello-js)
#   example-go     an example on kar-go     (--build-arg EXAMPLE=service-hello-go)
#
# The base images run `kar entrypoint -- CMD...`: with
# KAR_SIDECAR_IN_CONTAINER=true (Code Engine, Knative) the component runs
# under a sidecar in the same container, configured only by environment
# variables; otherwise the command runs alone and Kubernetes injects the
# sidecar. Every final image runs as a numeric non-root user, so
# runAsNonRoot can be verified.
#
# Every base image is a build argument whose default is the public image,
# for builders that cannot pull them (an offline machine, a mirror):
#   --build-arg GO_IMAGE=...      a Go toolchain on Debian (golang:*-bookworm)
#   --build-arg NODE_IMAGE=...    Node.js on Debian, with npm and a user of
#                                 uid 1000 (node:*-bookworm-slim)
#   --build-arg STATIC_IMAGE=...  a root file system with CA certificates and
#                                 /etc/passwd (distroless static)
#   --build-arg GOPROXY=...       the Go module proxy of `go mod download`
# scripts/test-containers.sh builds local stand-ins for all three from
# Debian packages and passes them this way.

ARG GO_IMAGE=golang:1.26-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim
ARG STATIC_IMAGE=gcr.io/distroless/static-debian12:nonroot

# ---- build: the Go binaries ----
FROM ${GO_IMAGE} AS build
WORKDIR /src
ARG GOPROXY
ENV GOFLAGS=-buildvcs=false
COPY go.mod go.sum ./
# The module and build caches are cache mounts: a rebuild after a source
# change compiles only what changed.
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
# As every build of kar: scripts/build.sh (static, kar with the sidecar's
# GODEBUG setting linked in).
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    VERSION=${VERSION} scripts/build.sh /out ./cmd/kar-dev ./cmd/kar-injector ./cmd/kar-scaler ./cmd/kar

# ---- kar: the sidecar image ----
FROM ${STATIC_IMAGE} AS kar
COPY --from=build /out/kar /kar/bin/kar
USER 65532:65532
ENTRYPOINT ["/kar/bin/kar"]
CMD ["help"]

# ---- kar-injector: the admission webhook ----
FROM ${STATIC_IMAGE} AS kar-injector
COPY --from=build /out/kar-injector /kar/bin/kar-injector
USER 65532:65532
EXPOSE 8443
# The Deployment gives -tls_cert_file F -tls_private_key_file F -port 8443.
ENTRYPOINT ["/kar/bin/kar-injector"]

# ---- kar-scaler: KEDA's external scaler (gRPC on 6000) ----
FROM ${STATIC_IMAGE} AS kar-scaler
COPY --from=build /out/kar-scaler /kar/bin/kar-scaler
USER 65532:65532
EXPOSE 6000
ENTRYPOINT ["/kar/bin/kar-scaler"]

# ---- kar-dev: kar dev's broker and Redis ----
# They listen on the container's loopback, as on a laptop: run it with
# --network=host, or forward a published port to them (the container
# tests' Kafka stand-in does, with socat).
FROM ${STATIC_IMAGE} AS kar-dev
COPY --from=build /out/kar /out/kar-dev /kar/bin/
USER 65532:65532
ENTRYPOINT ["/kar/bin/kar"]
CMD ["dev"]

# ---- kar-js: base image for Node.js components ----
FROM ${NODE_IMAGE} AS kar-js
COPY --from=build /out/kar /kar/bin/kar
ENV PATH=/kar/bin:$PATH NODE_ENV=production
WORKDIR /app
RUN chown 1000:1000 /app
# uid 1000 is the image's "node" user, given as a number for runAsNonRoot.
USER 1000:1000
ENTRYPOINT ["/kar/bin/kar", "entrypoint", "--"]
CMD ["node", "server.js"]

# ---- kar-go: base image for Go components (CGO_ENABLED=0 binaries) ----
FROM ${STATIC_IMAGE} AS kar-go
COPY --from=build /out/kar /kar/bin/kar
ENV PATH=/kar/bin:/app/bin:/usr/local/bin:/usr/bin:/bin
WORKDIR /app
USER 65532:65532
ENTRYPOINT ["/kar/bin/kar", "entrypoint", "--"]
CMD ["/app/bin/server"]

# ---- example-js: a Node.js example on kar-js ----
FROM kar-js AS example-js
ARG EXAMPLE=service-hello-js
COPY --chown=1000:1000 examples/${EXAMPLE}/package*.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --chown=1000:1000 examples/${EXAMPLE}/ ./
CMD ["node", "server.js"]

# ---- example-go: a Go example on kar-go ----
FROM build AS example-go-build
ARG EXAMPLE=service-hello-go
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    mkdir -p /out/examples && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
      -o /out/examples/ ./examples/${EXAMPLE}/...

FROM kar-go AS example-go
COPY --from=example-go-build /out/examples/ /app/bin/
CMD ["/app/bin/server"]
