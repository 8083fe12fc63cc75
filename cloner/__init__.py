"""`cdi-cloner`: the source pod of a host-assisted clone.

It reads the source volume (mounted read-only) and streams it, sparse and compressed
where that pays, to the target's upload server in clone mode over mutual TLS, in the
format of `cdicontract.clonestream`; it resumes where the server says it stands after a
broken connection, and exits 0 only when the server confirmed the digest and the data.

Modules, from the edge inward: `cli` (options, report, exit code), `sender` (HTTPS,
retries, resume), `frames` (extents -> encoded frames, compression, digest), `sources`
(the image file or device's data extents; the volume's files as a tar).
"""
