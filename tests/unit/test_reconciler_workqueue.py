"""The leader's work queue: events collapse, a key is never worked twice at
once, failures back off per key, and nothing added is ever lost."""
from reconciler.workqueue import WorkQueue


def test_adds_of_one_key_collapse_and_keep_arrival_order():
    q = WorkQueue()
    q.add_all(["b", "a", "b", "a", "c"])
    assert q.take(now=0) == ["b", "a", "c"]
    assert q.take(now=0) == []


def test_a_key_being_worked_is_not_handed_out_again_until_done():
    q = WorkQueue()
    q.add("a")
    assert q.take(0) == ["a"]
    q.add("a")  # an event while "a" is being synced
    assert q.take(0) == []
    q.done("a")
    assert q.take(0) == ["a"]  # the event is not lost


def test_done_without_a_new_add_does_not_requeue():
    q = WorkQueue()
    q.add("a")
    q.take(0)
    q.done("a")
    assert q.take(0) == [] and len(q) == 0


def test_retry_backs_off_per_key_doubling_up_to_the_cap():
    q = WorkQueue(base_delay=1.0, max_delay=4.0)
    delays = []
    for _ in range(5):
        q.retry("a", now=100.0)
        delays.append(q.wait_hint(100.0, longest=60))
        assert q.take(100.0 + delays[-1] - 0.01) == []
        assert q.take(100.0 + delays[-1]) == ["a"]
        q.done("a")
    assert delays == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert q.failures("a") == 5
    q.forget("a")
    q.retry("a", now=0.0)
    assert q.wait_hint(0.0, longest=60) == 1.0


def test_backoff_of_one_key_does_not_delay_another():
    q = WorkQueue(base_delay=10.0)
    q.retry("broken", now=0.0)
    q.add("fine")
    assert q.wait_hint(0.0, longest=5) == 0.0
    assert q.take(0.0) == ["fine"]
    assert q.wait_hint(0.0, longest=5) == 5
    assert q.take(10.0) == ["broken"]


def test_an_add_during_backoff_syncs_at_once():
    q = WorkQueue(base_delay=10.0)
    q.retry("a", now=0.0)
    q.add("a")
    assert q.take(0.0) == ["a"]
    q.done("a")
    assert q.take(10.0) == ["a"]  # the retry still comes; a sync is idempotent


def test_a_worker_that_does_not_lead_sleeps_its_full_time_though_work_is_queued():
    """A follower takes no work: with a hint of 0 for what is queued it woke at once, again and again (a core spun)."""
    q = WorkQueue()
    q.add("web")
    assert q.wait_hint(0.0, longest=0.5) == 0.0
    assert q.wait_hint(0.0, longest=0.5, leading=False) == 0.5


def test_a_key_backing_off_says_so_until_it_is_queued_again():
    q = WorkQueue(base_delay=1.0)
    q.add("a")
    [key] = q.take(0.0)
    q.done(key)
    q.retry(key, 0.0)
    assert q.backing_off("a") and q.take(0.5) == []
    assert q.take(1.0) == ["a"] and not q.backing_off("a")
