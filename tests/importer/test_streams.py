from importer.streams import Counter, Tail, peek, tap


def test_peek_returns_head_and_the_whole_stream() -> None:
    chunks = [b"ab", b"", b"cdef", b"gh"]
    head, rest = peek(chunks, 3)
    assert head == b"abc"
    assert b"".join(rest) == b"abcdefgh"


def test_peek_on_a_short_stream() -> None:
    head, rest = peek([b"a"], 10)
    assert head == b"a"
    assert b"".join(rest) == b"a"
    head, rest = peek([], 10)
    assert head == b""
    assert list(rest) == []


def test_tail_keeps_the_last_bytes_across_chunk_sizes() -> None:
    data = bytes(range(256)) * 40
    for size in (1, 7, 511, 512, 513, 4096):
        t = Tail(512)
        for i in range(0, len(data), size):
            t.observe(data[i : i + size])
        assert t.data == data[-512:]


def test_tap_shows_every_chunk_in_order() -> None:
    seen: list[bytes] = []
    c = Counter()
    out = list(tap([b"a", b"bc"], seen.append, c.observe))
    assert out == seen == [b"a", b"bc"]
    assert c.count == 3


def test_chunk_reader_reads_across_chunks_in_any_piece_size() -> None:
    import io

    from importer.streams import ChunkReader

    data = bytes(range(256)) * 300
    chunks = [data[i : i + 997] for i in range(0, len(data), 997)]
    for size in (1, 7, 512, 10240, 100_000):
        r = io.BufferedReader(ChunkReader(iter(chunks)), buffer_size=size)
        out = bytearray()
        while piece := r.read(size):
            out += piece
        assert bytes(out) == data
