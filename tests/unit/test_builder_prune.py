"""Which cache entries go: least recently used first, down to the limit, never a kept one."""
from hypothesis import given, strategies as st
import pytest

from builder.prune import Entry, plan_evictions

A, B, C, D = Entry("a", 40, 1.0), Entry("b", 30, 2.0), Entry("c", 20, 3.0), Entry("d", 10, 4.0)


@pytest.mark.parametrize("entries, limit, keep, gone", [
    ([A, B, C, D], 100, set(), []),
    ([A, B, C, D], 0, set(), []),
    ([A, B, C, D], None, set(), []),
    ([A, B, C, D], 99, set(), ["a"]),
    ([A, B, C, D], 60, set(), ["a"]),
    ([A, B, C, D], 59, set(), ["a", "b"]),
    ([D, C, B, A], 59, set(), ["a", "b"]),
    ([A, B, C, D], 59, {"a"}, ["b", "c"]),
    ([A, B, C, D], 5, {"d"}, ["a", "b", "c"]),
    ([Entry("y", 5, 1.0), Entry("x", 5, 1.0)], 5, set(), ["x"]),
], ids=["fits", "zero-is-no-limit", "none-is-no-limit", "one-over", "exactly-at-limit", "two-go",
        "order-of-input-is-irrelevant", "kept-one-is-skipped", "kept-alone-over-the-limit", "tie-by-key"])
def test_plan_evictions(entries, limit, keep, gone):
    assert plan_evictions(entries, limit, keep) == gone


entries_st = st.lists(st.builds(Entry, st.text(max_size=3), st.integers(0, 100), st.floats(0, 10)),
                      unique_by=lambda e: e.key, max_size=12)


@given(entries_st, st.integers(1, 500), st.data())
def test_the_rest_fits_unless_kept_ones_alone_exceed_and_what_goes_is_older_than_what_stays(entries, limit, data):
    keep = set(data.draw(st.lists(st.sampled_from([e.key for e in entries]) if entries else st.nothing())))
    gone = plan_evictions(entries, limit, keep)
    left = [e for e in entries if e.key not in gone]
    assert not set(gone) & keep and len(set(gone)) == len(gone)
    kept_size = sum(e.size for e in entries if e.key in keep)
    assert sum(e.size for e in left) <= max(limit, kept_size) or not [e for e in left if e.key not in keep]
    if gone:
        newest_gone = max((e.last_used, str(e.key)) for e in entries if e.key in gone)
        assert all((e.last_used, str(e.key)) > newest_gone or e.key in keep for e in left)


def test_the_cache_sizes_come_from_the_flags_or_the_settings(tmp_path):
    from corral.cli.main import parser
    from corral.settings import load_timings
    args = parser().parse_args(["builder", "--store", "s", "--cache-dir", "c", "--secret-file", "f",
                                "--layer-cache-size", "20Gi", "--wheel-cache-size", "0"])
    assert (args.layer_cache_size, args.wheel_cache_size) == (20 << 30, 0)
    settings = tmp_path / "settings.yaml"
    settings.write_text("builder_layer_cache: 1000\n")
    assert load_timings(str(settings)).builder_layer_cache == 1000


def test_a_cache_size_that_is_not_one_is_one_sentence_naming_the_flag(capsys):
    from corral.cli.main import parser
    with pytest.raises(SystemExit):
        parser().parse_args(["builder", "--store", "s", "--cache-dir", "c", "--secret-file", "f",
                             "--layer-cache-size", "5TB"])
    assert "argument --layer-cache-size: '5TB' is not a size (bytes, or a number with Ki, Mi or Gi" in capsys.readouterr().err
