from importer.redact import redact


def test_known_secrets_and_url_credentials_are_hidden() -> None:
    text = "GET https://user:hunter22@host/x?X-Amz-Signature=abc&y=1 failed; key=hunter22"
    out = redact(text, ["hunter22"])
    assert "hunter22" not in out
    assert "abc" not in out
    assert "https://***@host" in out
    assert "y=1" in out
