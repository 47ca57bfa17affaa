# syntax=docker/dockerfile:1
# rollguard: Prometheus alerts to guarded, audited Kubernetes rollbacks.
#
#   docker build -t rollguard:0.1.0 .
#   docker build -t rollguard:0.1.0-helm --build-arg HELM_VERSION=v4.3.1 \
#     --build-arg HELM_SHA256=<sha256 of helm-v4.3.1-linux-amd64.tar.gz> .    # for the HelmRelease action
#
# Reproducible from package-lock.json (npm ci), a pinned Node image and, when asked for, a pinned
# helm release checked against its SHA-256. The runtime image holds dist/, the production
# node_modules, the example rules and nothing else; it runs as uid 10001 and writes nothing
# (the chart mounts a read-only root filesystem and /tmp as an emptyDir).

ARG NODE_IMAGE=node:22.12.0-bookworm-slim

# --- build: compile TypeScript with the dev dependencies
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# --- deps: production dependencies only, from the same lockfile
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund --ignore-scripts && npm cache clean --force

# --- helm (optional): HELM_VERSION empty = no helm in the image
FROM debian:bookworm-slim AS helm
ARG HELM_VERSION=""
ARG HELM_SHA256=""
ARG TARGETARCH=amd64
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN mkdir -p /out \
 && if [ -n "${HELM_VERSION}" ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends ca-certificates curl \
      && curl -fsSLo /tmp/helm.tgz "https://get.helm.sh/helm-${HELM_VERSION}-linux-${TARGETARCH}.tar.gz" \
      && if [ -n "${HELM_SHA256}" ]; then echo "${HELM_SHA256}  /tmp/helm.tgz" | sha256sum -c -; \
         else echo "HELM_SHA256 not given: the download is not verified" >&2; fi \
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
ENV NODE_ENV=production \
    PORT=9095 \
    RULES_PATH=/app/rules \
    HELM_BIN=/usr/local/bin/helm \
    HELM_CACHE_HOME=/tmp/helm/cache \
    HELM_CONFIG_HOME=/tmp/helm/config \
    HELM_DATA_HOME=/tmp/helm/data
RUN groupadd --system --gid 10001 rollguard \
 && useradd --system --uid 10001 --gid rollguard --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin rollguard
WORKDIR /app
COPY --from=deps --chown=root:root /app/node_modules ./node_modules
COPY --from=build --chown=root:root /src/dist ./dist
COPY --chown=root:root package.json ./
COPY --chown=root:root rules ./rules
COPY --from=helm --chown=root:root /out/ /usr/local/bin/
USER 10001:10001
EXPOSE 9095
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||9095)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "dist/main.js"]
CMD ["serve"]
