"""What the whole suite shares: each test's tier, and what the run requires of the machine.

Tiers are the folders under tests/ (``unit``, ``store``, ``integration``, ``e2e``,
``cluster``, ``adversarial``): every test gets its folder's marker, so ``-m "unit or store"`` selects
the quick loop and a new test file is tiered by where it lives.

``CORRAL_REQUIRE`` (CI: ``postgresql,root,netns,chromium``) names what the run claims to
prove; a test that would skip for one of those fails instead (tests/support.py
``need``), and the summary says how many tests were skipped.
"""
import os
import pathlib

import pytest

# Hypothesis runs its entry points when first imported; trio's (installed with selenium) imports trio,
# which fails on eventlet's green socket once a test module has patched (the adversarial tier does at
# collection, before the unit tier imports hypothesis). corral's tests use no Hypothesis plugin.
os.environ.setdefault("HYPOTHESIS_NO_PLUGINS", "1")

TIERS = ("unit", "store", "integration", "e2e", "cluster", "adversarial")
HERE = pathlib.Path(__file__).resolve().parent


def pytest_configure(config):
    """Refuses, before anything runs, a CORRAL_REQUIRE that names something the suite does not know."""
    if os.environ.get("CORRAL_REQUIRE"):
        from tests.support import required  # imported only when asked: it loads the store
        try:
            required()
        except ValueError as e:
            raise pytest.UsageError(str(e)) from None


def tier_of(path):
    """The tier of a test file at ``path``: the folder under tests/ it lives in, or None
    when it lives in none of the tier folders."""
    try:
        parts = pathlib.Path(path).resolve().relative_to(HERE).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 and parts[0] in TIERS else None


def pytest_collection_modifyitems(config, items):
    """Marks each test with its tier; a test outside the tier folders is a usage error, since
    no tier selection (``-m``) would ever run it."""
    for item in items:
        tier = tier_of(item.path)
        if tier is None:
            raise pytest.UsageError(f"{item.nodeid}: a test must live in one of tests/{{{','.join(TIERS)}}}/ "
                                    "so that it gets its tier marker")
        item.add_marker(tier)


def pytest_terminal_summary(terminalreporter):
    """Under CORRAL_REQUIRE, says the skipped count in so many words (0 is the claim CI makes)."""
    if os.environ.get("CORRAL_REQUIRE"):
        skipped = len(terminalreporter.stats.get("skipped", []))
        terminalreporter.write_line(f"skipped: {skipped} (CORRAL_REQUIRE={os.environ['CORRAL_REQUIRE']})")
