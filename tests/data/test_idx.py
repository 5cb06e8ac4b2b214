import gzip
import struct

import numpy as np
import pytest

from lrtune.data import read_idx
from lrtune.data.idx import write_idx


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """IDX bytes built by hand from the format's description (independent of write_idx)."""
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("compress", [False, True])
def test_reads_hand_built_ubyte_file(tmp_path, compress):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    data = idx_bytes(images)
    path = tmp_path / ("images.gz" if compress else "images")
    path.write_bytes(gzip.compress(data) if compress else data)
    out = read_idx(path)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, images)


def test_reads_big_endian_int32_and_float64(tmp_path):
    ints = np.array([[1, -2, 70000]], dtype=np.int32)
    (tmp_path / "ints").write_bytes(idx_bytes(ints, 0x0C))
    floats = np.array([0.5, -1.25], dtype=np.float64)
    (tmp_path / "floats").write_bytes(idx_bytes(floats, 0x0E))
    np.testing.assert_array_equal(read_idx(tmp_path / "ints"), ints)
    np.testing.assert_array_equal(read_idx(tmp_path / "floats"), floats)
    assert read_idx(tmp_path / "floats").dtype.isnative


@pytest.mark.parametrize("name", ["labels-idx1-ubyte", "labels-idx1-ubyte.gz"])
def test_write_then_read_round_trip(tmp_path, name):
    labels = np.array([5, 0, 4, 1, 9], dtype=np.uint8)
    write_idx(tmp_path / name, labels)
    np.testing.assert_array_equal(read_idx(tmp_path / name), labels)
    assert (tmp_path / name).read_bytes()[:2] == (b"\x1f\x8b" if name.endswith(".gz") else b"\0\0")


def test_truncated_data_names_file_and_problem(tmp_path):
    path = tmp_path / "cut-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros((3, 2, 2), np.uint8))[:-1])
    with pytest.raises(ValueError, match=r"cut-idx3-ubyte: truncated IDX data: shape \(3, 2, 2\)"):
        read_idx(path)


def test_truncated_header(tmp_path):
    path = tmp_path / "head"
    path.write_bytes(bytes([0, 0, 8, 3]) + b"\0\0\0\3")
    with pytest.raises(ValueError, match="head: truncated IDX header"):
        read_idx(path)
    path.write_bytes(b"\0\0")
    with pytest.raises(ValueError, match="head: truncated IDX file"):
        read_idx(path)


def test_truncated_gzip(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.ones((50, 4), np.uint8)))[:-12])
    with pytest.raises(ValueError, match=r"cut.gz: corrupt or truncated gzip"):
        read_idx(path)


@pytest.mark.parametrize("first_bytes", [b"\x01\x00\x08\x01", b"\x00\x00\x07\x01"])
def test_wrong_magic_number(tmp_path, first_bytes):
    path = tmp_path / "magic"
    path.write_bytes(first_bytes + struct.pack(">I", 2) + b"\1\2")
    with pytest.raises(ValueError, match=f"magic: wrong magic number 0x{first_bytes.hex()}"):
        read_idx(path)


def test_shape_that_does_not_match_size(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(np.zeros((2, 2), np.uint8)) + b"\0\0\0")
    with pytest.raises(ValueError, match=r"long: shape \(2, 2\) does not match the size: 4 bytes"):
        read_idx(path)


def test_write_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="dtype int64 has no IDX type code"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
