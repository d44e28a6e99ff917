"""The checkpoint-state guards of tidemark.stream.admission (no services: files and numbers)."""

from tidemark.stream.admission import orphan_state_problem, spark_last_batch, stale_state_problem


def _spark_offsets(checkpoint, *batches):
    offsets = checkpoint / "spark" / "offsets"
    offsets.mkdir(parents=True)
    for b in batches:
        (offsets / str(b)).write_text("v1\n{}\n")
        (offsets / f".{b}.crc").write_text("")  # Hadoop's checksum files are not batches


def test_the_newest_planned_batch_comes_from_the_offsets_log(tmp_path):
    assert spark_last_batch(str(tmp_path)) is None
    _spark_offsets(tmp_path, 0, 1, 2, 10, 9)
    assert spark_last_batch(str(tmp_path)) == 10


def test_a_removed_spark_checkpoint_under_a_committed_identity_is_refused():
    problem = stale_state_problem("/ck", "abc", committed=7, spark_last=None)
    assert problem and "up to 7" in problem and "is missing" in problem and "tidemark stream-promote /ck" in problem
    rolled_back = stale_state_problem("/ck", "abc", committed=7, spark_last=3)
    assert rolled_back and "ends at micro-batch 3" in rolled_back and "from 4 again" in rolled_back


def test_healthy_and_never_committed_checkpoints_start():
    assert stale_state_problem("/ck", "abc", committed=7, spark_last=7) is None
    assert stale_state_problem("/ck", "abc", committed=7, spark_last=8) is None  # batch 8 planned, not committed
    # An identity that never committed a batch (the first start died before its first batch): nothing to skip.
    assert stale_state_problem("/ck", "abc", committed=None, spark_last=None) is None


def test_spark_state_without_an_identity_file_is_refused():
    assert orphan_state_problem("/ck", has_identity=False, spark_last=None) is None  # a fresh checkpoint
    assert orphan_state_problem("/ck", has_identity=True, spark_last=5) is None
    problem = orphan_state_problem("/ck", has_identity=False, spark_last=5)
    assert problem and "tidemark_stream.json" in problem and "up to 5" in problem
