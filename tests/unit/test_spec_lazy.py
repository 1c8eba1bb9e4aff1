"""corral.spec loads its parts when a name is first used: reading a duration or a quantity (what
`logs --since`, `delete --timeout` and `apply --wait` need) does not load the validator."""
import subprocess
import sys

import corral.spec


def test_reading_units_loads_neither_jsonschema_nor_yaml():
    code = ("import sys; from corral.spec import parse_duration, parse_memory; "
            "assert parse_duration('5m') == 300 and parse_memory('1Mi') == 1048576; "
            "print(sorted(m for m in ('jsonschema', 'yaml', 'corral.spec.loader') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_every_public_name_resolves_and_an_unknown_one_is_an_attribute_error():
    for name in corral.spec.__all__:
        assert getattr(corral.spec, name) is not None
    try:
        corral.spec.no_such_name
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("an unknown name resolved")
