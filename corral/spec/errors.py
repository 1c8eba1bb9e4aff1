"""The one error type of the spec package."""


class SpecError(ValueError):
    """One or more problems with manifests; each problem is one sentence.

    ``errors`` lists every sentence; ``str()`` joins them with newlines, so a
    CLI can print it as it is.
    """

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))
