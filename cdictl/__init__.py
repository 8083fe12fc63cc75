"""cdictl: the user's side of cdi-py (today: `cdictl upload`, virtctl image-upload's twin).

Layers, top to bottom: `cli` (argv, exit codes, messages) -> `upload` (the flow) ->
`kube` (the one module that talks to the API server) and `transfer` (the one module that
talks HTTP to the upload proxy) -> pure decisions (`options`, `manifests`, `readiness`,
`resume`, `checksum`). cdictl never imports the importer or the controller.
"""
