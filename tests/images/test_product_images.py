"""What ships: each component's image, as hack/build-images builds it from the Dockerfile.

Its config (entry point, user 107, labels, PATH), its contents (no compiler, no test-only
package, no pip in the venv, qemu-img and nbdkit exactly where the data path runs), that
its Python imports its entry point as uid 107, that uid 107 can write nowhere in it, and
its size.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from cdicontract import images
from tests.images import imagestore, lockfile

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600), pytest.mark.usefixtures("built_images")]

DATAPATH = {"importer", "uploadserver", "cloner"}
ENTRY = {
    "importer": ("cdi-importer", "importer.cli"),
    "controller": ("cdi-controller", "controller.cli"),
    "apiserver": ("cdi-apiserver", "apiserver.cli"),
    "uploadproxy": ("cdi-uploadproxy", "uploadproxy.proxy.cli"),
    "uploadserver": ("cdi-uploadserver", "uploadproxy.server.cli"),
    "cloner": ("cdi-cloner", "cloner.cli"),
}
SITE = "opt/cdi-py/lib/python3.11/site-packages"
COMPILERS = {"gcc", "cc", "c++", "g++", "cpp", "clang", "clang++", "tcc", "make", "ld", "as",
             "cc1", "x86_64-linux-gnu-gcc-12", "gcc-12", "rustc", "cargo", "go"}
TEST_ONLY = {"pytest", "moto", "mypy", "ruff", "atheris", "import-linter", "pytest-xdist",
             "pytest-timeout", "bcrypt", "kubernetes", "sh", "types-requests", "types-pyyaml"}
BUILD_TOOLING = {"pip", "setuptools", "wheel", "pip-tools", "build"}
LIMIT = 250 * 1000 * 1000


def _name(component: str) -> str:
    return images.default_image(component)


@pytest.fixture(params=images.COMPONENTS)
def component(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_config_names_the_entry_point_user_107_and_the_labels(component: str) -> None:
    config = imagestore.config(_name(component))
    script, _ = ENTRY[component]
    assert config["Entrypoint"] == [f"/opt/cdi-py/bin/{script}"]
    assert config["User"] == "107:107"
    assert config.get("WorkingDir", "/") == "/"
    path = next(e for e in config["Env"] if e.startswith("PATH="))
    assert "/opt/cdi-py/bin" in path.removeprefix("PATH=").split(":")
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == images.version()
    assert labels["org.opencontainers.image.title"] == f"cdi-py {component}"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    for key in ("description", "source", "revision"):
        assert labels[f"org.opencontainers.image.{key}"], key


def test_no_compiler_test_package_or_build_tooling_is_in_the_image(component: str) -> None:
    with imagestore.rootfs(_name(component)) as root:
        compilers = [
            str(p.relative_to(root))
            for p in root.glob("**/*")
            if p.name in COMPILERS and not p.is_dir()
            and (p.is_symlink() or os.access(p, os.X_OK))
        ]
        assert not compilers
        assert not list(root.glob("usr/lib/gcc/*/*/cc1"))
        installed = {
            canonicalize_name(d.name.split("-")[0])
            for d in (root / SITE).glob("*.dist-info")
        }
        system = {
            canonicalize_name(d.name.split("-")[0].split(".")[0])
            for d in (root / "usr/lib/python3/dist-packages").glob("*")
        }
    assert not (TEST_ONLY | BUILD_TOOLING) & installed
    assert not BUILD_TOOLING & system
    locked = set(lockfile.read(imagestore.ROOT / "requirements/runtime.txt"))
    assert installed == locked | {"cdi-py"}, "the venv holds exactly the lock and the product"


def test_qemu_img_and_nbdkit_are_only_in_the_data_path_images(component: str) -> None:
    with imagestore.rootfs(_name(component)) as root:
        tools = {t: (root / "usr/bin" / t).exists() for t in ("qemu-img", "nbdkit")}
        curl_plugin = list(root.glob("usr/lib/*/nbdkit/plugins/nbdkit-curl-plugin.so"))
        block_extra = list(root.glob("usr/lib/*/qemu/block-*.so"))
    wanted = component in DATAPATH
    assert tools == {"qemu-img": wanted, "nbdkit": wanted}
    assert bool(curl_plugin) == wanted
    assert not block_extra, "qemu-block-extra's network drivers must stay out"


def test_the_images_python_imports_the_entry_point_as_uid_107(component: str) -> None:
    script, module = ENTRY[component]
    probe = (
        "import os, sys, importlib; "
        f"importlib.import_module({module!r}); "
        "print(os.getuid(), os.getgid(), sys.prefix)"
    )
    result = imagestore.run(_name(component), ["python3", "-c", probe])
    assert result.returncode == 0, result.stdout
    assert result.stdout.split() == ["107", "107", "/opt/cdi-py"]
    shebang = imagestore.run(_name(component), ["head", "-1", f"/opt/cdi-py/bin/{script}"])
    assert shebang.stdout.strip() == "#!/opt/cdi-py/bin/python3"


def test_uid_107_can_write_nowhere_in_the_image(component: str) -> None:
    with imagestore.rootfs(_name(component)) as root:
        writable = []
        for dirpath, dirnames, filenames in os.walk(root):
            rel = Path(dirpath).relative_to(root)
            if rel.parts[:1] in {("proc",), ("sys",), ("dev",)}:
                dirnames.clear()
                continue
            for entry in [dirpath, *(os.path.join(dirpath, f) for f in filenames)]:
                st = os.lstat(entry)
                if stat.S_ISLNK(st.st_mode):
                    continue
                sticky_tmp = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
                if st.st_uid == 107 or (st.st_gid == 107 and st.st_mode & stat.S_IWGRP) or (
                    st.st_mode & stat.S_IWOTH and not sticky_tmp
                ):
                    writable.append(str(Path(entry).relative_to(root)))
    assert not writable
    result = imagestore.run(_name(component), ["sh", "-c", "touch /opt/cdi-py/x || exit 3"])
    assert result.returncode == 3, result.stdout


def test_the_image_is_smaller_than_250_mb(component: str) -> None:
    size = imagestore.size(_name(component))
    print(f"{_name(component)}: {size / 1e6:.1f} MB uncompressed")
    assert size < LIMIT
