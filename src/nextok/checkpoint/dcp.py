"""Read sharded (``torch.distributed.checkpoint``) folders without running code from them.

A sharded folder's ``.metadata`` is a pickle that DCP's ``FileSystemReader`` loads with a plain
``pickle.load``, and every non-tensor value in the ``.distcp`` shards (the optimizer's
``param_groups``) is read with ``torch.load(weights_only=False)``: a crafted folder runs its
payload. Every DCP read in nextok (``nextok-consolidate``, resuming an FSDP2 run) goes through
:class:`SafeFileSystemReader`: ``.metadata`` is read once, up front, by an unpickler that admits
only DCP's metadata classes and the few torch/stdlib types they hold; a non-tensor value must load
with ``torch.load(weights_only=True)``; shards must be plain file names inside the folder.
Anything else is refused with one line naming the file.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta

from nextok.checkpoint.format import DCP_METADATA, META_PT
from nextok.checkpoint.safe import UnsafeCheckpointError, safe_load

_DCP_CLASSES = {
    "torch.distributed.checkpoint.metadata": {
        "Metadata",
        "TensorStorageMetadata",
        "BytesStorageMetadata",
        "TensorProperties",
        "ChunkStorageMetadata",
        "MetadataIndex",
        "StorageMeta",
        "_MEM_FORMAT_ENCODING",
    },
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},  # maps a layout's name to the layout
    "torch": {"Size"},
    "pathlib": {"PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"},
    "collections": {"OrderedDict"},
}


class _Refused(pickle.UnpicklingError):
    """A global the metadata unpickler does not admit."""


class _MetadataUnpickler(pickle.Unpickler):
    """Admits DCP's metadata classes, torch dtypes/layouts/memory formats and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if name in _DCP_CLASSES.get(module, ()):
            return super().find_class(module, name)
        if module == "torch" and isinstance(
            getattr(torch, name, None), (torch.dtype, torch.layout, torch.memory_format)
        ):
            return getattr(torch, name)
        raise _Refused(f"{module}.{name}")


def read_dcp_metadata(folder: str | Path) -> Metadata:
    """``folder/.metadata`` as DCP's :class:`Metadata`, or one-line ``ValueError``."""
    path = Path(folder) / DCP_METADATA
    if not path.is_file():
        raise ValueError(
            f"{folder} is not a sharded checkpoint folder (no {DCP_METADATA} from "
            "torch.distributed.checkpoint)"
        )
    try:
        with open(path, "rb") as f:
            meta = _MetadataUnpickler(f).load()
    except _Refused as err:
        raise UnsafeCheckpointError(
            f"refusing to load {path}: it asks for {err}, which is not part of "
            "torch.distributed.checkpoint's metadata (unpickling it could run code)"
        ) from None
    except Exception as err:  # truncated or not a pickle at all
        raise ValueError(
            f"cannot read {path}: not a torch.distributed.checkpoint metadata file "
            f"({type(err).__name__}: {err})"
        ) from None
    if not isinstance(meta, Metadata) or not isinstance(meta.storage_data, dict):
        raise ValueError(f"{path} is not torch.distributed.checkpoint metadata")
    for info in meta.storage_data.values():
        name = getattr(info, "relative_path", None)
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise ValueError(
                f"{path} names a shard {name!r} that is not a file inside {folder}; refusing it"
            )
    if getattr(meta, "storage_meta", None) is None:
        meta.storage_meta = StorageMeta()
    return meta


class _WeightsOnlyBytes:
    """A load planner whose non-tensor values must load with ``torch.load(weights_only=True)``
    before the planner (which uses ``weights_only=False``) sees them."""

    def __init__(self, planner: Any, folder: Path) -> None:
        self._planner, self._folder = planner, folder

    def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
        data = value.read()
        try:
            torch.load(io.BytesIO(data), weights_only=True)
        except pickle.UnpicklingError as err:
            why = str(err).strip().splitlines()[0] if str(err).strip() else "not a pickle"
            raise UnsafeCheckpointError(
                f"refusing to load {self._folder}: its value {read_item.dest_index.fqn!r} holds "
                f"objects other than tensors and plain containers ({why[:200]})"
            ) from None
        self._planner.load_bytes(read_item, io.BytesIO(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._planner, name)


class SafeFileSystemReader(FileSystemReader):
    """DCP's ``FileSystemReader`` that never unpickles anything but metadata and plain values."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(str(path))
        self.folder = Path(path)
        self._metadata = read_dcp_metadata(self.folder)

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        if kwargs.get("rank") is not None:  # rank-local metadata: not written by nextok
            raise ValueError(f"{self.folder}: rank-local metadata is not supported")
        self._metadata.storage_meta.load_id = self.load_id
        return self._metadata

    def read_data(self, plan: Any, planner: Any) -> Any:
        return super().read_data(plan, _WeightsOnlyBytes(planner, self.folder))


def load_dcp(state: dict[str, Any], folder: str | Path, planner: Any = None) -> None:
    """``torch.distributed.checkpoint`` load of ``state`` (in place) from ``folder`` through
    :class:`SafeFileSystemReader`, in this process only; errors of ours come out as themselves
    (DCP wraps them in a multi-rank ``CheckpointException``)."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    reader = SafeFileSystemReader(folder)
    no_dist = not (dist.is_available() and dist.is_initialized())
    try:
        _load_state_dict(state, storage_reader=reader, planner=planner, no_dist=no_dist)
    except CheckpointException as err:
        for exc, _trace in err.failures.values():
            if isinstance(exc, ValueError):
                raise exc from None
        raise


def read_sharded_meta(folder: str | Path) -> dict[str, Any]:
    """A sharded folder's ``meta.pt`` (Lightning's loop state and the ``nextok`` entry), after
    its ``.metadata`` passed :func:`read_dcp_metadata`."""
    folder = Path(folder)
    read_dcp_metadata(folder)
    if not (folder / META_PT).is_file():
        raise ValueError(f"{folder} has no {META_PT} (Lightning's checkpoint metadata)")
    meta = safe_load(folder / META_PT)
    if not isinstance(meta, dict):
        raise ValueError(f"{folder / META_PT} is not a checkpoint dict")
    return meta


def load_sharded_training_state(
    folder: str | Path, module: torch.nn.Module, optimizers: list[Any], strict: bool = True
) -> dict[str, Any]:
    """Load a sharded training checkpoint into an FSDP2 ``module`` and its ``optimizers`` (what
    Lightning's ``ModelParallelStrategy.load_checkpoint`` does, through the safe reader); returns
    the rest of the checkpoint (``meta.pt``)."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
        set_optimizer_state_dict,
    )

    meta = read_sharded_meta(folder)
    module_state = {"state_dict": get_model_state_dict(module)}
    load_dcp(module_state, folder)
    module.load_state_dict(module_state["state_dict"], strict=strict)
    for idx, optim in enumerate(optimizers):
        key = f"optimizer_{idx}"
        optim_state = {key: get_optimizer_state_dict(module, optim)}
        load_dcp(optim_state, folder)
        set_optimizer_state_dict(
            module,
            optim,
            optim_state_dict=optim_state[key],
            options=StateDictOptions(cpu_offload=True),
        )
    return meta
