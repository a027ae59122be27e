"""The thin Lightning side of FSDP2 / tensor parallelism: a strategy that builds the device mesh
and carries the sharding options; the sharding itself is :func:`nextok.distributed.parallelize`,
called from the LightningModule's ``configure_model``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch.strategies import ModelParallelStrategy

from nextok.dtypes import as_dtype


class FSDP2Strategy(ModelParallelStrategy):
    """Lightning's ``ModelParallelStrategy`` with sizes that default to pure FSDP.

    Lightning's ``"auto"`` sizes mean "data parallel across nodes, tensor parallel within a node";
    here ``tensor_parallel_size`` defaults to 1 and the data-parallel size is inferred as
    ``world_size / tensor_parallel_size``. The FSDP options are stored on the strategy so the
    LightningModule's ``configure_model`` can pass them on: ``parallelize(model, mesh,
    **strategy.parallelize_kwargs)``. ``meta_init`` asks the module to build the model on the meta
    device (no rank allocates the full model).
    """

    def __init__(
        self,
        tensor_parallel_size: int = 1,
        data_parallel_size: int | Literal["auto"] = "auto",
        mp_param_dtype: str | None = None,
        reduce_dtype: str | None = "float32",
        reshard_after_forward: bool = True,
        meta_init: bool = False,
        save_distributed_checkpoint: bool = True,
        process_group_backend: str | None = None,
        timeout_s: float = 1800.0,
    ) -> None:
        if not isinstance(tensor_parallel_size, int) or tensor_parallel_size < 1:
            raise ValueError(
                "trainer.strategy.tensor_parallel_size must be a positive integer, "
                f"got {tensor_parallel_size!r}"
            )
        # torch.distributed.checkpoint cannot describe the strided shards of the fused qkv / SwiGLU
        # weights ("overlapping chunks"): with tensor parallelism, checkpoints are gathered into
        # one full file on rank 0 instead (and re-sharded on load).
        super().__init__(
            data_parallel_size=data_parallel_size,
            tensor_parallel_size=tensor_parallel_size,
            save_distributed_checkpoint=save_distributed_checkpoint and tensor_parallel_size == 1,
            process_group_backend=process_group_backend,
            timeout=timedelta(seconds=timeout_s),
        )
        self.meta_init = meta_init
        self.parallelize_kwargs: dict[str, Any] = {
            "mp_param_dtype": as_dtype(mp_param_dtype, "trainer.strategy.mp_param_dtype"),
            "reduce_dtype": as_dtype(reduce_dtype, "trainer.strategy.reduce_dtype"),
            "reshard_after_forward": reshard_after_forward,
        }

    def load_checkpoint(self, checkpoint_path: Any, weights_only: bool | None = None) -> Any:
        """A sharded folder loads through :mod:`nextok.checkpoint.dcp` (its metadata and values
        never run code); a single file goes to Lightning (``weights_only``)."""
        path = Path(self.broadcast(checkpoint_path))
        if not path.is_dir():
            return super().load_checkpoint(checkpoint_path, weights_only=weights_only)
        from nextok.checkpoint.dcp import load_sharded_training_state

        assert self.lightning_module is not None
        return load_sharded_training_state(
            path, self.model, self.optimizers, strict=self.lightning_module.strict_loading
        )

    def setup_environment(self) -> None:
        world = self.num_nodes * self.num_processes
        tp = self._tensor_parallel_size
        if world % tp:
            raise ValueError(
                f"trainer.strategy.tensor_parallel_size={tp} does not divide the world size {world} "
                f"(num_nodes={self.num_nodes} x devices={self.num_processes})"
            )
        if self._data_parallel_size == "auto":
            self._data_parallel_size = world // tp
        elif self._data_parallel_size * tp != world:
            raise ValueError(
                f"trainer.strategy.data_parallel_size={self._data_parallel_size} x "
                f"tensor_parallel_size={tp} must equal the world size {world}"
            )
        super().setup_environment()
