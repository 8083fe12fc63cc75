# syntax=docker/dockerfile:1
# cdi-py's images: one per component (quay.io/cdi-py/<component>:<version>), built with
# `hack/build-images` (buildah bud --layers --target <component>).
#
# One image per component rather than one image with several entry points: each image has
# its own ENTRYPOINT, so a Deployment or a pod names only the image (as CDI's do), the
# controller and the API server carry no qemu-img/nbdkit (the data path's attack surface),
# and every layer below the last is shared, so six images cost one on a node or a registry.
#
# Layers, from the least to the most often changed:
#   runtime   Debian's python3 + ca-certificates + the user 107 CDI's pods run as
#   deps      the venv /opt/cdi-py with the locked runtime dependencies (no pip in it)
#   datapath  + qemu-utils and nbdkit (importer, uploadserver, cloner)
#   product   the cdi-py wheel, installed into the same venv: the only layer a source
#             change rebuilds
# The base is Debian's bookworm-slim; where no public registry is reachable,
# hack/build-images makes it from Debian's packages with mmdebstrap under that same name.
ARG BASE=docker.io/library/debian:bookworm-slim

FROM ${BASE} AS runtime
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
      /var/log/apt /var/log/dpkg.log /var/cache/debconf/*-old \
 && groupadd --system -g 107 qemu-cdi \
 && useradd --system -u 107 -g 107 -d /nonexistent -M -s /usr/sbin/nologin qemu-cdi
ENV PATH=/opt/cdi-py/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Throwaway: pip, setuptools and binutils live only here, never in a shipped layer.
FROM runtime AS builder
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv binutils \
 && rm -rf /var/lib/apt/lists/*
COPY requirements/runtime.txt requirements/build.txt /tmp/
# Wheels only (--only-binary): no compiler is needed, none is installed. The CA bundle is a
# build secret for machines behind a TLS-inspecting proxy; it never lands in a layer.
RUN --mount=type=secret,id=cabundle \
    if [ -s /run/secrets/cabundle ]; then export PIP_CERT=/run/secrets/cabundle; fi; \
    python3 -m venv /opt/cdi-py \
 && /opt/cdi-py/bin/pip install --no-cache-dir --disable-pip-version-check \
      --no-deps --require-hashes --only-binary=:all: -r /tmp/runtime.txt \
 && /opt/cdi-py/bin/pip install --no-cache-dir --disable-pip-version-check \
      --no-deps --require-hashes --only-binary=:all: -r /tmp/build.txt
# What ships of the venv: the same tree without pip and the wheel-building tools of
# requirements/build.txt (a venv keeps working without them; nothing installs into it at
# run time), and its extension modules without debug sections (zstandard's wheels carry
# 20 MB of them), as Debian's dh_strip does for its own.
RUN cp -a /opt/cdi-py /venv \
 && cd /venv/lib/python3.11/site-packages \
 && rm -rf pip pip-* setuptools setuptools-* pkg_resources _distutils_hack \
      distutils-precedence.pth wheel wheel-* packaging packaging-* \
 && rm -f /venv/bin/pip /venv/bin/pip3 /venv/bin/pip3.11 /venv/bin/wheel \
 && find /venv -name '*.so' -type f -exec strip --strip-unneeded {} +

# Throwaway too: the product's wheel, built with the venv's setuptools (no build isolation:
# nothing is fetched) and installed under /product with the venv's interpreter in its
# scripts' #! lines. A separate stage so that a source change leaves `builder` (and so the
# deps layer copied from it) untouched.
FROM builder AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cdicontract cdicontract
COPY importer importer
COPY uploadproxy uploadproxy
COPY controller controller
COPY apiserver apiserver
COPY cdictl cdictl
COPY cloner cloner
RUN /opt/cdi-py/bin/pip wheel --no-cache-dir --disable-pip-version-check --no-deps \
      --no-build-isolation -w /wheel . \
 && /opt/cdi-py/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps \
      --prefix /product /wheel/*.whl

FROM runtime AS deps
COPY --from=builder /venv /opt/cdi-py

# qemu-img converts images; nbdkit's curl plugin gives it random access to HTTP(S)/S3
# sources, so no scratch copy is needed. No qemu-block-extra: its curl/ssh/iscsi/rbd/
# gluster/nfs block drivers are network code inside the process that parses untrusted
# images, and nothing uses them (qemu-img only ever opens a local file or nbdkit's socket).
# qemu-utils only recommends it, so --no-install-recommends is what keeps it out.
#
# ICU's 36 MB are left out with dpkg's own path-exclude (as the base leaves out docs): only
# nbdkit's nbd plugin needs them (through libnbd0 -> libxml2), and nothing here runs it;
# nbdkit itself, its curl plugin, its filters and qemu-img link none of them
# (tests/images/test_product_images.py runs both).
FROM deps AS datapath
ARG DEBIAN_FRONTEND=noninteractive
RUN echo 'path-exclude=/usr/lib/*/libicu*' > /etc/dpkg/dpkg.cfg.d/cdi-py-no-icu \
 && apt-get update \
 && apt-get install -y --no-install-recommends qemu-utils nbdkit \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
      /var/log/apt /var/log/dpkg.log /var/cache/debconf/*-old

FROM deps AS control-product
COPY --from=wheel /product/ /opt/cdi-py/
ARG VERSION=0.0.0
ARG REVISION=unknown
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/cdi-py/cdi-py" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 107:107
WORKDIR /

FROM datapath AS datapath-product
COPY --from=wheel /product/ /opt/cdi-py/
ARG VERSION=0.0.0
ARG REVISION=unknown
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/cdi-py/cdi-py" \
      org.opencontainers.image.licenses="Apache-2.0"
USER 107:107
WORKDIR /

# One small stage per component: its entry point, title and description; the user, the
# working directory and the version labels (VERSION and REVISION from hack/build-images: the
# package version, the git commit) come from the product stage below it.
FROM datapath-product AS importer
LABEL org.opencontainers.image.title="cdi-py importer" \
      org.opencontainers.image.description="Imports a disk image from HTTP(S), S3, GCS or a registry into a volume (CDI's cdi-importer)"
ENTRYPOINT ["/opt/cdi-py/bin/cdi-importer"]

FROM datapath-product AS uploadserver
LABEL org.opencontainers.image.title="cdi-py uploadserver" \
      org.opencontainers.image.description="Receives one upload or clone stream into a volume (CDI's cdi-uploadserver)"
EXPOSE 8443
ENTRYPOINT ["/opt/cdi-py/bin/cdi-uploadserver"]

FROM datapath-product AS cloner
LABEL org.opencontainers.image.title="cdi-py cloner" \
      org.opencontainers.image.description="Streams a source volume to a clone target (CDI's cdi-cloner)"
ENTRYPOINT ["/opt/cdi-py/bin/cdi-cloner"]

FROM control-product AS controller
LABEL org.opencontainers.image.title="cdi-py controller" \
      org.opencontainers.image.description="Reconciles DataVolumes into populated PVCs (CDI's cdi-controller)"
ENTRYPOINT ["/opt/cdi-py/bin/cdi-controller"]

FROM control-product AS apiserver
LABEL org.opencontainers.image.title="cdi-py apiserver" \
      org.opencontainers.image.description="Serves upload.cdi.kubevirt.io UploadTokenRequests (CDI's cdi-apiserver)"
EXPOSE 8443
ENTRYPOINT ["/opt/cdi-py/bin/cdi-apiserver"]

FROM control-product AS uploadproxy
LABEL org.opencontainers.image.title="cdi-py uploadproxy" \
      org.opencontainers.image.description="Authenticates uploads and routes them to their upload server (CDI's cdi-uploadproxy)"
EXPOSE 8443
ENTRYPOINT ["/opt/cdi-py/bin/cdi-uploadproxy"]
