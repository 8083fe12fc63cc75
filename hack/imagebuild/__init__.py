"""Builds cdi-py's container images with buildah and pushes them to a registry.

`hack/build-images` is the command; `spec` says which images exist and from what,
`inputs` keys each one by its inputs, `base` makes the Debian base with mmdebstrap,
`buildah` and `skopeo` are the two tools' edges, `cli` ties them together.
"""
