"""``corral exec APP -- CMD ARGS...``: a command in an instance's environment, on its node.

When stdin is a terminal the command gets a pty on the node, and the local
terminal goes into raw mode so that every key (Ctrl-C included) reaches the
remote side; window size changes follow (SIGWINCH). The terminal's settings
are put back on every way out: the command's end, Ctrl-C, an error, a lost
connection. Without a terminal, stdin, stdout and stderr are streamed as pipes
(``echo 'print(1)' | corral exec hello -- python`` prints 1).

The exit status is the remote command's; 255 when the connection was lost
before it ended (its status is then unknown).

Only ``add_parser`` runs for every ``corral`` command (to build the parser):
what ``exec`` alone needs (terminals, ``requests`` for the input channel) is
imported when it runs.
"""
import contextlib
import os
import sys

from corral.cli.client import ClientError
from corral.cli.verbs import add_verb

INPUT_BYTES = 32 * 1024
LOST = 255   # exit status when the outcome is unknown


def add_parser(sub):
    """Register ``corral exec``."""
    p = add_verb(sub, "exec", "run a command in an instance's environment (a terminal when stdin is one)",
                 ["corral exec hello -- python", "echo 'print(1)' | corral exec hello -- python"],
                 description="Run a command in an instance's environment (its user, working folder, environment "
                             "and virtualenv) on its node, with a terminal when stdin is one; exit with the "
                             "command's status (255: the connection was lost). Audited as Exec events.")
    p.add_argument("app", help="the app's name")
    p.add_argument("--process", "-p", help="an instance of this process")
    p.add_argument("--instance", "-i", help="this instance")
    p.add_argument("argv", nargs="+", metavar="-- CMD [ARG]...", help="the command and its arguments")


def actor():
    """Who runs the command, for the audit event: ``user@host``."""
    import getpass
    import socket
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


@contextlib.contextmanager
def raw_terminal(fd):
    """Raw mode on terminal ``fd`` for the block; its settings restored on every way out."""
    import termios
    import tty
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class Input:
    """Sends local input (and window sizes) to the session, through the API URL that opened it.

    Through a ``requests`` session (imported here, not for every command): its pooled
    connection is reused key after key, where a connection per key would cost a
    handshake each."""

    def __init__(self, client, url, session):
        import requests
        self.base = f"{url.rstrip('/')}/v1/exec/{session}"
        self.http = requests.Session()
        self.http.headers.update(client.headers)
        self.failed = None

    def _post(self, what, body):
        import requests
        try:
            r = self.http.post(f"{self.base}/{what}", json=body, timeout=60)
        except requests.RequestException as e:
            self.failed = f"sending input failed: {e.__class__.__name__}"
            return False
        return r.status_code == 200

    def send(self, data=b"", eof=False):
        """Forward stdin bytes (or the end of stdin); False once the session no longer takes them."""
        import base64
        return self._post("input", {"data": base64.b64encode(data).decode("ascii"), "eof": eof})

    def resize(self, fd):
        """Forward the size of terminal ``fd``."""
        size = os.get_terminal_size(fd)
        self._post("resize", {"rows": size.lines, "cols": size.columns})

    def pump(self, fd, terminal):
        """Forward ``fd`` until its end (then eof on a pipe) or until the session ends."""
        while True:
            try:
                data = os.read(fd, INPUT_BYTES)
            except OSError:
                data = b""
            if not data:
                if not terminal:
                    self.send(eof=True)
                return
            if not self.send(data):
                return


def run(args, client):
    """``corral exec``: the remote command's exit status."""
    import signal
    import threading
    from corral.cli.stream import items, open_stream
    argv = [a for a in args.argv]
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise ClientError("exec needs a command after --")
    stdin = sys.stdin.fileno()
    terminal = os.isatty(stdin)
    request = {"app": args.app, "process": args.process, "instance": args.instance, "argv": argv, "tty": terminal}
    if terminal:
        size = os.get_terminal_size(stdin)
        request.update(rows=size.lines, cols=size.columns)
    url, response = open_stream(client, "POST", "/v1/exec", json=request, headers={"X-Corral-Actor": actor()})
    with response:
        stream = items(response)
        first = next(stream, {})
        if "started" not in first:
            raise ClientError(first.get("end") or "the API did not start the command")
        inp = Input(client, url, first["started"]["session"])
        if not terminal:
            return _relay(stream, inp, stdin, terminal=False)
        previous = signal.signal(signal.SIGWINCH, lambda *_: threading.Thread(
            target=inp.resize, args=(stdin,), daemon=True).start())
        try:
            with raw_terminal(stdin):
                return _relay(stream, inp, stdin, terminal=True)
        finally:
            signal.signal(signal.SIGWINCH, previous)


def _relay(stream, inp, stdin, terminal):
    import base64
    import threading
    threading.Thread(target=inp.pump, args=(stdin, terminal), daemon=True).start()
    out, err = sys.stdout.fileno(), sys.stderr.fileno()
    end, lost = None, "the API ended the stream before the command ended"
    try:
        for item in stream:
            if "out" in item:
                _write(out, base64.b64decode(item["out"]))
            elif "err" in item:
                _write(err, base64.b64decode(item["err"]))
            elif "end" in item:
                end = item
                break
    except ClientError as e:
        lost = str(e)
    if end is not None and end.get("exit_code") is not None:
        return end["exit_code"]
    if terminal:
        _write(err, b"\r\n")
    if end is not None:
        raise ClientError(end["end"])
    print(f"error: {lost}; the command's exit status is unknown", file=sys.stderr)
    return LOST


def _write(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
