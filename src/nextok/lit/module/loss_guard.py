"""Training-loss bookkeeping kept on the device: no host sync in the steady state.

Why: reading a GPU value on the host (``.item()``, ``bool(t)``, ``float(t)``) stalls the launch
queue until the GPU has caught up. The loss of each micro-batch is therefore summed on the
device, and whether any loss was NaN/inf is a device-side flag; the host reads them only when
it must anyway (log steps, validation, checkpoints, the end of training).

A step is non-finite when a micro-batch's loss or the step's gradient norm is NaN/inf (a finite
loss can come with an overflowing backward pass).

- ``stop``: the first step with a non-finite loss is remembered on the device; ``check()``
  (called at those sync points) raises :class:`NonFiniteLossError` naming it. The run stops at
  the next sync point, and no checkpoint of the poisoned weights is written.
- ``skip``: the optimizer step is dropped. With the fused AdamW (the default on CUDA) the drop
  happens on the device (the kernel's ``found_inf`` input: no update, no moment change, step
  count unchanged); other implementations read the flag on the host once per optimizer step.
- ``ignore``: nothing is checked.
"""

from __future__ import annotations

import torch

NONFINITE_POLICIES = ("stop", "skip", "ignore")
_NO_STEP = 2**62


class NonFiniteLossError(FloatingPointError):
    """Raised (policy ``stop``) when the training loss or gradient norm is NaN or infinite."""


class LossGuard:
    """Device-side sums of the current optimizer step's losses and non-finite flags."""

    def __init__(self, policy: str) -> None:
        if policy not in NONFINITE_POLICIES:
            raise ValueError(
                f"module.on_nonfinite must be one of {NONFINITE_POLICIES}, got {policy!r}"
            )
        self.policy = policy
        self.reset_step()
        self.first_bad: torch.Tensor | None = None  # earliest step with a non-finite loss (stop)
        self.skipped: torch.Tensor | None = None  # optimizer steps dropped so far (skip)
        self.skipped_reported = 0

    def reset_step(self) -> None:
        self.loss_sum: torch.Tensor | None = None
        self.count: torch.Tensor | None = None
        self.bad: torch.Tensor | None = None

    def add(self, loss: torch.Tensor, step: int, checked: torch.Tensor | None = None) -> None:
        """Record one micro-batch's loss of optimizer step ``step`` (no host sync).

        ``checked``: the value whose finiteness decides (default ``loss``), e.g. the loss plus
        auxiliary terms while ``loss`` alone is what gets logged.
        """
        loss = loss.detach().float()
        if self.policy == "ignore":
            finite = torch.ones((), dtype=torch.bool, device=loss.device)
        else:
            finite = torch.isfinite(loss if checked is None else checked.detach())
        kept = torch.where(finite, loss, 0.0) if self.policy != "ignore" else loss
        self.loss_sum = kept if self.loss_sum is None else self.loss_sum + kept
        self.count = finite.float() if self.count is None else self.count + finite.float()
        self.bad = ~finite if self.bad is None else self.bad | ~finite
        if self.policy == "stop":
            if self.first_bad is None:
                self.first_bad = torch.full((), _NO_STEP, dtype=torch.long, device=loss.device)
            self.first_bad = torch.where(
                ~finite, torch.clamp(self.first_bad, max=step), self.first_bad
            )

    def add_grad_norm(self, norm: torch.Tensor, step: int) -> None:
        """The optimizer step's gradient norm counts like a loss: a finite loss whose gradient
        norm is NaN/inf (an overflow in the backward pass) poisons the update just the same."""
        if self.policy == "ignore" or self.bad is None:
            return
        finite = torch.isfinite(norm.detach()).reshape(()).to(self.bad.device)
        self.bad = self.bad | ~finite
        if self.policy == "stop":
            self.first_bad = torch.where(
                ~finite, torch.clamp(self.first_bad, max=step), self.first_bad
            )

    def step_loss(self) -> torch.Tensor | None:
        """Mean finite loss of the current optimizer step (nan if all were non-finite)."""
        if self.loss_sum is None:
            return None
        return self.loss_sum / self.count

    def guard_update(self, optimizer: torch.optim.Optimizer, bad: torch.Tensor) -> bool:
        """Policy ``skip``: arrange for this optimizer step to be dropped if ``bad`` (a device bool).

        Returns True when the step must instead be dropped by the caller (host-side decision).
        """
        flag = bad.float().reshape(())
        self.skipped = flag if self.skipped is None else self.skipped + flag
        if _is_fused(optimizer):
            optimizer.found_inf = flag.to(_param_device(optimizer))
            return False
        return bool(flag.item())  # non-fused AdamW has no device-side skip: one sync per step

    def check(self, reduce=None) -> str | None:  # noqa: ANN001 - reduce(tensor, op) -> tensor
        """At a sync point: raise (stop) or return a one-line report of skipped steps (skip)."""
        if self.policy == "stop" and self.first_bad is not None:
            first = self.first_bad if reduce is None else -reduce(-self.first_bad, "max")
            step = int(first.item())
            if step != _NO_STEP:
                raise NonFiniteLossError(
                    f"training loss or gradient norm is not finite at step {step}; stopping. "
                    "Lower optim.lr, use "
                    "precision=bf16-mixed instead of 16-mixed, or set module.on_nonfinite=skip "
                    "to drop such steps."
                )
        if self.policy == "skip" and self.skipped is not None:
            n = int(self.skipped.item())
            if n > self.skipped_reported:
                new, self.skipped_reported = n - self.skipped_reported, n
                return f"skipped {new} optimizer step(s) with a non-finite loss ({n} so far)"
        return None


def clear_guard(optimizer: torch.optim.Optimizer) -> None:
    optimizer.__dict__.pop("found_inf", None)


def _is_fused(optimizer: torch.optim.Optimizer) -> bool:
    return all(g.get("fused") for g in optimizer.param_groups) and type(optimizer) in (
        torch.optim.AdamW,
        torch.optim.Adam,
    )


def _param_device(optimizer: torch.optim.Optimizer) -> torch.device:
    return optimizer.param_groups[0]["params"][0].device
