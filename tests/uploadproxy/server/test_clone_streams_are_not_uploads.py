"""A server in upload mode (the proxy's) refuses a clone stream on its upload paths."""

from __future__ import annotations

from cdicontract import clonestream as cs


def test_an_upload_path_refuses_a_clone_stream(upload_server) -> None:
    server = upload_server()
    with server.client() as c:
        r = c.post(
            server.url("/v1beta1/upload"), data=b"x", headers={"Content-Type": cs.MEDIA_TYPE}
        )
        assert r.status_code == 400 and "clone mode" in r.text
        assert c.post(server.url("/v1beta1/clone"), data=b"x").status_code == 404
