# docker.io/cdi-py/testutil:latest: the tests' helper pods' tools (a shell and coreutils,
# python3, nginx, Debian's docker-registry, curl, procps, and moto's S3 server), never
# shipped. No entry point: each pod gives its command.
FROM docker.io/library/debian:bookworm-slim
ENV DEBIAN_FRONTEND=noninteractive
# policy-rc.d: packages must not start their services inside the build.
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-pip python3-venv ca-certificates nginx-light docker-registry curl procps \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
      /var/log/apt /var/log/dpkg.log /var/cache/debconf/*-old \
 && rm -f /usr/sbin/policy-rc.d
COPY requirements/testutil.txt /tmp/testutil.txt
# moto's server in its own venv, from the lock (hashes); the CA bundle is a build secret
# for machines behind a TLS-inspecting proxy, never a layer.
RUN --mount=type=secret,id=cabundle \
    if [ -s /run/secrets/cabundle ]; then export PIP_CERT=/run/secrets/cabundle; fi; \
    python3 -m venv --without-pip /opt/moto \
 && python3 -m pip --python /opt/moto/bin/python install --no-cache-dir \
      --disable-pip-version-check --no-deps --require-hashes -r /tmp/testutil.txt \
 && ln -s /opt/moto/bin/moto_server /usr/local/bin/moto_server \
 && rm /tmp/testutil.txt
