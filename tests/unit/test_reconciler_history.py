"""Rollout undo picks the right revision and keeps today's instance counts; the
status says Complete, Rolling or ProgressDeadlineExceeded as the counts move."""
import pytest

from corral.store.base import AppRecord, DesiredInstance, RevisionRecord
from reconciler.history import UndoError, pick_target, undo_document
from reconciler.model import DesiredApp, DesiredProcess
from reconciler.status import app_status, rollout_failed


def rev(n, command="python app.py", instances=2):
    return RevisionRecord(app="hello", revision=n, hash=f"h{n}", image=f"sha256:{n}",
                          spec={"source": "./hello", "processes": {"web": {"command": command, "instances": instances}}},
                          source_digest=f"sha256:src{n}", generation=n, created_at=float(n))


def record(instances=5, owner=None):
    return AppRecord(name="hello", labels={"team": "web"},
                     spec={"source": "./hello", "processes": {"web": {"command": "new", "instances": instances}}},
                     source_digest="sha256:now", generation=7, resource_version=9, deleting=False,
                     status={"revision": "3"}, created_at=0.0, updated_at=0.0, owner=owner)


def test_undo_goes_to_the_newest_revision_that_is_not_current():
    assert pick_target([rev(3), rev(2), rev(1)], "3").revision == 2


def test_undo_to_a_named_revision_and_the_errors_that_name_what_is_wrong():
    assert pick_target([rev(3), rev(2), rev(1)], "3", to_revision=1).revision == 1
    with pytest.raises(UndoError, match="revision 9 is not in the history \\(kept: 3, 2\\)"):
        pick_target([rev(3), rev(2)], "3", to_revision=9)
    with pytest.raises(UndoError, match="is the current revision already"):
        pick_target([rev(3), rev(2)], "3", to_revision=3)
    with pytest.raises(UndoError, match="no earlier revision"):
        pick_target([rev(3)], "3")


def test_undo_document_takes_the_old_spec_and_source_but_keeps_counts_labels_and_owner():
    doc = undo_document(record(instances=5, owner="gitsource/x@abc"), rev(2, command="old", instances=2))
    assert doc["spec"]["processes"]["web"] == {"command": "old", "instances": 5}
    assert doc["source_digest"] == "sha256:src2"
    assert (doc["labels"], doc["owner"]) == ({"team": "web"}, "gitsource/x@abc")


SPEC = {"command": ["x"], "env": {}}


def status(rows, available, prev=None, now=0.0, count=2, deadline=60.0, unavailable=0):
    app = DesiredApp(name="hello", deleting=False, revision="2", image="sha256:new",
                     processes=(DesiredProcess("web", count, SPEC),), max_surge=1, max_unavailable=unavailable,
                     progress_deadline=deadline)
    return app_status(generation=3, app=app, build=None, rev_hash="h", rows=rows, ready_ids=set(available),
                      available_ids=set(available), unplaced=[], prev=prev, now=now)


def inst(iid, image="sha256:new"):
    return DesiredInstance(id=iid, app="hello", process="web", node="n1", revision="2", image=image, spec=SPEC,
                           created_at=0.0)


def conds(st):
    return {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}


def test_status_counts_and_a_complete_rollout():
    st = status([inst("a"), inst("b")], ["a", "b"])
    assert (st["desired"], st["updated"], st["available"]) == (2, 2, 2)
    assert conds(st)["Progressing"] == ("True", "Complete")
    assert conds(st)["Available"] == ("True", "MinimumInstancesAvailable")


def test_status_rolling_then_deadline_exceeded_when_counts_stand_still():
    rows = [inst("old", image="sha256:old"), inst("a"), inst("b")]
    first = status(rows, ["old", "a"], now=0.0)
    assert conds(first)["Progressing"] == ("True", "Rolling")
    later = status(rows, ["old", "a"], prev=first, now=61.0)
    assert conds(later)["Progressing"] == ("False", "ProgressDeadlineExceeded")
    assert rollout_failed(later, "2") and not rollout_failed(later, "3")
    assert conds(later)["Available"] == ("True", "MinimumInstancesAvailable")  # 2 of 2 still serve


def test_status_unavailable_names_the_process_and_what_it_needs():
    st = status([inst("a"), inst("b")], ["a"])
    assert conds(st)["Available"] == ("False", "MinimumInstancesUnavailable")
    assert "web has 1 available, needs 2" in [c for c in st["conditions"] if c["type"] == "Available"][0]["message"]
