# Images for the manager and the limiter sidecar, one build stage for both:
#   docker build --target manager -t aiquota/manager:dev .
#   docker build --target limiter -t aiquota/limiter:dev .
# Both are static binaries on distroless, running as the nonroot user (65532) that
# the chart's security contexts and the injected sidecar's runAsUser expect.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY internal/ internal/
ARG TARGETOS=linux TARGETARCH=amd64
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags=-s -o /out/manager ./cmd/manager && \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags=-s -o /out/limiter ./cmd/limiter

FROM gcr.io/distroless/static:nonroot AS manager
COPY --from=build /out/manager /manager
USER 65532:65532
ENTRYPOINT ["/manager"]

FROM gcr.io/distroless/static:nonroot AS limiter
COPY --from=build /out/limiter /limiter
USER 65532:65532
ENTRYPOINT ["/limiter"]
