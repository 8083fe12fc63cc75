# One image, several entry points: cdi-importer, cdi-controller, cdi-uploadproxy,
# cdi-uploadserver. The pod spec's `command` picks the component.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cdicontract cdicontract
COPY importer importer
COPY uploadproxy uploadproxy
COPY controller controller
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
# qemu-img (with the curl/ssh block drivers) converts images; nbdkit's curl plugin gives
# qemu-img random access to HTTP(S)/S3 sources so no scratch copy is needed.
RUN apt-get update \
 && apt-get install -y --no-install-recommends qemu-utils qemu-block-extra nbdkit ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# CDI runs its data-path pods as user 107 (qemu); keep that so existing PSA/SCC setups fit.
RUN groupadd -g 107 qemu-cdi && useradd -u 107 -g 107 -d /nonexistent -s /usr/sbin/nologin qemu-cdi
USER 107:107
EXPOSE 8443
ENTRYPOINT ["cdi-importer"]
