from __future__ import annotations

import io

from cdictl import progressbar


def test_the_bar_counts_bytes_and_moves_back_to_a_resume_offset() -> None:
    out = io.StringIO()
    bar = progressbar.Bar(1000, stream=out, disable=False)
    bar.restart_at(0)
    bar.update(600)
    bar.restart_at(400)  # the server kept 400 bytes of the 600 sent
    bar.update(600)
    bar.close()
    assert bar.position == 1000
    assert out.getvalue().rstrip().splitlines()[-1].split("\r")[-1].startswith("100%")
