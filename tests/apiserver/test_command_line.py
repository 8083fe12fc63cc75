"""`cdi-apiserver`'s configuration: read once, bad values refused before anything starts."""

from __future__ import annotations

import pytest

from apiserver import cli


def test_the_namespace_comes_from_the_downward_api_env(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CDI_NAMESPACE", "cdi-system")
    args = cli.parse_args([])
    assert (args.namespace, args.port, args.service, args.refresh_seconds) == (
        "cdi-system", 8443, "cdi-apiserver", 30.0)
    assert cli.parse_args(["--namespace", "other"]).namespace == "other"


@pytest.mark.parametrize(("argv", "needle"), [
    pytest.param([], "CDI_NAMESPACE is required", id="no-namespace"),
    pytest.param(["--namespace", "cdi", "--port", "0"], "--port must be", id="port"),
    pytest.param(["--namespace", "cdi", "--refresh-seconds", "0"], "must be positive",
                 id="refresh"),
])
def test_bad_configuration_exits_with_a_message(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str],
                                                argv: list[str], needle: str):
    monkeypatch.delenv("CDI_NAMESPACE", raising=False)
    with pytest.raises(SystemExit) as info:
        cli.parse_args(argv)
    assert info.value.code == 2
    assert needle in capsys.readouterr().err
