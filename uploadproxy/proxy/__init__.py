"""The upload proxy (`cdi-uploadproxy`): checks an upload token, finds the PVC's upload
server and streams the request body to it over mutual TLS.

Stateless: every request carries its token, and the PVC's annotations in the API say
where to go, so any number of replicas serve behind one Service. It never imports the
importer: it verifies tokens and moves bytes.

Modules, in the order a request meets them: `cors` and `accesslog` (middlewares),
`auth` (the bearer token), `target` (is the PVC ready for an upload?), `kube` (reading
PVCs), `forward` (streaming to the upload server), with `credentials` keeping the key
and certificates current, `settings` the flags and `app`/`cli` wiring it together.
"""
