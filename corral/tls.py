"""TLS server contexts as corral serves them (the API, the router): TLS 1.2 or newer, from PEM files."""
import ssl


def server_context(cert, key, what, context_class=ssl.SSLContext):
    """A listening context of ``context_class`` (eventlet's green one where the hub reads the socket)
    with the certificate chain ``cert`` and its private ``key`` (paths), TLS 1.2 or newer. ValueError
    beginning with ``what`` (the option that named the files) when they cannot be loaded."""
    ctx = context_class(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"{what}: cannot load {cert} and {key}: {e}") from None
    return ctx
