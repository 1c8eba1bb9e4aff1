"""Reading a layer archive's headers and deciding what of it may be written. Pure: no I/O of its own.

:func:`members` is the one tar parser of the agent: it reads the headers
through a function it is given, decides for each member whether it may go
into a layer folder, and yields what to write (:class:`Member`);
:mod:`nodeagent.extract` writes exactly that and reads no header itself, so
the check and the extraction agree by construction (no second reader, such
as the ``tar`` command, which could parse the same bytes differently).

What a layer may hold, and why. A layer is made by our builder from a
virtualenv and an app's source (``builder/archives.py``: GNU tar,
``--sort=name --numeric-owner``), so anything else is refused, the whole
layer with it, in one sentence naming the member (:class:`UnsafeLayer`):

- only files, folders, symbolic links and hard links: no device, FIFO or
  other type;
- no set-id or sticky bit: Kubernetes and OCI images keep them, but no file
  of a venv or of an app's source needs one, so a layer that has one was not
  made by our builder (refused, not stripped);
- names relative and inside the layer: no absolute name, no ``..``;
- nothing written through a symbolic link: a member under an earlier
  member that is a link (or a file) is refused. A link's target is kept as
  it is, absolute ones included (a venv's ``bin/python`` names its
  interpreter by absolute path); nothing follows it while unpacking;
- a hard link only to an earlier file member of the same archive;
- a name only once (a folder may be named again);
- headers in the ustar or GNU format with a right checksum; each numeric
  field strict: octal digits 0-7 from its first byte, then only NUL or space
  to the field's end (an all-NUL uid, gid or device number counts as 0, as
  GNU tar writes them), or base-256 (first byte 0x80, never a negative
  number) in the size, mtime, uid and gid fields, where GNU tar writes it
  for a value octal cannot hold. ``int()``'s leniencies (``_``, inner
  spaces, signs) are refused;
- pax records in the strict ``"<len> <key>=<value>\\n"`` form; of their keys
  only ``path``, ``linkpath``, ``size`` and ``mtime`` are applied, GNU sparse
  files are refused, and the rest (owners, extended attributes, times) are
  not applied;
- the archive ends with its two zero blocks, and nothing but zeros (a
  writer's record padding) comes after them.

Owners, groups and permissions other than "executable or not" are never
taken from the archive (see :mod:`nodeagent.extract`).
"""
from typing import NamedTuple

BLOCK = 512
META_LIMIT = 1 << 20   # bytes of a GNU long name or a pax record set
_MODE_BITS = 0o7777
_SPECIAL_BITS = 0o7000  # set-uid, set-gid, sticky

_KINDS = {b"0": "file", b"\x00": "file", b"7": "file", b"5": "dir", b"2": "symlink", b"1": "hardlink"}
_REFUSED_KINDS = {b"3": "a character device", b"4": "a block device", b"6": "a FIFO",
                  b"S": "a GNU sparse file", b"g": "a pax global header", b"V": "a volume label",
                  b"M": "a multi-volume continuation", b"D": "a GNU dump folder", b"N": "an old GNU long name"}
_MAGICS = (b"ustar\x0000", b"ustar  \x00")   # POSIX ustar (and pax), GNU


class UnsafeLayer(ValueError):
    """A layer archive that may not be unpacked; the message is one sentence naming the member."""


class Member(NamedTuple):
    """One member to write, already decided safe.

    ``name`` is its path in the layer, parts joined with ``/`` ("" for the
    layer folder itself); ``kind`` "file", "dir", "symlink" or "hardlink";
    ``mode`` its permission bits as archived (never a set-id or sticky bit);
    ``mtime_ns`` its modification time; ``linkname`` a symlink's target as
    archived, or a hard link's target as a name of the layer; ``offset``
    and ``size`` where its data lies in the archive (files only)."""
    name: str
    kind: str
    mode: int
    size: int
    mtime_ns: int
    linkname: str
    offset: int


def members(read_at, length):
    """Yield each member of the tar archive of ``length`` bytes read by ``read_at(offset, n)``.

    Raises :class:`UnsafeLayer` at the first member that may not be written
    (see the module's list), at a header that cannot be read, when the
    archive ends inside a member or without its end-of-archive marker, or
    when anything but zeros follows that marker. A member yielded before is
    fine on its own; the caller drops what it wrote of the layer.
    """
    seen = {}        # name -> kind of every member, and of every folder made for one
    pos, pending = 0, {}
    while True:
        block = read_at(pos, BLOCK) if pos + BLOCK <= length else b""
        if len(block) != BLOCK:
            raise UnsafeLayer("the archive ends after a long name or pax header with no member for it" if pending
                              else "the archive ends without its end-of-archive marker")
        if block == bytes(BLOCK):
            if pending:
                raise UnsafeLayer("the archive ends after a long name or pax header with no member for it")
            _trailer(read_at, pos + BLOCK, length)
            return
        header = _header(block, pos)
        pos += BLOCK
        if header.flag in (b"L", b"K", b"x"):
            if header.size > META_LIMIT:
                raise UnsafeLayer(f"the header at offset {pos - BLOCK} carries {header.size} bytes of names or records")
            if pos + header.size > length:
                raise UnsafeLayer(f"the archive ends inside the header at offset {pos - BLOCK}")
            data = read_at(pos, header.size)
            pos += _padded(header.size)
            if header.flag == b"x":
                pending.update(_pax(data, header.name))
            else:
                pending["path" if header.flag == b"L" else "linkpath"] = _cstr(data)
            continue
        member = _decide(header, pending, pos, seen)
        pending = {}
        if member.offset + member.size > length:
            raise UnsafeLayer(f"the archive ends inside the member {member.name!r}")
        pos += _padded(member.size)
        yield member


class _Header(NamedTuple):
    name: str
    flag: bytes
    mode: int
    size: int
    mtime: int
    linkname: str


def _header(block, at):
    """The fields of the header ``block`` at offset ``at``; UnsafeLayer when it is not a strict ustar/GNU header."""
    name = _cstr(block[0:100])
    magic = bytes(block[257:265])
    if magic not in _MAGICS:
        raise UnsafeLayer(f"the header at offset {at} ({name!r}) is neither ustar nor GNU tar")
    if magic == _MAGICS[0] and block[345]:
        name = _cstr(block[345:500]) + "/" + name
    label = f"member {name!r}"
    stored = _octal(block[148:156], label, "checksum")
    rest = block[:148] + block[156:]
    unsigned = sum(rest) + 8 * 32   # the checksum field counts as eight spaces
    # Some old tars summed signed bytes: each byte over 127 then counts 256 less. (Counted with
    # translate, in C: a Python loop over every header byte was a third of an image fetch's CPU.)
    if stored != unsigned and stored != unsigned - 256 * len(rest.translate(None, _ASCII)):
        raise UnsafeLayer(f"the header of {label} at offset {at} has a bad checksum")
    mode = _octal(block[100:108], label, "mode")
    size = _number(block[124:136], label, "size")
    mtime = _number(block[136:148], label, "mtime")
    for field, start in (("uid", 108), ("gid", 116)):
        _number(block[start:start + 8], label, field, empty=True)
    for field, start in (("devmajor", 329), ("devminor", 337)):
        _octal(block[start:start + 8], label, field, empty=True)
    return _Header(name, bytes(block[156:157]), mode, size, mtime, _cstr(block[157:257]))


def _decide(header, pending, offset, seen):
    """The :class:`Member` of ``header`` (its long name and pax records in ``pending``), or UnsafeLayer
    saying why it may not be written; records it in ``seen``."""
    raw = pending.get("path", header.name)
    label = f"member {raw!r}"
    if header.flag in _REFUSED_KINDS:
        raise UnsafeLayer(f"{label} is {_REFUSED_KINDS[header.flag]}: a layer holds only files, folders and links")
    kind = _KINDS.get(header.flag)
    if kind is None:
        raise UnsafeLayer(f"{label} is of tar type {header.flag!r}: a layer holds only files, folders and links")
    if "sparse" in pending:
        raise UnsafeLayer(f"{label} is a GNU sparse file: a layer holds only files, folders and links")
    if "\x00" in raw or not raw:
        raise UnsafeLayer(f"{label} has an empty name or one with a NUL in it")
    if raw.startswith("/"):
        raise UnsafeLayer(f"{label} has an absolute name: it points outside the layer folder")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeLayer(f"{label} has '..' in its name: it points outside the layer folder")
    if raw.endswith("/") and kind != "dir":
        raise UnsafeLayer(f"{label} ends with '/' but is not a folder")
    if header.mode & ~_MODE_BITS:
        raise UnsafeLayer(f"{label} has mode {header.mode:o}, which is more than permission bits")
    if header.mode & _SPECIAL_BITS:
        raise UnsafeLayer(f"{label} has set-id or sticky bits (mode {header.mode:04o}), which no layer file needs")
    size = pending.get("size", header.size)
    if size and kind != "file":
        raise UnsafeLayer(f"{label} has data but is not a file")
    name = "/".join(parts)
    if not parts and kind != "dir":
        raise UnsafeLayer(f"{label} names the layer folder itself but is not a folder")
    for i in range(1, len(parts)):
        prefix = "/".join(parts[:i])
        above = seen.get(prefix)
        if above == "symlink":
            raise UnsafeLayer(f"{label} would be written through the symbolic link {prefix!r} earlier in the archive")
        if above is not None and above != "dir":
            raise UnsafeLayer(f"{label} would be written under {prefix!r}, which is not a folder")
        seen[prefix] = "dir"
    if name in seen and not (kind == "dir" and seen[name] == "dir"):
        raise UnsafeLayer(f"{label} names {name!r} a second time in the archive")
    linkname = pending.get("linkpath", header.linkname)
    if kind == "hardlink":
        target = [p for p in linkname.split("/") if p not in ("", ".")]
        joined = "/".join(target)
        if linkname.startswith("/") or ".." in target or seen.get(joined) not in ("file", "hardlink"):
            raise UnsafeLayer(f"{label} is a hard link to {linkname!r}, which is not an earlier file of the layer")
        linkname = joined
    elif kind == "symlink" and (not linkname or "\x00" in linkname):
        raise UnsafeLayer(f"{label} is a symbolic link with an empty target")
    if name:
        seen[name] = kind
    mtime_ns = pending.get("mtime_ns", header.mtime * 1_000_000_000)
    return Member(name, kind, header.mode, size, mtime_ns, linkname, offset)


def _trailer(read_at, pos, length):
    """After the first zero block at ``pos - BLOCK``: the second one, then only zeros to ``length``."""
    if pos + BLOCK > length or read_at(pos, BLOCK) != bytes(BLOCK):
        raise UnsafeLayer("the archive ends without its end-of-archive marker (two zero blocks)")
    pos += BLOCK
    while pos < length:
        n = min(1 << 20, length - pos)
        if read_at(pos, n).count(0) != n:
            raise UnsafeLayer(f"the archive has data after its end-of-archive marker (at offset {pos} or later)")
        pos += n


def _padded(n):
    return (n + BLOCK - 1) // BLOCK * BLOCK


_ASCII = bytes(range(128))
_OCTAL = frozenset(b"01234567")
_END = frozenset(b"\x00 ")


def _cstr(field):
    return bytes(field).split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _octal(field, label, what, empty=False):
    """A strict octal field: digits 0-7 from its first byte, then only NUL or space; all NUL is 0 when
    ``empty``. UnsafeLayer naming ``label`` and the field ``what`` otherwise."""
    field = bytes(field)
    digits = len(field) - len(field.lstrip(b"01234567"))
    if (digits and not set(field[digits:]) <= _END) or (not digits and not (empty and field == bytes(len(field)))):
        raise UnsafeLayer(f"{label}: its {what} field {field!r} is not a strict octal number")
    return int(field[:digits], 8) if digits else 0


def _number(field, label, what, empty=False):
    """A numeric field that may also be base-256 (GNU, first byte 0x80: positive only); else :func:`_octal`."""
    if field[0] == 0x80:
        return int.from_bytes(bytes(field[1:]), "big")
    if field[0] & 0x80:
        raise UnsafeLayer(f"{label}: its {what} field {bytes(field)!r} is a negative or malformed base-256 number")
    return _octal(field, label, what, empty)


def _decimal(text, label, what):
    if not text or not text.isascii() or not text.isdigit():
        raise UnsafeLayer(f"{label}: its pax {what} {text!r} is not a decimal number")
    return int(text)


def _pax(data, header_name):
    """What the pax records in ``data`` say of the next member: path, linkpath, size, mtime_ns, sparse."""
    label = f"pax header {header_name!r}"
    out, pos = {}, 0
    data = bytes(data)
    while pos < len(data):
        space = data.find(b" ", pos)
        if space < 0:
            raise UnsafeLayer(f"{label} has a record without its length")
        length = _decimal(data[pos:space].decode("ascii", "replace"), label, "record length")
        end = pos + length
        if length <= space - pos + 1 or end > len(data) or data[end - 1:end] != b"\n":
            raise UnsafeLayer(f"{label} has a record whose length field does not match it")
        key, eq, value = data[space + 1:end - 1].partition(b"=")
        if not eq or not key:
            raise UnsafeLayer(f"{label} has a record without a key=value")
        key, value = key.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape")
        if key in ("path", "linkpath"):
            out[key] = value
        elif key == "size":
            out["size"] = _decimal(value, label, "size")
        elif key == "mtime":
            whole, dot, frac = value.partition(".")
            ns = _decimal(whole, label, "mtime") * 1_000_000_000
            if dot:
                _decimal(frac, label, "mtime")
                ns += int((frac + "0" * 9)[:9])
            out["mtime_ns"] = ns
        elif key.startswith("GNU.sparse."):
            out["sparse"] = True
        pos = end
    return out
