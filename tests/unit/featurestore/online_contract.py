"""What every online store does; each backend's tests subclass ``OnlineStoreContract`` and
provide the ``online`` fixture (after Optuna's storage test suite)."""

from __future__ import annotations

import orjson

from flywheel.featurestore import OnlineStore


class OnlineStoreContract:
    """Subclasses define a pytest fixture ``online`` yielding an empty store."""

    def test_a_written_value_is_read_back_per_key_and_column(self, online: OnlineStore) -> None:
        online.write_chunk("e_store", "sales__v1", [("a", 10.0, b"[1,2]"), ("b", 11.0, b"[3,4]")],
                           run="r", chunk=0)
        assert online.read("e_store", ["sales__v1"], ["b", "a", "zz"]) == [
            [b"[3,4]"], [b"[1,2]"], [None]]

    def test_views_of_one_entity_are_read_in_one_call_and_an_absent_column_reads_none(
            self, online: OnlineStore) -> None:
        online.write_chunk("e_store", "sales__v1", [("a", 1.0, b"[1]")], run="r", chunk=0)
        online.write_chunk("e_store", "stock__v2", [("a", 1.0, b"[\"x\"]")], run="s", chunk=0)
        assert online.read("e_store", ["stock__v2", "never__v1", "sales__v1"], ["a"]) == [
            [b"[\"x\"]", None, b"[1]"]]

    def test_the_views_of_an_entity_read_joined_are_one_array_and_a_missing_view_reads_none(
            self, online: OnlineStore) -> None:
        online.write_chunk("e_store", "sales__v1", [("a", 1.0, b"[1,2]"), ("b", 1.0, b"[3,4]")],
                           run="r", chunk=0)
        online.write_chunk("e_store", "stock__v2", [("a", 1.0, b"[\"x\"]")], run="s", chunk=0)
        laid = online.read_joined("e_store", [], ["stock__v2", "sales__v1"], ["b", "a", "zz"])
        assert laid[0] is None and laid[2] is None  # b lacks stock__v2; zz is not held
        assert laid[1] is not None and laid[1][0] == b""
        assert orjson.loads(laid[1][1]) == ["x", 1, 2]
        assert online.read_joined("e_store", [], ["never__v1"], ["a"]) == [None]

    def test_packed_values_read_joined_are_their_bytes_end_to_end_beside_the_arrays(
            self, online: OnlineStore) -> None:
        one, two = b"\x01\x05\x06", b"\x02\xff"  # packed values lead with 1 or 2
        online.write_chunk("e_store", "a__v1", [("k", 1.0, one), ("j", 1.0, one)], run="r",
                           chunk=0)
        online.write_chunk("e_store", "b__v1", [("k", 1.0, two)], run="s", chunk=0)
        online.write_chunk("e_store", "c__v1", [("k", 1.0, b"[\"x\"]"), ("j", 1.0, b"[1]")],
                           run="t", chunk=0)
        for packed, laid in ((["a__v1", "b__v1"], one + two), (["b__v1", "a__v1"], two + one)):
            held, lacking, absent = online.read_joined("e_store", packed, ["c__v1"],
                                                       ["k", "j", "zz"])
            assert held is not None
            assert (bytes(held[0]), orjson.loads(held[1])) == (laid, ["x"])
            # j lacks b__v1: None, or bytes the caller's checks refuse (fewer, or zeros)
            assert lacking is None or len(lacking[0]) < len(laid) or b"\x00" in lacking[0]
            assert absent is None
        [only] = online.read_joined("e_store", ["a__v1"], [], ["k"])
        assert only is not None and (bytes(only[0]), orjson.loads(only[1])) == (one, [])

    def test_an_older_value_never_overwrites_a_newer_one(self, online: OnlineStore) -> None:
        online.write_chunk("e_store", "sales__v1", [("a", 20.0, b"[\"new\"]")], run="r",
                           chunk=0)
        changed = online.write_chunk("e_store", "sales__v1", [("a", 5.0, b"[\"old\"]")],
                                     run="r", chunk=1)
        assert changed == 0
        assert online.read("e_store", ["sales__v1"], ["a"]) == [[b"[\"new\"]"]]

    def test_finished_chunks_are_remembered_per_run(self, online: OnlineStore) -> None:
        for chunk in (0, 2):
            online.write_chunk("e_store", "sales__v1", [], run="run-1", chunk=chunk)
        assert online.done_chunks("run-1") == {0, 2}
        assert online.done_chunks("run-2") == set()

    def test_meta_values_are_set_read_and_cleared(self, online: OnlineStore) -> None:
        assert online.get_meta("done:sales__v1") is None
        online.set_meta("done:sales__v1", "2024-01-20T00:00:00+00:00")
        assert online.get_meta("done:sales__v1") == "2024-01-20T00:00:00+00:00"
        online.set_meta("done:sales__v1", None)
        assert online.get_meta("done:sales__v1") is None
