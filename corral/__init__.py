"""corral: what the reconciler, the node agent and the builder share.

Sub-packages: ``spec`` (loading and validating manifests), ``store`` (the only
code that speaks SQL), ``wire`` (the only code that imports zmq), ``settings``,
and ``cli`` (the ``corral`` command).
"""
__version__ = "0.2.0.dev0"  # pyproject.toml reads it; CHANGELOG.md says what each release changed
