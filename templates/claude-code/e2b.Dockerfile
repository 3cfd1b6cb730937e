# CodeCourier's E2B template for Claude Code, built under the catalog's name codecourier-claude-code:
# E2B's base image (Debian) with git, bash, Node.js 22 (Claude Code asks for 22 or newer, the
# base image has 20) and the CLI at the version CodeCourier pins in src/agent/packages.rs (a test
# holds this file to it). Build it from a checkout of CodeCourier with E2B's CLI:
#   e2b template create codecourier-claude-code --path templates/claude-code --dockerfile e2b.Dockerfile --cpu-count 2 --memory-mb 1024
FROM e2bdev/base:latest

USER root
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends bash ca-certificates curl git xz-utils \
    && rm -rf /var/lib/apt/lists/*
ARG NODE_VERSION=22.12.0
RUN curl -fsSL "https://nodejs.org/dist/v${NODE_VERSION}/node-v${NODE_VERSION}-linux-x64.tar.xz" \
    | tar -xJ -C /usr/local --strip-components=1 --no-same-owner \
    && node --version && npm --version && git --version
RUN npm install --global --no-audit --no-fund @anthropic-ai/claude-code@2.1.332 \
    && claude --version

USER user
WORKDIR /home/user
