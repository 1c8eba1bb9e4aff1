"""The README's quickstart, read out of README.md: the commands a newcomer types, in order.

:func:`quickstart` parses the shell block that follows "In another terminal"
(the commands run against the cluster ``./up`` started); :data:`EXPECT` says,
per verb, what each must show. A command the table does not know fails the
unit test of this module, so a README edit that adds one says what it should do.
"""
import os
import re
import shlex

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(ROOT, "README.md")
BLOCK = re.compile(r"In another terminal:\s*\n+```sh\n(.*?)\n```", re.S)


class Step:
    """One quickstart command: ``argv`` as the shell splits it, ``line`` as written, ``notes``
    the comment lines just above it (what the user does first, such as editing the manifest)."""

    def __init__(self, line, notes):
        self.line = line
        self.argv = shlex.split(line, comments=True)
        self.notes = notes

    @property
    def verb(self):
        """The words after ``corral`` that name what it does (``("get", "apps")``, ``("logs",)``)."""
        words = [w for w in self.argv[1:] if not w.startswith("-")]
        two = {"get", "describe", "rollout", "node", "delete"}
        return tuple(words[:2]) if words and words[0] in two else tuple(words[:1])

    def __repr__(self):
        return f"Step({self.line!r})"


def quickstart(text=None):
    """The :class:`Step` list of the README's quickstart block, in order."""
    if text is None:
        with open(README, encoding="utf-8") as f:
            text = f.read()
    found = BLOCK.search(text)
    if not found:
        raise AssertionError("README.md has no ```sh block after 'In another terminal:'")
    steps, notes = [], []
    for raw in found.group(1).splitlines():
        line = raw.strip()
        if line.startswith("#"):
            notes.append(line.lstrip("# "))
        elif line:
            steps.append(Step(line, notes))
            notes = []
    return steps


# verb -> what the runner (tests/e2e/test_readme.py) checks; every verb of the quickstart is here
EXPECT = {
    ("get", "nodes"): "both nodes listed, ready",
    ("get", "instances"): "the example's instances, each address answering HTTP",
    ("get", "apps"): "JSON naming the example",
    ("describe", "app"): "the spec, conditions, instances and events of the example",
    ("diff",): "after the edit its notes ask for: exit 1 and the change of instances",
    ("apply",): "the edited manifest available with --wait",
    ("logs",): "with -f: output of the instances, and a clean end on Ctrl-C",
    ("exec",): "a Python in an instance's environment, fed from stdin",
    ("rollout", "history"): "the example's revisions",
    ("node", "drain"): "the node empties; its instances run on the other node",
    ("backup",): "a backup file written where asked",
    ("delete", "app"): "the example gone, no instance process left",
}
