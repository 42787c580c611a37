"""Static check of one weights-only pickle stream, before anything in it is unpickled.

A pickle is a small program. :func:`torch.load` with ``weights_only=True`` only lets it call an allow-list of
functions, but several allowed functions allocate whatever size the pickle claims (``bytearray(10**12)``, a
legacy ``torch.FloatTensor(n)``, numpy's ``_reconstruct`` with a huge shape, a tensor view that makes
``Tensor.set_`` grow its storage) and one crashes the interpreter (an object array whose pickled list is shorter
than its shape, or a float dtype whose pickled flags say it holds objects). :class:`PickleScanner` runs the
program *symbolically*: it reads the opcodes the weights-only unpickler executes exactly as that unpickler reads
them and keeps a stack and memo of stand-ins, so that every call can be checked against the size of the file
before the real unpickler runs. It never imports, calls or builds anything named in the pickle. After an opcode
the weights-only unpickler does not execute, it only parses on (with :func:`pickletools.genops`) to tell a
pickle that carries code from one that is merely broken.

What it refuses:

* :class:`UnsafePickle`: a global outside the allow-list, or an opcode that imports or calls by name
  (``STACK_GLOBAL``, ``INST``, ``OBJ``, ``EXT*``, ``NEWOBJ_EX``), or a call of anything but an allowed global;
* :class:`OversizedClaim`: a call, shape or storage whose byte size exceeds what the file can hold;
* :class:`MalformedPickle`: anything else the weights-only unpickler would stumble over (unknown or unsupported
  opcodes, stack underflow, a missing memo entry, a storage id of the wrong shape, text that is not a pickle).
"""

from __future__ import annotations

import io
import pickletools
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch._utils import IMPORT_MAPPING, NAME_MAPPING

# Opcodes (by byte) that import or call something by name; none is accepted by the weights-only unpickler.
_CODE_OPCODES = {0x93: "STACK_GLOBAL", 0x69: "INST", 0x6F: "OBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4",
                 0x92: "NEWOBJ_EX"}
_CODE_OPCODE_NAMES = frozenset(_CODE_OPCODES.values())
_OPCODE_NAMES = {ord(o.code): o.name for o in pickletools.opcodes}
_STRING_OPCODES = frozenset("BINUNICODE SHORT_BINUNICODE BINUNICODE8 UNICODE SHORT_BINSTRING BINSTRING STRING".split())
# The rest of what the weights-only unpickler executes: constants, fixed-width ints, and stack operations.
_CONSTANTS: dict[int, Callable[[], Any]] = {  # NONE NEWTRUE NEWFALSE EMPTY_TUPLE EMPTY_LIST EMPTY_DICT EMPTY_SET
    0x4E: lambda: None, 0x88: lambda: True, 0x89: lambda: False, 0x29: tuple, 0x5D: list,
    0x7D: lambda: DictLike("dict"), 0x8F: lambda: Opaque("builtins.set"),
}
_INTS = {0x4A: ("<i", 4), 0x4B: ("<B", 1), 0x4D: ("<H", 2), 0x47: (">d", 8)}  # BININT BININT1 BININT2 BINFLOAT
_STACK_OPS = {
    0x74: "op_tuple", 0x85: "op_tuple1", 0x86: "op_tuple2", 0x87: "op_tuple3", 0x61: "op_append",
    0x65: "op_appends", 0x73: "op_setitem", 0x75: "op_setitems", 0x51: "op_binpersid", 0x52: "op_reduce",
    0x81: "op_newobj", 0x62: "op_build",
}
_BLOCKED_MODULES = frozenset({"sys", "os", "posix", "nt"})
_TEXT_ENCODINGS = frozenset({"latin1", "latin-1", "iso-8859-1", "iso8859-1", "utf-8", "utf8", "ascii"})
_NUMPY_DTYPE_KINDS = frozenset("biufcOUS")  # no void (structured), datetime or timedelta dtypes
# numpy dtype flags that only ask for zeroed memory or the C API; the others (holds objects, list pickle, item is
# a pointer, use getitem/setitem, aligned struct) change how array bytes are read and must be the dtype's own.
_HARMLESS_DTYPE_FLAGS = 0x08 | 0x10
_TUPLE_SLACK = 10**6  # a tuple may expand to this many items more than the file has bytes


class ScanError(Exception):
    """A pickle stream that must not be handed to the unpickler."""


class UnsafePickle(ScanError):
    """The stream references code: a global outside the allow-list or an opcode that imports by name."""


class MalformedPickle(ScanError):
    """The stream is not a well-formed weights-only pickle."""


class OversizedClaim(MalformedPickle):
    """The stream would allocate more memory than the file that holds it."""


# ---------------------------------------------------------------------------------------------- stand-ins


@dataclass(frozen=True)
class Ref:
    """A global pushed by ``GLOBAL`` (by name only: nothing is imported)."""

    name: str


@dataclass
class Opaque:
    """The result of an allowed call that needs no further tracking."""

    made_by: str


@dataclass
class DictLike:
    """A dict, ``OrderedDict`` or ``Counter`` (only its kind matters: it is a valid ``SETITEM`` target)."""

    kind: str


@dataclass(frozen=True)
class StorageClaim:
    """A storage the unpickler will allocate: its key, element size and element count."""

    key: str
    elsize: int
    numel: int

    @property
    def nbytes(self) -> int:
        return self.numel * self.elsize


@dataclass
class Tensor:
    """A tensor rebuilt from a storage (``numel`` None when unknown, e.g. a meta or sparse tensor)."""

    numel: int | None = None


@dataclass
class NumpyDtype:
    """A ``numpy.dtype`` of one of the simple kinds (number, bool, str, bytes, object) and its item size."""

    code: str
    itemsize: int


@dataclass
class NumpyArray:
    """An ndarray made by numpy's ``_reconstruct``; its shape arrives with ``BUILD``."""

    numel: int = 0


@dataclass
class _Frame:
    """The scanner's state for one pickle: stack, mark stack and memo."""

    stack: list[Any] = field(default_factory=list)
    marks: list[list[Any]] = field(default_factory=list)
    memo: dict[int, Any] = field(default_factory=dict)


StorageHook = Callable[[tuple], StorageClaim]


def is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def bounded_product(dims: tuple | list, limit: int) -> int:
    """Product of non-negative ints, stopping at ``limit + 1`` (so huge claims cost nothing to compute)."""
    if any(d == 0 for d in dims):
        return 0
    total = 1
    for d in dims:
        total *= d
        if total > limit:
            return limit + 1
    return total


class _Unsupported(Exception):
    """An opcode the weights-only unpickler does not execute: the scan goes on in degraded mode."""

    def __init__(self, pos: int, reason: str):
        super().__init__(reason)
        self.pos, self.reason = pos, reason


def _need(pos: int, n: int, end: int) -> None:
    """The opcode argument ``data[pos:pos + n]`` must be inside the pickle."""
    if pos + n > end:
        raise MalformedPickle("it ends in the middle of a pickle: it is truncated")


def _text(raw: Any, is_unicode: bool, at: int) -> str:
    """A string argument decoded as torch's unpickler decodes it (both kinds as UTF-8)."""
    try:
        return str(raw, "utf-8", "surrogatepass" if is_unicode else "strict")
    except UnicodeDecodeError:
        raise MalformedPickle(f"the string at byte {at} is not UTF-8 text") from None


def _global_name(data: Any, pos: int, end: int, at: int) -> tuple[str, int]:
    """``(module.name, position after it)`` of a ``GLOBAL`` argument: two raw lines, UTF-8, with the Python 2
    names torch maps (``__builtin__`` ...) mapped."""
    end1 = data.find(b"\n", pos, end)
    end2 = data.find(b"\n", end1 + 1, end) if end1 >= 0 else -1
    if end2 < 0:
        raise MalformedPickle(f"the global at byte {at} is not two lines: the pickle is truncated")
    try:
        module, name = str(data[pos:end1], "utf-8"), str(data[end1 + 1 : end2], "utf-8")
    except UnicodeDecodeError:
        raise MalformedPickle(f"the global at byte {at} is not UTF-8 text") from None
    if (module, name) in NAME_MAPPING:
        module, name = NAME_MAPPING[(module, name)]
    elif module in IMPORT_MAPPING:
        module = IMPORT_MAPPING[module]
    return f"{module}.{name}", end2 + 1


# ---------------------------------------------------------------------------------------------- scanner


class PickleScanner:
    """Symbolic execution of one weights-only pickle against a byte budget.

    ``allowed`` maps every global the real unpickler accepts (``module.name``) to its object, which is only
    used to classify it (tensor class, storage type, dtype); ``limit`` is the byte budget (the file's size);
    ``storage_hook`` validates a persistent id and returns the storage it claims.
    """

    def __init__(self, allowed: Mapping[str, Any], limit: int, storage_hook: StorageHook | None = None):
        self.allowed = allowed
        self.limit = limit
        self.storage_hook = storage_hook
        self._handlers = {name: getattr(self, f"_call_{kind}", None) for name, kind in _classify(allowed).items()}
        self._stack_ops = {op: getattr(self, method) for op, method in _STACK_OPS.items()}

    # -- driving

    def scan(self, data: bytes | Any, start: int = 0, suspect: str | None = None) -> tuple[Any, int]:
        """Scan the pickle at ``data[start:]`` (bytes or an mmap); return the stand-in it evaluates to and the
        position after its ``STOP``.

        ``suspect`` starts the scan in degraded mode with that reason: used for streams that do not even start
        like a torch pickle, so that a text file is "not a checkpoint" while a protocol-0 pickle of
        ``os.system`` is still an :class:`UnsafePickle`.
        """
        self._frame = _Frame()
        self._data = data
        self._result: Any = None
        self._tuple_weights: dict[int, tuple[tuple, int]] = {}
        if suspect is None:
            try:
                end = self._run(data, start)
                return self._result, end
            except _Unsupported as stop:
                suspect, start = stop.reason, stop.pos
            except ScanError:
                raise
            except Exception as err:  # a handler met a value of an unexpected type
                raise MalformedPickle(f"its pickle is inconsistent ({type(err).__name__}: {err})") from None
        return None, self._run_degraded(data, start, suspect)

    def _run(self, data: Any, pos: int) -> int:
        """Execute the opcodes the weights-only unpickler supports, reading their arguments as it does."""
        end, frame = len(data), self._frame
        while True:
            if pos >= end:
                raise MalformedPickle("it ends in the middle of a pickle: it is truncated")
            op, at = data[pos], pos
            pos += 1
            stack = frame.stack
            # the most frequent opcodes first, their bounds checked inline
            if op == 0x72:  # LONG_BINPUT
                if pos + 4 > end:
                    _need(pos, 4, end)
                frame.memo[int.from_bytes(data[pos : pos + 4], "little")] = stack[-1]
                pos += 4
            elif op == 0x68 or op == 0x6A:  # BINGET, LONG_BINGET
                width = 1 if op == 0x68 else 4
                if pos + width > end:
                    _need(pos, width, end)
                key = int.from_bytes(data[pos : pos + width], "little")
                if key not in frame.memo:
                    raise MalformedPickle(f"its pickle reads the undefined memo entry {key} at byte {at}")
                stack.append(frame.memo[key])
                pos += width
            elif op == 0x4B:  # BININT1
                if pos >= end:
                    _need(pos, 1, end)
                stack.append(data[pos])
                pos += 1
            elif op == 0x28:  # MARK
                frame.marks.append(stack)
                frame.stack = []
            elif op == 0x71:  # BINPUT
                if pos >= end:
                    _need(pos, 1, end)
                frame.memo[data[pos]] = stack[-1]
                pos += 1
            elif op in self._stack_ops:
                self._stack_ops[op](at)
            elif op == 0x58 or op == 0x55:  # BINUNICODE, SHORT_BINSTRING
                width = 4 if op == 0x58 else 1
                _need(pos, width, end)
                n = int.from_bytes(data[pos : pos + width], "little")
                pos += width
                if pos + n > end:
                    self._refuse_size(f"the string at byte {at}", n)
                    raise MalformedPickle(f"the string at byte {at} runs past the end of the pickle: it is truncated")
                stack.append(_text(data[pos : pos + n], op == 0x58, at))
                pos += n
            elif op in _CONSTANTS:
                stack.append(_CONSTANTS[op]())
            elif op in _INTS:
                fmt, width = _INTS[op]
                _need(pos, width, end)
                stack.append(struct.unpack(fmt, data[pos : pos + width])[0])
                pos += width
            elif op == 0x8A:  # LONG1
                _need(pos, 1, end)
                n = data[pos]
                _need(pos + 1, n, end)
                stack.append(int.from_bytes(data[pos + 1 : pos + 1 + n], "little", signed=True))
                pos += 1 + n
            elif op == 0x63:  # GLOBAL
                pos = self._global(data, pos, end, at)
            elif op == 0x80:  # PROTO
                _need(pos, 1, end)
                pos += 1
            elif op == 0x2E:  # STOP
                self._result = stack.pop()
                return pos
            elif op in _CODE_OPCODES:
                raise UnsafePickle(self._code_ref(_CODE_OPCODES[op], stack))
            else:
                name = _OPCODE_NAMES.get(op, f"byte {op:#04x}")
                raise _Unsupported(at, f"it uses the pickle opcode {name} (at byte {at}), which no weights-only "
                                       "checkpoint contains")

    def _global(self, data: Any, pos: int, end: int, at: int) -> int:
        """``GLOBAL``: two raw lines, UTF-8, Python 2 names mapped, as torch reads them; refused unless allowed."""
        full, pos = _global_name(data, pos, end, at)
        if not self._global_allowed(full):
            raise UnsafePickle(f"GLOBAL {full}")
        self._frame.stack.append(Ref(full))
        return pos

    def _global_allowed(self, full: str) -> bool:
        return full.split(".", 1)[0] not in _BLOCKED_MODULES and full in self.allowed

    def _code_ref(self, name: str, stack: list[Any]) -> str:
        if name == "STACK_GLOBAL" and len(stack) >= 2 and all(isinstance(s, str) for s in stack[-2:]):
            return f"STACK_GLOBAL {stack[-2]}.{stack[-1]}"
        return f"the opcode {name}, which imports or calls by name"

    def _run_degraded(self, data: Any, pos: int, problem: str) -> int:
        """After a problem: parse on (without executing) only to tell a pickle that carries code from one that
        is merely broken or not a pickle at all. Always raises."""
        stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
        stream.seek(pos)
        code_refs: list[tuple[bool, str]] = []  # (names an allowed global, description)
        strings: list[str] = []
        try:
            for opcode, arg, at in pickletools.genops(stream):
                name = opcode.name
                if name in _STRING_OPCODES:
                    strings = [*strings[-1:], str(arg)]
                elif name == "STACK_GLOBAL":
                    full = ".".join(strings)
                    code_refs.append((self._global_allowed(full), f"STACK_GLOBAL {full}"))
                elif name in ("INST", "GLOBAL"):
                    full = _global_name(data, at + 1, len(data), at)[0]
                    if name == "INST" or not self._global_allowed(full):
                        code_refs.append((False, f"{name} {full}"))
                elif name in _CODE_OPCODE_NAMES:
                    code_refs.append((False, f"the opcode {name}, which imports or calls by name"))
        except Exception:  # noqa: BLE001 -- not a complete pickle: whatever it names, it can never run
            raise MalformedPickle(problem) from None
        if code_refs:
            raise UnsafePickle(min(code_refs, key=lambda ref: ref[0])[1])  # the first that is not allowed
        raise MalformedPickle(problem)

    # -- stack helpers

    def _pop(self) -> Any:
        return self._frame.stack.pop()

    def _pop_mark(self) -> list[Any]:
        items = self._frame.stack
        self._frame.stack = self._frame.marks.pop()
        return items

    def _refuse_size(self, what: str, nbytes: int) -> None:
        if nbytes > self.limit:
            shown = f"{nbytes:,} bytes" if nbytes <= self.limit * 10**6 else "more than a million times that"
            raise OversizedClaim(f"{what} claims {shown}")

    # -- opcodes that work on the stack

    def op_tuple(self, at: int) -> None:
        items = self._tuple(tuple(self._pop_mark()), at)
        self._frame.stack.append(items)

    def op_tuple1(self, at: int) -> None:
        self._frame.stack[-1] = self._tuple((self._frame.stack[-1],), at)

    def op_tuple2(self, at: int) -> None:
        b, a = self._pop(), self._pop()
        self._frame.stack.append(self._tuple((a, b), at))

    def op_tuple3(self, at: int) -> None:
        c, b, a = self._pop(), self._pop(), self._pop()
        self._frame.stack.append(self._tuple((a, b, c), at))

    def _tuple(self, items: tuple, at: int) -> tuple:
        """Track how many items a tuple holds when its shared sub-tuples are expanded: hashing it (as a dict
        key) or printing it walks them all, so 60 tuples of two references each would take forever."""
        weight = 1
        for item in items:
            weight += self._tuple_weights[id(item)][1] if type(item) is tuple and item else 1
        if weight > self.limit + _TUPLE_SLACK:
            raise OversizedClaim(f"the tuple at byte {at} expands to {weight:,} items (shared tuples nested in tuples)")
        if items:
            self._tuple_weights[id(items)] = (items, weight)  # the tuple is kept so that its id stays its own
        return items

    def op_append(self, at: int) -> None:
        item = self._pop()
        self._list_target(at).append(item)

    def op_appends(self, at: int) -> None:
        items = self._pop_mark()
        self._list_target(at).extend(items)

    def _list_target(self, at: int) -> list:
        target = self._frame.stack[-1]
        if type(target) is not list:
            raise MalformedPickle(f"its pickle appends to a {type(target).__name__} at byte {at}")
        return target

    def op_setitem(self, at: int) -> None:
        self._pop(), self._pop()
        self._dict_target(at)

    def op_setitems(self, at: int) -> None:
        if len(self._pop_mark()) % 2:
            raise MalformedPickle(f"its pickle sets a key without a value at byte {at}")
        self._dict_target(at)

    def _dict_target(self, at: int) -> None:
        if not isinstance(self._frame.stack[-1], DictLike):
            raise MalformedPickle(f"its pickle sets items of a {type(self._frame.stack[-1]).__name__} at byte {at}")

    def op_binpersid(self, at: int) -> None:
        pid = self._pop()
        if self.storage_hook is None:
            raise MalformedPickle(f"its pickle references external data at byte {at} where none can be")
        if not isinstance(pid, tuple) or not pid or pid[0] not in ("storage", b"storage"):
            raise MalformedPickle(f"its persistent id at byte {at} is not a storage reference")
        self._frame.stack.append(self.storage_hook(pid))

    def op_reduce(self, at: int) -> None:
        args = self._pop()
        self._frame.stack[-1] = self._call(self._frame.stack[-1], args, at)

    def op_newobj(self, at: int) -> None:
        args = self._pop()
        cls = self._pop()
        self._frame.stack.append(self._call(cls, args, at))

    def op_build(self, at: int) -> None:
        state = self._pop()
        self._build(self._frame.stack[-1], state, at)

    # -- calls

    def _call(self, func: Any, args: Any, pos: int) -> Any:
        """Check a call (``REDUCE``/``NEWOBJ``) of an allowed global; return the stand-in of its result."""
        if not isinstance(func, Ref):
            raise UnsafePickle(f"a call of something that is not an allowed function (at byte {pos})")
        if not isinstance(args, (tuple, list)):
            raise MalformedPickle(f"the call of {func.name} at byte {pos} has no argument tuple")
        handler = self._handlers.get(func.name, self._call_call)
        if handler is None:
            raise MalformedPickle(f"its pickle calls {func.name}, which no checkpoint calls (at byte {pos})")
        return handler(func.name, tuple(args), pos)

    def _call_call(self, name: str, args: tuple, pos: int) -> Any:
        return Opaque(name)

    def _call_dict(self, name: str, args: tuple, pos: int) -> Any:
        return DictLike(name)

    def _call_bytearray(self, name: str, args: tuple, pos: int) -> Any:
        if args:
            first = args[0]
            if is_int(first):
                self._refuse_size(f"bytearray({first}) at byte {pos}", first)
            elif not isinstance(first, (str, bytes, bool, tuple, list)):
                raise MalformedPickle(f"its pickle calls bytearray on a computed value at byte {pos}")
        return Opaque(name)

    def _call_encode(self, name: str, args: tuple, pos: int) -> Any:
        text = args[0] if args else None
        encoding = args[1] if len(args) > 1 else "utf-8"
        if not isinstance(text, str) or not isinstance(encoding, str) or encoding.lower() not in _TEXT_ENCODINGS:
            raise MalformedPickle(
                f"its pickle calls _codecs.encode with other than a string and a text encoding (at byte {pos})"
            )
        try:
            return text.encode(encoding)
        except UnicodeError:
            raise MalformedPickle(f"the bytes at byte {pos} cannot be encoded as {encoding}") from None

    def _call_tensor_class(self, name: str, args: tuple, pos: int) -> Any:
        """``torch.FloatTensor(n, m)``, ``UntypedStorage(n)``, ``Parameter(data)``: sizes as ints allocate."""
        dims: list[int] = []
        for a in args:
            if is_int(a):
                dims.append(a)
            elif isinstance(a, (tuple, list)) and all(is_int(d) for d in a):
                dims.extend(a)
            elif not isinstance(a, (Tensor, StorageClaim, Ref, bool, type(None))):
                raise MalformedPickle(f"its pickle constructs {name} from a computed value at byte {pos}")
        if any(d < 0 for d in dims):
            raise MalformedPickle(f"its pickle constructs {name} with a negative size at byte {pos}")
        if dims:
            self._refuse_size(f"{name}{tuple(dims)} at byte {pos}", bounded_product(dims, self.limit) * 8)
        tensors = [a for a in args if isinstance(a, Tensor)]
        return tensors[0] if tensors else Tensor(bounded_product(dims, self.limit) if dims else 0)

    def _call_rebuild_tensor(self, name: str, args: tuple, pos: int) -> Any:
        """``_rebuild_tensor[_v2|_v3](storage, offset, size, stride, ...)``: the view must lie in the storage."""
        if len(args) < 4:
            raise MalformedPickle(f"{name} at byte {pos} has {len(args)} arguments")
        elsize = None
        if name.endswith("_v3") and len(args) > 6:
            elsize = self._torch_dtype_size(args[6], pos)
        return self._view(args[0], args[1], args[2], args[3], elsize, f"the tensor at byte {pos}")

    def _call_rebuild_qtensor(self, name: str, args: tuple, pos: int) -> Any:
        """A quantized tensor is first allocated at its full size, then set to its storage."""
        if len(args) < 4:
            raise MalformedPickle(f"{name} at byte {pos} has {len(args)} arguments")
        tensor = self._view(args[0], args[1], args[2], args[3], None, f"the quantized tensor at byte {pos}")
        self._refuse_size(f"the quantized tensor at byte {pos}", (tensor.numel or 0) * args[0].elsize)
        return tensor

    def _call_rebuild_parameter(self, name: str, args: tuple, pos: int) -> Any:
        return args[0] if args and isinstance(args[0], Tensor) else Tensor()

    def _call_rebuild_untracked(self, name: str, args: tuple, pos: int) -> Any:
        """Meta, sparse and wrapper-subclass tensors: built from tensors already checked, no new storage."""
        return Tensor()

    def _call_rebuild_refused(self, name: str, args: tuple, pos: int) -> Any:
        raise MalformedPickle(f"its pickle calls {name}, which medzoo does not load (at byte {pos})")

    def _call_rebuild_converted(self, name: str, args: tuple, pos: int) -> Any:
        """``_rebuild_device_tensor_from_cpu_tensor/_numpy(data, dtype, ...)``: a copy in another dtype."""
        data = args[0] if args else None
        if not isinstance(data, (Tensor, NumpyArray)) or getattr(data, "numel", None) is None or len(args) < 2:
            raise MalformedPickle(f"{name} at byte {pos} converts something that is not a checked tensor")
        elsize = self._torch_dtype_size(args[1], pos)
        self._refuse_size(f"the tensor converted at byte {pos}", data.numel * elsize)
        return Tensor(data.numel)

    def _call_rebuild_from_type(self, name: str, args: tuple, pos: int) -> Any:
        """``_rebuild_from_type_v2(func, type, args, state)`` calls ``func(*args)``: check that call."""
        if len(args) < 3:
            raise MalformedPickle(f"{name} at byte {pos} has {len(args)} arguments")
        return self._call(args[0], args[2], pos)

    def _call_np_reconstruct(self, name: str, args: tuple, pos: int) -> Any:
        if len(args) != 3 or args[0] != Ref("numpy.ndarray"):
            raise MalformedPickle(f"{name} at byte {pos} does not rebuild a plain numpy array")
        shape = (args[1],) if is_int(args[1]) else args[1]
        if not isinstance(shape, tuple) or not all(is_int(d) and d >= 0 for d in shape):
            raise MalformedPickle(f"the numpy array at byte {pos} has a shape that is not a tuple of sizes")
        numel = bounded_product(shape, self.limit)
        self._refuse_size(f"the numpy array of shape {shape} at byte {pos}", numel * self._numpy_itemsize(args[2], pos))
        return NumpyArray(numel)

    def _numpy_itemsize(self, dtype: Any, pos: int) -> int:
        """Item size of a ``_reconstruct`` dtype argument: a simple dtype code (numpy writes ``b'b'``) or dtype."""
        if isinstance(dtype, NumpyDtype):
            return dtype.itemsize
        code = dtype.decode("latin-1") if isinstance(dtype, bytes) else dtype
        return self._call_np_dtype("numpy.dtype", (code,), pos).itemsize

    def _call_np_scalar(self, name: str, args: tuple, pos: int) -> Any:
        if not args or not isinstance(args[0], NumpyDtype):
            raise MalformedPickle(f"the numpy scalar at byte {pos} has no simple numpy dtype")
        self._refuse_size(f"the numpy scalar at byte {pos}", args[0].itemsize)
        return Opaque(name)

    def _call_np_dtype(self, name: str, args: tuple, pos: int) -> Any:
        code = args[0] if args else None
        if not (isinstance(code, str) and code[:1] in _NUMPY_DTYPE_KINDS and (code[1:].isdigit() or not code[1:])):
            raise MalformedPickle(f"the numpy dtype at byte {pos} is not a plain number, string or object dtype")
        import numpy as np

        try:
            return NumpyDtype(code, np.dtype(code).itemsize)
        except (TypeError, ValueError):
            raise MalformedPickle(f"the numpy dtype {code!r} at byte {pos} is not valid") from None

    def _torch_dtype_size(self, ref: Any, pos: int) -> int:
        obj = self.allowed.get(ref.name) if isinstance(ref, Ref) else None
        if not isinstance(obj, torch.dtype):
            raise MalformedPickle(f"the tensor at byte {pos} has no torch dtype")
        return obj.itemsize

    def _view(self, storage: Any, offset: Any, size: Any, stride: Any, elsize: int | None, what: str) -> Tensor:
        """A strided view ``(offset, size, stride)`` of ``storage``: ``set_`` would grow a storage that is too
        small to the claimed extent, so the extent must lie inside the storage."""
        if not isinstance(storage, StorageClaim):
            raise MalformedPickle(f"{what} is not backed by a storage of the file")
        size = tuple(size) if isinstance(size, (tuple, list)) else size
        stride = tuple(stride) if isinstance(stride, (tuple, list)) else stride
        if not (is_int(offset) and isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)):
            raise MalformedPickle(f"{what} has no valid offset, size and stride")
        if offset < 0 or not all(is_int(v) and v >= 0 for v in size + stride):
            raise MalformedPickle(f"{what} has a negative offset, size or stride")
        elsize = storage.elsize if elsize is None else elsize
        numel = bounded_product(size, self.limit)
        extent = 0 if numel == 0 else offset + 1 + sum((n - 1) * s for n, s in zip(size, stride))
        if extent * elsize > storage.nbytes:
            self._refuse_size(f"{what} (size {size}, stride {stride})", extent * elsize)
            raise MalformedPickle(
                f"{what} (size {size}, stride {stride}) reaches beyond its storage of {storage.nbytes:,} bytes"
            )
        return Tensor(numel)

    # -- BUILD

    def _build(self, inst: Any, state: Any, pos: int) -> None:
        """Check ``BUILD`` (``__setstate__``): ndarray contents, dtype state and legacy ``Tensor.set_``."""
        if isinstance(inst, NumpyArray):
            self._build_array(inst, state, pos)
        elif isinstance(inst, NumpyDtype):
            self._build_dtype(inst, state, pos)
        elif isinstance(inst, Tensor):
            if isinstance(state, tuple) and len(state) == 4:  # legacy tensors: Tensor.set_(storage, offset, size, stride)
                inst.numel = self._view(*state, None, f"the tensor built at byte {pos}").numel
        elif isinstance(inst, Ref):
            raise UnsafePickle(f"BUILD on the global {inst.name} (at byte {pos})")
        elif not isinstance(inst, (DictLike, Opaque)):
            raise MalformedPickle(f"its pickle sets the state of a {type(inst).__name__} at byte {pos}")

    def _build_dtype(self, inst: NumpyDtype, state: Any, pos: int) -> None:
        """A dtype's state must be the one numpy writes for its code: forged flags (say, "holds objects" on a
        float dtype) or sizes make numpy misread the array data that follows."""
        import numpy as np

        natural = np.dtype(inst.code)
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)
                and state[1] in ("<", ">", "|", "=") and state[2:5] == (None, None, None)
                and state[5] in (-1, natural.itemsize) and state[6] in (-1, natural.alignment)
                and is_int(state[7]) and state[7] | _HARMLESS_DTYPE_FLAGS == natural.flags | _HARMLESS_DTYPE_FLAGS
                and (len(state) == 8 or state[8] is None)):
            raise MalformedPickle(f"the numpy dtype {inst.code!r} at byte {pos} has a state numpy never writes for it")

    def _build_array(self, inst: NumpyArray, state: Any, pos: int) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise MalformedPickle(f"the numpy array at byte {pos} has an unknown state")
        shape, dtype, data = state[-4], state[-3], state[-1]
        if not isinstance(shape, tuple) or not all(is_int(d) and d >= 0 for d in shape):
            raise MalformedPickle(f"the numpy array at byte {pos} has a shape that is not a tuple of sizes")
        if not isinstance(dtype, NumpyDtype):
            raise MalformedPickle(f"the numpy array at byte {pos} has no simple numpy dtype")
        numel = bounded_product(shape, self.limit)
        self._refuse_size(f"the numpy array of shape {shape} at byte {pos}", numel * dtype.itemsize)
        if isinstance(data, list):  # object arrays: numpy reads `numel` items of the list, whatever its length
            if dtype.code[0] != "O" or len(data) < numel:
                raise MalformedPickle(f"the numpy array at byte {pos} has fewer items ({len(data)}) than its shape {shape}")
        elif not isinstance(data, (bytes, str)):
            raise MalformedPickle(f"the numpy array at byte {pos} has no raw data")
        inst.numel = numel


def _classify(allowed: Mapping[str, Any]) -> dict[str, str]:
    """How each allowed global may be called (see the ``_call_<kind>`` methods); absent: a plain call."""
    from torch.serialization import StorageType

    kinds: dict[str, str] = {}
    tensor_classes = set(torch._tensor_classes) | {torch.Tensor, torch.nn.Parameter, torch.UntypedStorage,
                                                   torch.TypedStorage}
    for name, obj in allowed.items():
        if isinstance(obj, type) and obj in tensor_classes:
            kinds[name] = "tensor_class"
        elif isinstance(obj, (torch.dtype, StorageType, torch.qscheme, torch.layout)):
            kinds[name] = "value"  # not callable: no _call_value handler, so a call is refused
    kinds.update(_NAMED_KINDS)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        kinds[f"{module}._reconstruct"] = "np_reconstruct"
        kinds[f"{module}.scalar"] = "np_scalar"
    for name in allowed:
        if name.startswith("numpy.dtypes.") or name == "numpy.ndarray":
            kinds[name] = "value"
    kinds["numpy.dtype"] = "np_dtype"
    return kinds


_NAMED_KINDS = {
    "builtins.bytearray": "bytearray",
    "_codecs.encode": "encode",
    "collections.OrderedDict": "dict",
    "collections.Counter": "dict",
    "torch._utils._rebuild_tensor": "rebuild_tensor",
    "torch._utils._rebuild_tensor_v2": "rebuild_tensor",
    "torch._utils._rebuild_tensor_v3": "rebuild_tensor",
    "torch._utils._rebuild_qtensor": "rebuild_qtensor",
    "torch._utils._rebuild_parameter": "rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state": "rebuild_parameter",
    "torch._utils._rebuild_meta_tensor_no_storage": "rebuild_untracked",
    "torch._utils._rebuild_sparse_tensor": "rebuild_untracked",
    "torch._utils._rebuild_wrapper_subclass": "rebuild_untracked",
    "torch._utils._rebuild_nested_tensor": "rebuild_refused",
    "torch._utils._rebuild_device_tensor_from_cpu_tensor": "rebuild_converted",
    "torch._utils._rebuild_device_tensor_from_numpy": "rebuild_converted",
    "torch._tensor._rebuild_from_type_v2": "rebuild_from_type",
}
