"""JSON writing shared by the result classes."""

import json
import signal
import sys

import pytest

from lrtune.result_io import write_json

resource = pytest.importorskip("resource")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE semantics")
def test_a_write_that_fails_midway_keeps_the_previous_file(tmp_path):
    target = tmp_path / "lr_find.json"
    write_json({"lrs": [0.1]}, target)
    before = target.read_text()
    big = {"lrs": [0.5] * 2000}  # ~ 12 kB, far past the 1 kB limit below
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, not a killed process
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, old_limit[1]))
    try:
        with pytest.raises(OSError):
            write_json(big, target)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert target.read_text() == before and json.loads(before) == {"lrs": [0.1]}
    assert [p.name for p in tmp_path.iterdir()] == ["lr_find.json"]  # no temporary left
