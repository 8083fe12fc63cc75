"""A pod's volume over /tmp must not hide the product's checkout when it lives under /tmp.

CI clones into /tmp/fresh; the upload proxy and the token API server run with a read-only
root and an emptyDir at /tmp. Before the fix their containers could not import the
product ("No module named 'apiserver'") on CI only, where the checkout is under /tmp.
"""

from __future__ import annotations

from pathlib import Path

from localcluster import sandbox


def _after(args: list[str], first: list[str], then: list[str]) -> bool:
    """`then` occurs somewhere after the first `first` (bwrap applies them in order)."""
    def at(seq: list[str], start: int = 0) -> int:
        for i in range(start, len(args) - len(seq) + 1):
            if args[i:i + len(seq)] == seq:
                return i
        return -1
    i = at(first)
    return i >= 0 and at(then, i + len(first)) > i


def test_a_checkout_under_tmp_is_bound_again_over_a_tmp_volume(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    volume = tmp_path / "emptydir"
    volume.mkdir()
    spec = sandbox.Spec(argv=["true"], hostname="pod",
                        mounts=[sandbox.Mount(volume, "/tmp")], extra_roots=[checkout])
    args = sandbox.argv(spec, None, "3")
    assert _after(args, ["--bind", str(volume), "/tmp"],
                  ["--ro-bind", str(checkout), str(checkout)])


def test_without_a_tmp_volume_nothing_is_bound_twice(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    spec = sandbox.Spec(argv=["true"], hostname="pod", extra_roots=[checkout])
    args = sandbox.argv(spec, None, "3")
    binds = [i for i in range(len(args) - 2)
             if args[i:i + 3] == ["--ro-bind", str(checkout), str(checkout)]]
    assert len(binds) == 1
