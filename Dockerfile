# One image, several entry points: cdi-importer, cdi-controller, cdi-uploadproxy,
# cdi-uploadserver, cdi-cloner. The pod spec's `command` picks the component.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cdicontract cdicontract
COPY importer importer
COPY uploadproxy uploadproxy
COPY cloner cloner
COPY controller controller
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
# qemu-img converts images; nbdkit's curl plugin gives it random access to HTTP(S)/S3
# sources, so no scratch copy is needed. No qemu-block-extra: its curl/ssh/iscsi/rbd/
# gluster/nfs block drivers are network code inside the process that parses untrusted
# images, and nothing uses them (qemu-img only ever opens a local file or nbdkit's socket).
# qemu-utils only recommends it, so --no-install-recommends is what keeps it out.
RUN apt-get update \
 && apt-get install -y --no-install-recommends qemu-utils nbdkit ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# CDI runs its data-path pods as user 107 (qemu); keep that so existing PSA/SCC setups fit.
RUN groupadd -g 107 qemu-cdi && useradd -u 107 -g 107 -d /nonexistent -s /usr/sbin/nologin qemu-cdi
USER 107:107
EXPOSE 8443
ENTRYPOINT ["cdi-importer"]
