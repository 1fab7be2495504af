"""Data-only pickles: `training_args.bin`, `optimizer.pt`, `scheduler.pt` and DeepSpeed's
`*_model_states.pt` / `*_optim_states.pt` read by `read_pickle_data`, an unpickler that maps an
allow-list of globals to inert data stand-ins. Nothing inside is ever called (not even torch's
own rebuild functions), torch is not imported, and tensors come back as `TensorRef` (dtype,
shape) only.
"""

from __future__ import annotations

import collections
import pickle
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from fgclip_doctor.errors import DoctorInputError

#: What an unpickler raises on truncated or junk bytes: EOFError, ValueError, KeyError (a missing
#: memo), IndexError / TypeError / AttributeError (a malformed stack), OverflowError and struct.error
#: (absurd lengths), BadZipFile (a torch zip that is not one).
UNREADABLE_PICKLE = (
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    OverflowError,
    struct.error,
    zipfile.BadZipFile,
)


class Stub:
    """A pickled object rebuilt as data: its class name, constructor args and state; never code."""

    args: tuple = ()  # class defaults: NEWOBJ builds instances without calling __init__
    state: object = None

    def __init__(self, *args: object) -> None:
        self.args = args

    def __setstate__(self, state: object) -> None:
        self.state = state

    def get(self, key: str, default: object = None) -> object:
        """A field of the pickled object (its __dict__ / dataclass fields)."""
        s = self.state[1] if isinstance(self.state, tuple) and len(self.state) == 2 else self.state
        if isinstance(s, tuple):  # (dict, slots) from __reduce_ex__ of slotted classes
            s = next((x for x in s if isinstance(x, dict)), None)
        return s.get(key, default) if isinstance(s, dict) else default

    @property
    def value(self) -> object:
        """An enum / device member: the value it was built from."""
        return self.args[0] if len(self.args) == 1 else None


@dataclass(frozen=True)
class TensorRef:
    """A tensor inside a torch pickle, as dtype and shape only (its bytes are never read)."""

    dtype: str
    shape: tuple[int, ...]


def _stub_class(qualname: str) -> type:
    return type(qualname.rsplit(".", 1)[-1], (Stub,), {"qualname": qualname})


def _rebuild_tensor(storage, offset, size, *_rest) -> TensorRef:
    return TensorRef(storage if isinstance(storage, str) else "?", tuple(size))


def _reconstructor(cls, base, state=None):  # copyreg._reconstructor, without calling base
    return cls() if isinstance(cls, type) and issubclass(cls, Stub) else Stub(cls, state)


_EXACT = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "tuple"): tuple,
    ("builtins", "list"): list,
    ("builtins", "dict"): dict,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("copyreg", "__newobj__"): lambda cls, *_: _reconstructor(cls, None),
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): lambda data, *_: data,
    ("torch._tensor", "_rebuild_from_type_v2"): lambda func, _type, args, _state: func(*args),
    ("torch", "Size"): tuple,
}
#: modules whose classes (enums, dataclasses, loss scalers) become stubs; their code never runs
_STUB_MODULES = ("transformers.", "accelerate.", "deepspeed.", "peft.", "trl.")
_STUB_NAMES = re.compile(r"\w*(Arguments|Args)")  # a project's own TrainingArguments subclass


class _DataUnpickler(pickle.Unpickler):
    """Resolves globals to the stand-ins above; anything else is refused before it is called."""

    def find_class(self, module: str, name: str):
        module = "builtins" if module == "__builtin__" else module
        if (module, name) in _EXACT:
            return _EXACT[(module, name)]
        if module == "torch" and name.endswith("Storage"):
            return name[: -len("Storage")] or "Untyped"  # a dtype label for TensorRef
        if module == "torch" and name in ("device", "dtype"):
            return _stub_class(f"torch.{name}")
        if module == "torch":  # torch.float32 and friends: a dtype object, kept as its name
            if re.fullmatch(r"(b?float|u?int|complex|bool)\w*", name):
                return f"torch.{name}"
        if module.startswith(_STUB_MODULES) or _STUB_NAMES.fullmatch(name):
            return _stub_class(f"{module}.{name}")
        raise pickle.UnpicklingError(f"global {module}.{name}")

    def persistent_load(self, pid):  # torch.save's storages: ('storage', type, key, location, n)
        if isinstance(pid, tuple) and len(pid) >= 2 and pid[0] == "storage":
            return pid[1]
        raise pickle.UnpicklingError("unsupported persistent id")


def read_pickle_data(path: object) -> object:
    """A torch.save file (zip) or plain pickle, as data: dicts, lists, numbers, Stub, TensorRef.

    Raises DoctorInputError for a pickle naming any global outside the allow-list ("refused:
    the pickle wants to run code (os.system)") and for files that are not pickles.
    """
    p = Path(str(path))
    try:
        if zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as zf:
                member = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                if member is None:
                    raise DoctorInputError(path, "not a torch checkpoint (zip without data.pkl)")
                with zf.open(member) as fh:
                    return _DataUnpickler(fh).load()
        with p.open("rb") as fh:
            return _DataUnpickler(fh).load()
    except DoctorInputError:
        raise
    except pickle.UnpicklingError as err:
        m = re.match(r"global (\S+)", str(err))
        if m:
            raise DoctorInputError(
                path, f"refused: the pickle wants to run code ({m.group(1)}); only data is read from it"
            ) from None
        raise DoctorInputError(path, f"not a readable pickle ({str(err)[:120]})") from None
    except FileNotFoundError:
        raise DoctorInputError(path, "no such file") from None
    except OSError as err:
        raise DoctorInputError(path, f"cannot read: {err.strerror or err}") from None
    # truncated / junk bytes: what the unpickler raises on them (EOFError, ValueError, KeyError on a
    # missing memo, IndexError / TypeError / AttributeError on a malformed stack, OverflowError and
    # struct.error on absurd lengths, BadZipFile): one line, never a traceback
    except UNREADABLE_PICKLE as err:
        raise DoctorInputError(path, f"not a readable pickle ({type(err).__name__}: {str(err)[:120]})") from None
