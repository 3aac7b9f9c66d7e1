# syntax=docker/dockerfile:1
#
# One image per Brokerflow service, named by a build argument:
#
#   docker build --build-arg SERVICE=crm-sync -t brokerflow/crm-sync .
#   make images            # every service (scripts/build-service --image)
#
# The build stage runs scripts/build-service, the same script as `make images`, Tilt and the
# image test: a static binary (CGO_ENABLED=0). The image is distroless/static, non-root
# (uid 65532), with the binary as its only program.

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
ARG SERVICE
RUN test -n "$SERVICE" || { echo 'pass --build-arg SERVICE=<service> (scripts/build-service --list)' >&2; exit 1; }
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    scripts/build-service "$SERVICE" /out

FROM gcr.io/distroless/static-debian12:nonroot
ARG SERVICE
LABEL org.opencontainers.image.title="brokerflow-${SERVICE}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/${SERVICE} /usr/local/bin/service
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/service"]
