"""`cdictl`: the command line. Messages on stdout, the error on stderr, exit 1 on failure.

As virtctl: every failure, a bad flag included, exits 1 with one line on stderr.
"""

from __future__ import annotations

import sys

from cdictl import kube, options, progressbar, upload

USAGE = """usage: cdictl upload dv|pvc NAME --image-path FILE [--size SIZE] [flags]

Commands:
  upload    Upload a VM image to a DataVolume/PersistentVolumeClaim
            (virtctl image-upload's flags; `cdictl upload --help` lists them)
"""


def _say(text: str) -> None:
    print(text, flush=True)


def run_upload(argv: list[str]) -> int:
    try:
        opts = options.parse(argv)
    except options.UsageError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        client, namespace = kube.load(opts.kubeconfig, opts.namespace)
        uploader = upload.Uploader(
            kube=client, namespace=namespace, say=_say,
            progress=progressbar.Bar)
        uploader.run(opts)
    except (upload.UploadFailed, kube.KubeError) as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 1
    command, rest = args[0], args[1:]
    if command in ("upload", "image-upload"):
        return run_upload(rest)
    print(f'unknown command "{command}" for "cdictl"', file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
