"""The Debian base's bootstrap command and its cache key (pure)."""

from __future__ import annotations

from pathlib import Path

from imagebuild import base


def test_the_base_is_a_minbase_without_docs_or_usrmerge() -> None:
    argv = base.mmdebstrap_argv(Path("/tmp/out.tar"))
    assert argv[0] == "mmdebstrap"
    assert "--variant=minbase" in argv
    # merged /usr by the hook, not by the usrmerge package (which pulls in all of perl)
    assert "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr" in argv
    for excluded in ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*"):
        assert f"--dpkgopt=path-exclude={excluded}" in argv
    assert argv[-4:] == ["/tmp/out.tar", *base.MIRRORS]


def test_the_key_ignores_the_output_path_and_is_stable() -> None:
    assert base.base_key() == base.base_key()
    assert len(base.base_key()) == 64
