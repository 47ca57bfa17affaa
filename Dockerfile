# syntax=docker/dockerfile:1
# rollguard: Prometheus alerts to guarded, audited Kubernetes rollbacks.
#
#   docker build -t rollguard:0.1.0 .
#   docker build -t rollguard:0.1.0-helm --build-arg HELM_VERSION=v4.3.1 \
#     --build-arg HELM_SHA256=<sha256 of helm-v4.3.1-linux-amd64.tar.gz> .    # for the HelmRelease action
#   docker build -t rollguard:0.1.0-helm --build-arg HELM_VERSION=v4.3.1 \
#     --build-context helm-bin=DIR .             # or with a helm binary you supply: DIR holds only `helm`
#
# Reproducible from package-lock.json (npm ci), a pinned Node image and, when asked for, a pinned
# helm release: downloaded and checked against HELM_SHA256 (required: no checksum, no download), or
# supplied as the build context helm-bin and checked to report HELM_VERSION. The runtime image holds
# dist/, the production node_modules, the example rules and nothing else; it runs as uid 10001 and
# writes nothing (the chart mounts a read-only root filesystem and /tmp as an emptyDir).
# Without a Docker engine: `npm run image` (scripts/image/build.sh) builds this file with buildah.

ARG NODE_IMAGE=node:22.12.0-bookworm-slim

# --- build: compile TypeScript with the dev dependencies
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/bundle-client-node.mjs ./scripts/
COPY src ./src
# tsc, then the Kubernetes client bundled to what rollguard uses (scripts/bundle-client-node.mjs)
RUN npm run build

# --- deps: production dependencies only, from the same lockfile
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# (npm leaves the scope folders of omitted packages behind, empty: removed)
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts && npm cache clean --force \
 && find node_modules -mindepth 1 -maxdepth 1 -type d -empty -delete

# --- helm (optional). HELM_VERSION empty: no helm in the image. Set: the helm binary supplied as the
# build context helm-bin (`--build-context helm-bin=DIR`, which replaces this empty stage) if there is
# one, checked to report HELM_VERSION; else the release from get.helm.sh, checked against HELM_SHA256.
FROM scratch AS helm-bin

FROM ${NODE_IMAGE} AS helm
ARG HELM_VERSION=""
ARG HELM_SHA256=""
ARG TARGETARCH=amd64
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=helm-bin / /supplied/
# hadolint ignore=DL3008
RUN mkdir -p /out \
 && if [ -z "${HELM_VERSION}" ]; then \
      if [ -e /supplied/helm ]; then echo "a helm binary is supplied (build context helm-bin) but HELM_VERSION is empty: set it to the version that binary reports" >&2; exit 1; fi; \
    elif [ -e /supplied/helm ]; then \
      v="$(/supplied/helm version --template '{{.Version}}')" \
      && if [ "${v}" != "${HELM_VERSION}" ]; then echo "the supplied helm (build context helm-bin) reports '${v}', not HELM_VERSION=${HELM_VERSION}" >&2; exit 1; fi \
      && install -m 0755 /supplied/helm /out/helm; \
    elif ! [[ "${HELM_SHA256}" =~ ^[0-9a-f]{64}$ ]]; then \
      echo "HELM_VERSION=${HELM_VERSION} downloads helm-${HELM_VERSION}-linux-${TARGETARCH}.tar.gz, which is only done with its checksum: --build-arg HELM_SHA256=<its sha256, 64 lowercase hex digits, from the release's .sha256sum file> (HELM_SHA256='${HELM_SHA256}'), or supply the binary with --build-context helm-bin=DIR" >&2; \
      exit 1; \
    else \
      apt-get update \
      && apt-get install -y --no-install-recommends ca-certificates curl \
      && curl -fsSLo /tmp/helm.tgz "https://get.helm.sh/helm-${HELM_VERSION}-linux-${TARGETARCH}.tar.gz" \
      && echo "${HELM_SHA256}  /tmp/helm.tgz" | sha256sum -c - \
      && tar -xzf /tmp/helm.tgz -C /tmp \
      && install -m 0755 "/tmp/linux-${TARGETARCH}/helm" /out/helm \
      && rm -rf /tmp/helm.tgz "/tmp/linux-${TARGETARCH}" /var/lib/apt/lists/*; \
    fi

# --- runtime
FROM ${NODE_IMAGE}
ARG HELM_VERSION=""
LABEL org.opencontainers.image.title="rollguard" \
      org.opencontainers.image.description="Prometheus alerts to guarded, audited Kubernetes rollbacks" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.rollguard.helm-version="${HELM_VERSION}"
# V8 sized for the chart's 256Mi memory limit: a young generation of 4 MB semi-spaces instead of the
# default 16 MB (a smaller RSS under intake bursts, more frequent but short scavenges) and an old
# generation capped at 192 MB, below the limit, so V8 collects before the kernel kills the pod.
# docs/benchmarks.md (the P0-in-a-storm benchmark) measures both. Override with NODE_OPTIONS.
ENV NODE_ENV=production \
    NODE_OPTIONS="--max-semi-space-size=4 --max-old-space-size=192" \
    PORT=9095 \
    RULES_PATH=/app/rules \
    HELM_BIN=/usr/local/bin/helm \
    HELM_CACHE_HOME=/tmp/helm/cache \
    HELM_CONFIG_HOME=/tmp/helm/config \
    HELM_DATA_HOME=/tmp/helm/data
RUN groupadd --system --gid 10001 rollguard \
 && useradd --system --uid 10001 --gid rollguard --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin rollguard
WORKDIR /app
# the layers that change least first: a change to src/ rebuilds the last layer only
COPY --from=helm --chown=root:root /out/ /usr/local/bin/
COPY --from=deps --chown=root:root /app/node_modules ./node_modules
COPY --chown=root:root package.json ./
COPY --chown=root:root rules ./rules
COPY --from=build --chown=root:root /src/dist ./dist
USER 10001:10001
EXPOSE 9095
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||9095)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "dist/main.js"]
CMD ["serve"]
