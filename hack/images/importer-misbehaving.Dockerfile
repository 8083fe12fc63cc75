# docker.io/cdi-py/importer-misbehaving:latest: the importer image with an entry point that
# serves a hanging or flooding metrics endpoint for DataVolumes whose source URL asks for
# it (hack/images/misbehave.py), and runs the real importer for every other. The tests and
# bench/bench_tenant.py point the controller's IMPORTER_IMAGE at it. Never shipped.
ARG VERSION=0.0.0
FROM quay.io/cdi-py/importer:${VERSION}
COPY hack/images/misbehave.py /opt/cdi-py-misbehave/misbehave.py
ENTRYPOINT ["/opt/cdi-py/bin/python", "/opt/cdi-py-misbehave/misbehave.py"]
