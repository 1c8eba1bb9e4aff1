"""The mounts of an instance's namespace (nodeagent/sandbox.py's plan), by table: what is hidden,
what is bound back and how, in which order."""
import pytest

from nodeagent.sandbox import plan

DATA, IMAGES = "/var/lib/corral", "/var/lib/corral/images"


def test_the_data_dir_is_hidden_and_only_the_instances_own_folders_come_back():
    steps = plan(hide=[DATA, IMAGES],
                 keep_ro=[f"{IMAGES}/abc", f"{IMAGES}/env/e1", f"{IMAGES}/code/c1", "/usr"],
                 keep_rw=[f"{DATA}/home/corral-shop", f"{DATA}/logs/shop-web-1"],
                 mask=["/etc/corral/key"])
    assert steps == [
        ["tmp", "/tmp"],
        ["hide", DATA],                                   # the images folder lies under it: one tmpfs
        ["bind", f"{DATA}/home/corral-shop", "rw"],       # shallower first: a parent before a child
        ["bind", f"{IMAGES}/abc", "ro"],
        ["bind", f"{DATA}/logs/shop-web-1", "rw"],
        ["bind", f"{IMAGES}/code/c1", "ro"],
        ["bind", f"{IMAGES}/env/e1", "ro"],               # /usr is not hidden: seen as it is, no bind
        ["mask", "/etc/corral/key"],
        ["seal", DATA],
    ]


def test_folders_under_tmp_come_back_into_the_fresh_tmp_and_nothing_there_is_hidden_twice():
    data = "/tmp/pytest-of-root/t0/node"
    steps = plan(hide=[data, f"{data}/images"], keep_ro=[f"{data}/images/abc"], keep_rw=[f"{data}/logs/i"],
                 mask=[f"{data}/secret"])
    assert steps == [["tmp", "/tmp"], ["bind", f"{data}/images/abc", "ro"], ["bind", f"{data}/logs/i", "rw"]]


def test_a_folder_under_a_kept_one_of_the_same_kind_is_not_bound_again_one_of_another_kind_is():
    steps = plan(hide=["/srv/d"], keep_ro=["/srv/d/img", "/srv/d/img/app"], keep_rw=["/srv/d/img/app/cache"])
    assert [s for s in steps if s[0] == "bind"] == [["bind", "/srv/d/img", "ro"],
                                                     ["bind", "/srv/d/img/app/cache", "rw"]]


def test_separate_hidden_folders_each_get_a_tmpfs_and_are_sealed():
    steps = plan(hide=["/srv/images", "/srv/data"])
    assert steps == [["tmp", "/tmp"], ["hide", "/srv/data"], ["hide", "/srv/images"],
                     ["seal", "/srv/data"], ["seal", "/srv/images"]]


@pytest.mark.parametrize("bad", ["relative/dir", "/srv/../etc", "/", "/srv/"])
def test_a_path_that_is_not_absolute_and_normal_is_refused(bad):
    with pytest.raises(ValueError, match="must be absolute, normal and not /"):
        plan(hide=[bad])
