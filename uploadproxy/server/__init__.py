"""`cdi-uploadserver`: the per-PVC upload server pod (one upload, then it exits).

The controller runs it as `cdi-uploadserver` (no arguments; `--host`, `--port`,
`--metrics-port` exist for tests and humans) with the environment of cdicontract.upload:

    UPLOADSERVER_TLS_DIR         default /etc/cdi-uploadserver/tls: tls.crt, tls.key
                                 (serving), ca.crt (the CA of the proxy's client cert)
    UPLOADSERVER_CLIENT_NAME     default client.upload-server.cdi.kubevirt.io
    UPLOADSERVER_DEST            default /dev/cdi-block-volume if it exists, else
                                 /data/disk.img (/data for archive content)
    UPLOADSERVER_CONTENT_TYPE    kubevirt (default) or archive
    UPLOADSERVER_IMAGE_SIZE      the PVC's requested size (quantity); unset: unsized
    FILESYSTEM_OVERHEAD          default 0.06; PREALLOCATION true/false
    OWNER_UID                    label of the progress metric
    UPLOADSERVER_TERMINATION_LOG default /dev/termination-log
    UPLOADSERVER_PAUSE_TIMEOUT_SECONDS  default 600
    UPLOADSERVER_LOG_LEVEL       default INFO

It serves HTTPS on 8443 (GET /healthz without a client certificate, for the readiness
probe; every upload path of cdicontract.upload with the proxy's certificate) and the
progress metric kubevirt_cdi_upload_progress_total{ownerUID} on HTTPS 8444 (self-signed,
as the importer's). Exit codes: 0 the image is written (report reason Completed,
message "Upload Complete"); 1 failed for good, failed after a 200 went out (async,
or a sync answer kept alive), or stopped by SIGTERM (report with its reason); 2 bad
configuration or unreadable certificates (report InvalidConfig). A failure a retry may
fix, answered before any 200 (500, 400 for a full volume, or a paused upload whose client
never came back), does not end it: the client may upload again.

Modules: config (env, once), decisions (pure answers), tlsauth (client certificates),
bodyreader (raw or form bodies, streamed), transfer (the importer pipeline in a worker
thread), session (the one upload's state), app (HTTP), metrics, cli.
"""
