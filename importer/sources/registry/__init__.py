"""Container registries (OCI distribution v2) and OCI archives as an importer source.

The bytes served are the single regular file under /disk/ of a KubeVirt container-disk
image, streamed out of its layer without unpacking anything else.
"""
