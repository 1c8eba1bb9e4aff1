"""The layer keys and the builders' heartbeats: one first key however many ask at once, rotation, liveness."""
import threading


def test_the_first_key_is_made_once_whoever_asks_first(store, open_twin):
    twins = [open_twin() for _ in range(4)]
    got = []

    def ask(s):
        got.append(s.layer_keys())
    threads = [threading.Thread(target=ask, args=(s,)) for s in twins]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and all(keys == got[0] for keys in got)
    (generation, key), = got[0]
    assert generation == 1 and len(key) == 32
    assert store.layer_keys() == got[0]


def test_a_rotation_adds_a_newer_key_and_keeps_the_one_before(store):
    first = store.layer_keys()[0]
    assert store.rotate_layer_key() == 2
    keys = store.layer_keys()
    assert [g for g, _ in keys] == [2, 1] and keys[1] == first and keys[0][1] != first[1]
    assert store.rotate_layer_key() == 3
    assert [g for g, _ in store.layer_keys()] == [3, 2]
    assert [g for g, _ in store.layer_keys(keep=5)] == [3, 2, 1]


def test_builders_say_where_they_serve_and_how_long_ago(store):
    assert store.list_builders() == []
    store.builder_seen("b2", "http://build2:7072")
    store.builder_seen("b1", "http://build1:7072")
    store.builder_seen("b1", "http://10.0.0.3:7072")   # moved: the latest address counts
    got = store.list_builders()
    assert [(b.name, b.url) for b in got] == [("b1", "http://10.0.0.3:7072"), ("b2", "http://build2:7072")]
    assert all(0 <= b.age < 5 for b in got)


def test_corral_rotate_layer_key_adds_a_key_to_the_store(tmp_path):
    import os
    import subprocess
    import sys

    from corral.store import open_store
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    dsn = f"sqlite:///{tmp_path / 'corral.db'}"
    store = open_store(dsn)
    try:
        first = store.layer_keys()
        done = subprocess.run([sys.executable, "-m", "corral", "rotate-layer-key"], cwd=root, capture_output=True,
                              text=True, env=dict(os.environ, CORRAL_STORE=dsn), timeout=60)
        assert done.returncode == 0, done.stderr
        assert "generation 2 made" in done.stdout and "generation 1 stay good" in done.stdout
        assert [g for g, _ in store.layer_keys()] == [2, 1] and store.layer_keys()[1] == first[0]
        gone = subprocess.run([sys.executable, "-m", "corral", "rotate-layer-key"], cwd=root, capture_output=True,
                              text=True, env={k: v for k, v in os.environ.items() if k != "CORRAL_STORE"}, timeout=60)
        assert gone.returncode != 0 and gone.stderr.startswith("error: no store") and gone.stderr.count("\n") == 1
    finally:
        store.close()
