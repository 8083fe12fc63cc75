"""`cdi-apiserver`: the aggregated API server of `upload.cdi.kubevirt.io` (UploadTokenRequest).

`virtctl image-upload` creates an UploadTokenRequest through the kube-apiserver, which
authenticates the user, checks RBAC, and proxies the request here over TLS with its
front-proxy client certificate and the user in `X-Remote-*` headers. This server believes
those headers only from that certificate, checks the user's access again with a
SubjectAccessReview, and answers with a PS256 token (`cdicontract.uploadtoken`) naming
one PVC, which the upload proxy verifies with the public half of the signing key.

Its own top-level package (not part of `controller/`): it shares only `cdicontract` with
the other components. Layers, top to bottom (import-linter keeps them): `cli` (process,
startup, refresh loop) -> `server` (aiohttp app) -> `tls`, `signingkey` (state kept in the
API) -> `kubeapi` (the one module that calls the kube-apiserver), `servingcert`,
`statuses`, `access`, `openapi` -> `tokenrequests`, `authn` -> `group` -> `obj` (all pure
but kubeapi).
"""
