"""Checking a tar stream as it arrives, before ``tar -x`` sees a byte of a member. Pure: no I/O.

:class:`TarScan` follows the headers of a stream fed in pieces and says how
far every member has passed :func:`unsafe_member` (nothing outside the layer
folder, nothing through a symbolic link, only files, folders and links);
ustar, GNU and pax headers are read, anything else refused rather than
guessed at. The agent feeds it each chunk of a layer download and hands tar
only what it released (:func:`nodeagent.images.ensure_layer`).
"""


def unsafe_member(name, kind, linkname, links):
    """Why an archive member may not be unpacked into a layer folder, or None when it may (pure).

    ``kind`` is "file", "dir", "symlink", "hardlink" or anything else;
    ``links`` the names of the symlinks seen so far in the archive: a member
    under one of them would be written through the link, wherever it points.
    """
    parts = _parts(name)
    if name.startswith("/") or ".." in parts:
        return "points outside the layer folder"
    if kind not in ("file", "dir", "symlink", "hardlink"):
        return "is not a file, folder or link"
    if kind == "hardlink" and (linkname.startswith("/") or ".." in linkname.split("/")):
        return "links to a file outside the layer folder"
    target = _parts(linkname) if kind == "hardlink" else []
    for i in range(1, len(target)):
        if "/".join(target[:i]) in links:
            return "links to a file through a symbolic link"
    for i in range(1, len(parts)):
        if "/".join(parts[:i]) in links:
            return "would be written through a symbolic link"
    return None


def _parts(name):
    """The path parts of an archive member's name, without empty and "." parts."""
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


class TarScan:
    """Follows a tar stream's headers as its bytes arrive and says how much of it may be unpacked.

    :meth:`feed` takes the next bytes and returns the stream offset up to
    which every member has passed :func:`unsafe_member` (the bytes a member
    depends on, its GNU long-name or pax records included, are held back
    until its own header is checked); it raises ValueError naming the first
    member that fails. Reads ustar, GNU and pax headers; a member other than
    a file with data, a pax global header, a GNU sparse file, and a bad
    header checksum are refused rather than guessed at. Pure: no I/O.
    """

    _META_LIMIT = 1 << 20   # bytes of a long name or pax record set

    def __init__(self):
        self._buf = bytearray()   # bytes not yet consumed
        self._at = 0              # stream offset of _buf[0]
        self._skip = 0            # data bytes of the current member still to pass
        self._meta = None         # (type, bytes wanted) of a long name or pax record being collected
        self._next = {}           # what long names and pax records say of the next member
        self._links = set()
        self.safe = 0
        self.ended = None         # offset just after the first zero block at a member boundary
        self.finished = False     # past the end-of-archive marker: nothing more is ever released

    def complete(self):
        """Whether the stream so far ends between members (nothing half read)."""
        return not self._buf and not self._skip and self._meta is None and not self._next

    def feed(self, data):
        """Take the next ``data``; return the offset up to which the stream may be unpacked."""
        self._buf += data
        while True:
            if self.ended is not None:
                return self._trailer()
            if self._skip:
                n = min(self._skip, len(self._buf))
                del self._buf[:n]
                self._at += n
                self._skip -= n
                if not self._next and self._meta is None:
                    self.safe = self._at
                if self._skip:
                    return self.safe
            if self._meta is not None:
                kind, want = self._meta
                if len(self._buf) < _padded(want):
                    return self.safe
                self._take_meta(kind, bytes(self._buf[:want]))
                del self._buf[:_padded(want)]
                self._at += _padded(want)
                self._meta = None
                continue
            if len(self._buf) < 512:
                return self.safe
            block = bytes(self._buf[:512])
            del self._buf[:512]
            self._at += 512
            self._header(block)

    def _trailer(self):
        """After the end-of-archive: release the marker's second zero block, if it is one, and
        consume the rest (a writer's record padding, which tar never reads) without releasing it."""
        if not self.finished:
            if len(self._buf) < 512:
                return self.safe
            if self._buf[:512] == bytes(512):
                self.safe = self.ended + 512
            self.finished = True
        self._at += len(self._buf)
        del self._buf[:]
        return self.safe

    def _header(self, block):
        if block == bytes(512):
            if not self._next and self._meta is None:
                self.safe = self.ended = self._at
            return
        stored = _number(block[148:156])
        rest = block[:148] + block[156:]
        unsigned = sum(rest) + 8 * 32   # the checksum field counts as eight spaces
        # Some old tars summed signed bytes: each byte over 127 then counts 256 less. (Counted with
        # translate, in C: a Python loop over every header byte was a third of an image fetch's CPU.)
        if stored != unsigned and stored != unsigned - 256 * len(rest.translate(None, _ASCII)):
            raise ValueError(f"header at offset {self._at - 512} has a bad checksum")
        name = _cstr(block[0:100])
        if block[257:263] == b"ustar\x00" and block[345]:
            name = _cstr(block[345:500]) + "/" + name
        size, flag, linkname = _number(block[124:136]), block[156:157], _cstr(block[157:257])
        if flag in (b"L", b"K", b"x"):
            if size > self._META_LIMIT:
                raise ValueError(f"header at offset {self._at - 512} carries {size} bytes of names")
            self._meta = (flag, size)
            return
        name = self._next.pop("path", name)
        linkname = self._next.pop("linkpath", linkname)
        size = int(self._next.pop("size", size))
        sparse = self._next.pop("sparse", False)
        kind = {b"0": "file", b"\x00": "file", b"7": "file", b"5": "dir", b"2": "symlink",
                b"1": "hardlink"}.get(flag, "other")
        why = unsafe_member(name, "other" if sparse else kind, linkname, self._links)
        if why is None and size and kind != "file":
            why = "has data but is not a file"
        if why:
            raise ValueError(f"member {name!r} {why}")
        if kind == "symlink":
            self._links.add("/".join(_parts(name)))
        self._skip = _padded(size)
        if not self._skip:
            self.safe = self._at

    def _take_meta(self, flag, data):
        if flag == b"L":
            self._next["path"] = _cstr(data)
        elif flag == b"K":
            self._next["linkpath"] = _cstr(data)
        else:
            for key, value in _pax_records(data):
                if key in ("path", "linkpath"):
                    self._next[key] = value
                elif key == "size":
                    self._next["size"] = int(value)
                elif key.startswith("GNU.sparse."):
                    self._next["sparse"] = True


def _padded(n):
    return (n + 511) // 512 * 512


_ASCII = bytes(range(128))


def _cstr(field):
    return field.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _number(field):
    """A header's numeric field: octal text, or base-256 when its first byte has the high bit set."""
    if field[0] & 0x80:
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\x00", 1)[0].strip(b" ")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise ValueError(f"header field {field!r} is not a number") from None


def _pax_records(data):
    """``(key, value)`` of pax extended header records (``"<len> <key>=<value>\\n"``)."""
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0 or data[pos] == 0:
            break
        try:
            length = int(data[pos:space])
        except ValueError:
            raise ValueError("pax header cannot be read") from None
        if length <= space - pos:
            raise ValueError("pax header has a record shorter than its length field")
        record = data[space + 1:pos + length - 1]
        key, _, value = record.partition(b"=")
        yield key.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape")
        pos += length
