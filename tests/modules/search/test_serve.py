import numpy as np

from modules.search.serve import byte_range, thumbnail_strip


def test_byte_range_reads_one_range_of_the_header():
    assert byte_range(None, 100) == (0, 99)
    assert byte_range("bytes=0-9", 100) == (0, 9)
    assert byte_range("bytes=90-200", 100) == (90, 99)
    assert byte_range("bytes=95-", 100) == (95, 99)
    assert byte_range("bytes=-10", 100) == (90, 99)
    assert byte_range("bytes=-500", 100) == (0, 99)


def test_byte_range_refuses_what_the_file_cannot_satisfy():
    for header in ("bytes=100-", "bytes=20-10", "bytes=a-b", "items=0-1", "bytes=0-1,5-6", "bytes=5"):
        assert byte_range(header, 100) is None, header
    assert byte_range("bytes=0-", 0) is None


def test_thumbnail_of_a_missing_file_is_none(tmp_path):
    assert thumbnail_strip(str(tmp_path / "gone.mp4"), np.array([0.0, 0.5])) is None
