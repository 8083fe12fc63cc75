"""The upload proxy (`cdi-uploadproxy`): checks an upload token, finds the PVC's upload
server and streams the request body to it over mutual TLS.

Stateless: every request carries its token, and the PVC's annotations in the API say
whether and where to go, so any number of replicas serve behind one Service. It never
imports the importer or the controller (import-linter): it verifies tokens and moves
bytes.

Modules, in the order a request meets them: `app` (routes, CORS and refusal
middlewares, handlers), `cors`, `auth` (the bearer token), `target` (is the PVC ready
for an upload?), `forward` (streaming to the upload server and back); around them
`credentials` (token key and client TLS read through the API, kept current), `kube`
(the few read-only API calls), `tls` (serving certificate, PEM pairs), `settings`
(flags), `metrics`, `accesslog`, `refusal`, and `cli` (the entry point).
"""
