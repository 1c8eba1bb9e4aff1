"""Which backend gets a request: least outstanding requests, by the power of two choices.

Pure but for the random source, which is passed in. Two backends are drawn at
random and the one with fewer requests in flight (from this router process)
wins; ties go to the first drawn. Against "always the least loaded" it needs
no scan of every backend and does not herd every router onto the same
momentarily idle instance (Mitzenmacher's "power of two choices").

A backend that just failed a connection *rests* (the proxy says for how long):
it is drawn only when every other one is tried or resting too, so a node that
is gone costs one connect timeout a rest, not one per request until the
reconcilers declare it lost (nginx's ``max_fails=1 fail_timeout``, HAProxy's
and Envoy's passive health checks).
"""


def pick(backends, outstanding, rng, exclude=(), resting=()):
    """The backend for the next request, or None when every one is excluded (tried already).

    ``outstanding``: ``{backend id: requests in flight}``; ``rng``: a ``random.Random``;
    ``resting``: ids of backends drawn only when no other is left."""
    if exclude:
        backends = [b for b in backends if b.id not in exclude]
    if resting:
        awake = [b for b in backends if b.id not in resting]
        if awake:
            backends = awake
    n = len(backends)
    if n == 0:
        return None
    if n == 1:
        return backends[0]
    i = rng.randrange(n)
    j = rng.randrange(n - 1)
    if j >= i:
        j += 1
    a, b = backends[i], backends[j]
    return a if outstanding.get(a.id, 0) <= outstanding.get(b.id, 0) else b
