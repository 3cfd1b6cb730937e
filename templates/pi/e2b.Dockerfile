# CodeCourier's E2B template for Pi (catalog name codecourier-pi): E2B's base image, which
# brings Node.js and npm, with git, bash and the CLI at the version CodeCourier pins
# (src/agent/packages.rs; a test holds this file to it). Build it with E2B's CLI:
#   e2b template create codecourier-pi --path templates/pi --dockerfile e2b.Dockerfile --cpu-count 2 --memory-mb 1024
FROM e2bdev/base:latest

USER root
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends bash ca-certificates git \
    && rm -rf /var/lib/apt/lists/* \
    && node --version && npm --version && git --version
RUN npm install --global --no-audit --no-fund @mariozechner/pi-coding-agent@0.73.1 \
    && pi --version

USER user
WORKDIR /home/user
