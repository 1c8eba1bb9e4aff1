"""Who may download a layer: URLs the leader signs for one node and one layer, and their check. Pure.

A builder serves a layer archive only to a request whose query carries a
credential the leader made for that layer and one node::

    /layers/<kind>/<hex>.tar?node=NAME&exp=UNIX&sig=HEX
    sig = HMAC-SHA256(layer key, "<kind>|<hex>|<node>|<exp>")

The layer key (``store.layer_keys``) is random, kept in the store, and is not
the cluster key: the builders, which never hold the cluster key, read it from
the store as the reconcilers do. The URL goes to its node only, in that
node's assignment (over the bus), and names the node, so a credential is
good for one layer, one node and a limited time; an agent of any release uses
it as the URL it is (nothing changes in how it fetches).

Expiry (:func:`expiry`): ``ttl`` (the ``layer_url_ttl`` setting, an hour by
default) in steps of half of it, so that one URL stays the same for half an
hour and always has more than half an hour to run when it is sent. The
leader sends a node its assignment again, with URLs signed anew, once the
ones it last sent have half their time or less to run (:func:`renewal_due`);
an agent retrying a fetch takes the URLs of the latest assignment, so a
retry after a long backoff holds a fresh URL. The check is at the start of a
request: a download that started in time finishes, however slow.

Answers (:func:`check`): no credential at all, 401; a credential that is
malformed, for another layer or node, signed with a key that is not one of
the newest two, or expired, 403. The signature is compared in constant time
(``hmac.compare_digest``) against every key accepted.
"""
import hmac
import re
import urllib.parse

#: The query a signed layer URL carries.
PARAMS = ("node", "exp", "sig")

_SIG = re.compile(r"^[0-9a-f]{64}$")
_EXP = re.compile(r"^[0-9]{1,12}$")
_NODE_MAX = 253


def sign(key, kind, hexid, node, exp):
    """The hex HMAC-SHA256 of ``kind|hexid|node|exp`` under ``key`` (bytes)."""
    message = f"{kind}|{hexid}|{node}|{int(exp)}".encode("utf-8")
    return hmac.digest(key, message, "sha256").hex()


def expiry(now, ttl):
    """When a URL signed at ``now`` expires: the end of the step of ``ttl / 2`` after the current one,
    so it has more than ``ttl / 2`` and at most ``ttl`` seconds to run, and stays the same for a step.

    ttl 3600 at 10:10:00: steps of 30 min, the current one 10:00-10:30, so 11:00 (50 min left);
    at 10:29:59 still 11:00 (30 min 1 s left); at 10:30:00, 11:30 (an hour)."""
    step = _step(ttl)
    return (int(now) // step + 2) * step


def renewal_due(exp_sent, now, ttl):
    """Whether URLs sent that expire at ``exp_sent`` (None: none sent) must be sent again, signed anew:
    once they have no more than half of ``ttl`` to run. A fresh URL (:func:`expiry`) never is."""
    return exp_sent is not None and exp_sent - now <= _step(ttl)


def _step(ttl):
    return max(1, int(ttl) // 2)


def base_of(url):
    """The builder's address in a layer URL it recorded (``http://b1:7072/layers/env/<hex>.tar`` ->
    ``http://b1:7072``); None when the URL is not a layer URL."""
    base, sep, _ = (url or "").rpartition("/layers/")
    return base if sep and base else None


def layer_bases(recorded, builders, stale_after, limit=4):
    """The builders to offer for a layer, in the order to try them: the one that recorded it
    (``recorded``, a base URL) when alive, every other live builder by name, then the recorder
    when it is not known alive (it may be back). ``builders``: ``(name, url, age)`` triples;
    live: heard from within ``stale_after`` s. At most ``limit``. Pure."""
    live = [url.rstrip("/") for _, url, age in sorted(builders) if age <= stale_after]
    out = []
    if recorded in live:
        out.append(recorded)
    out += [url for url in live if url != recorded]
    if recorded and recorded not in out:
        out.append(recorded)
    return list(dict.fromkeys(out))[:limit]


def signed_url(base, kind, hexid, node, exp, key):
    """The URL of layer ``kind``/``hexid`` on the builder at ``base``, good for ``node`` until ``exp``."""
    # Not urlencode: three fields of known form, and it was three quarters of the time of signing
    # every node's URLs at once (a leader taking over: 40,000 URLs).
    return (f"{base}/layers/{kind}/{hexid}.tar?node={urllib.parse.quote(node, safe='')}&exp={int(exp)}"
            f"&sig={sign(key, kind, hexid, node, exp)}")


def signed_layer(layer, node, exp, key, bases, mirrors=True):
    """An assignment's layer dict for ``node``: ``layer`` (as the build recorded it) with ``url`` the
    first of ``bases`` signed for it and, when ``mirrors``, ``urls`` every base signed (the agent
    tries them in order). No base: the recorded URL's own. Pure."""
    kind, hexid = layer["kind"], layer["id"][len("sha256:"):]
    bases = list(bases) or [base_of(layer.get("url"))]
    urls = [signed_url(b, kind, hexid, node, exp, key) for b in bases if b]
    out = {k: v for k, v in layer.items() if k not in ("url", "urls")}
    out["url"] = urls[0] if urls else layer.get("url", "")
    if mirrors and len(urls) > 1:
        out["urls"] = urls
    return out


def check(query_string, kind, hexid, keys, now):
    """Decide a layer request from its raw query string: None when it carries a credential for
    layer ``kind``/``hexid`` made with one of ``keys`` (bytes, newest first) and not expired at
    ``now``; else ``(status, sentence)``: 401 without any credential, 403 for a bad one. Pure."""
    try:
        pairs = urllib.parse.parse_qs(query_string or "", keep_blank_values=True, strict_parsing=False,
                                      max_num_fields=16)
    except ValueError:
        return 403, "the layer URL's query cannot be read\n"
    if not any(p in pairs for p in PARAMS):
        return 401, ("a layer is served only with a credential: the URL the leader signed for your node "
                     "(?node=&exp=&sig=)\n")
    if any(len(pairs.get(p, ())) != 1 for p in PARAMS):
        return 403, "the layer credential must carry node, exp and sig once each\n"
    node, exp, sig = (pairs[p][0] for p in PARAMS)
    if not node or len(node) > _NODE_MAX or not _EXP.match(exp) or not _SIG.match(sig):
        return 403, "the layer credential is malformed\n"
    good = False
    for key in keys:
        good |= hmac.compare_digest(sign(key, kind, hexid, node, int(exp)), sig)
    if not good:
        return 403, f"the credential is not valid for {kind} layer sha256:{hexid} and the node it names\n"
    if int(exp) <= now:
        return 403, f"the credential expired (at {exp}); the node's next assignment brings a fresh one\n"
    return None
