"""The decoder-only transformer: embeddings -> pre-norm blocks -> final norm -> LM head.

One code path serves training (full sequences, ``is_causal``) and cached decoding (a
:class:`KVCache` plus an explicit mask when needed), so incremental decoding is not a bolt-on.
The block's parts live in :mod:`nextok.model.layers` (norm, attention, MLP),
:mod:`nextok.model.rope` and :mod:`nextok.model.moe`.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from nextok.model.config import ModelConfig
from nextok.model.kv_cache import AttentionCache, KVCache
from nextok.model.layers import MLP, Attention, UNetSkips, ValueResidual, norm_layer
from nextok.model.loss import lm_loss, softcap_logits
from nextok.model.masks import causal_mask, within_documents
from nextok.model.moe import MoE
from nextok.model.rope import RotaryEmbedding, on_meta_device


def _mlp(cfg: ModelConfig, layer_idx: int) -> nn.Module:
    """The block's MLP: dense, or (``mlp="moe"`` past ``first_k_dense``) Mixture-of-Experts."""
    if cfg.mlp != "moe":
        return MLP(cfg)
    if not cfg.is_moe_layer(layer_idx):
        return MLP(replace(cfg, mlp="swiglu"))
    shared = None
    if cfg.n_shared_experts:
        shared = MLP(replace(cfg, mlp="swiglu", ffn_hidden=cfg.n_shared_experts * cfg.moe_ffn_dim))
    return MoE(cfg, shared)


class Block(nn.Module):
    """Pre-norm residual block: x + attn(norm(x)), then x + mlp(norm(x)).

    ``forward`` also returns the attention's own values (``v_first``: the first layer's, for
    ``value_residual``).
    """

    def __init__(self, cfg: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.attn_norm = norm_layer(cfg, cfg.d_model)
        self.attn = Attention(cfg, layer_idx)
        self.mlp_norm = norm_layer(cfg, cfg.d_model)
        self.mlp = _mlp(cfg, layer_idx)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, rope, mask, kv_cache, v_first=None):
        y, v = self.attn(self.attn_norm(x), rope, mask, kv_cache, v_first)
        x = x + self.drop(y)
        return x + self.drop(self.mlp(self.mlp_norm(x))), v


class Transformer(nn.Module):
    """Decoder-only language model built from a :class:`ModelConfig`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = (
            nn.Embedding(config.block_size, config.d_model) if config.pos == "learned" else None
        )
        self.rope = (
            RotaryEmbedding(
                config.head_dim, config.block_size, config.rope_theta, config.rope_scaling
            )
            if config.pos == "rope"
            else None
        )
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.unet_skips = UNetSkips(config.n_layer // 2) if config.unet_skips else None
        self.norm = norm_layer(config, config.d_model)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        self.activation_checkpointing = False
        # How forward(idx, targets) computes the loss (nextok.model.loss): "auto" never holds the
        # whole batch's logits and returns logits=None; "plain" returns full logits too.
        self.loss_impl = "auto"
        self.loss_chunk_rows: int | None = None
        if not on_meta_device():
            self.init_weights()

    # ------------------------------------------------------------------ init and sizes
    def init_weights(self) -> None:
        """GPT-2 init: N(0, std) everywhere, residual output projections scaled by 1/sqrt(2L)
        (zero with ``zero_init_proj``: each block starts as the identity).

        Called by the constructor, and again after materialising a meta-device model (FSDP).
        """
        std = self.config.init_std
        proj_std = 0.0 if self.config.zero_init_proj else std / math.sqrt(2 * self.config.n_layer)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                s = proj_std if getattr(module, "is_residual_proj", False) else std
                nn.init.normal_(module.weight, mean=0.0, std=s)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(
                module, (nn.RMSNorm, nn.LayerNorm, RotaryEmbedding, ValueResidual, UNetSkips)
            ):
                module.reset_parameters()
            elif isinstance(module, MoE):  # expert banks and bias (the router is a Linear)
                module.reset_parameters(std, proj_std)

    def moe_layers(self) -> list[MoE]:
        return [b.mlp for b in self.blocks if isinstance(b.mlp, MoE)]

    def num_parameters(self, exclude_embeddings: bool = False, active: bool = False) -> int:
        """Unique parameters; ``exclude_embeddings`` drops the token/position tables.

        With tied embeddings the shared matrix counts as an embedding and is excluded with them.
        ``active``: only those one token uses (MoE: ``moe_top_k`` of the ``n_experts`` routed
        experts per layer), the count that sets the FLOPs per token.
        """
        n = sum(p.numel() for p in self.parameters())  # parameters() de-duplicates tied weights
        if active:
            n -= sum((m.n_experts - m.top_k) * m.expert_parameters() for m in self.moe_layers())
        if exclude_embeddings:
            n -= self.tok_emb.weight.numel()
            if self.pos_emb is not None:
                n -= self.pos_emb.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward): 6*N_matmul + 12*L*d*seq_len.

        N_matmul counts every weight a token's matmuls use (LM head included, embedding lookups
        not; MoE: the router and the token's top-k experts only, see ``num_parameters(active=)``);
        the attention term is PaLM's (Chowdhery et al. 2022, App. B), not halved for causality.
        Checked against ``torch.utils.flop_counter`` in tests/model/test_flops.py.
        """
        seq_len = self.config.block_size if seq_len is None else seq_len
        n_matmul = self.num_parameters(exclude_embeddings=True, active=True)
        if self.lm_head.weight is self.tok_emb.weight:  # tied: excluded above as an embedding
            n_matmul += self.lm_head.weight.numel()
        n_matmul -= sum(p.numel() for n, p in self.named_parameters() if p.ndim < 2)
        c = self.config
        return 6.0 * n_matmul + 12.0 * c.n_layer * c.n_head * c.head_dim * seq_len

    # ------------------------------------------------------------------ inference helpers
    def make_kv_cache(
        self,
        batch_size: int,
        max_seq_len: int | None = None,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> KVCache:
        """Preallocate a cache in the model's dtype/device (at most ``block_size`` positions)."""
        c = self.config
        max_seq_len = c.block_size if max_seq_len is None else max_seq_len
        if max_seq_len > c.block_size:
            raise ValueError(f"max_seq_len {max_seq_len} exceeds model.block_size {c.block_size}")
        w = self.lm_head.weight
        return KVCache(
            c.n_layer,
            batch_size,
            max_seq_len,
            c.n_kv_head,
            c.head_dim,
            dtype=dtype or w.dtype,
            device=device or w.device,
        )

    # ------------------------------------------------------------------ forward
    def _positions_and_mask(
        self,
        idx: torch.Tensor,
        kv_cache: KVCache | None,
        attention_mask: torch.Tensor | None,
        positions: torch.Tensor | None,
        doc_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Positions of the new tokens and the attention mask (None: SDPA needs none)."""
        T = idx.shape[1]
        if doc_ids is not None and (kv_cache is not None or doc_ids.shape != idx.shape):
            raise ValueError(
                "doc_ids (document masking) needs a full forward without a KV cache and the "
                f"shape of idx {tuple(idx.shape)}, got {tuple(doc_ids.shape)}"
            )
        start = kv_cache.seq_len if kv_cache is not None else 0
        end = start + T
        limit = kv_cache.max_seq_len if kv_cache is not None else self.config.block_size
        if end > limit:
            raise ValueError(
                f"sequence of {end} tokens exceeds the {'KV cache' if kv_cache else 'model block_size'}"
                f" limit of {limit}; shorten the input (model.block_size={self.config.block_size})"
            )

        valid = kv_cache.update_valid(attention_mask, T) if kv_cache is not None else attention_mask
        if valid is not None:
            valid = valid.bool()
        if positions is None:
            if valid is not None:
                positions = (valid.long().cumsum(-1) - 1).clamp(min=0)[:, start:end]
            else:
                positions = torch.arange(start, end, device=idx.device)

        cached = kv_cache is not None
        mask = causal_mask(start, end, valid, cached, idx.device)
        window = self.config.sliding_window
        window_mask = (
            causal_mask(start, end, valid, cached, idx.device, window)
            if window is not None
            else None
        )
        if doc_ids is not None:
            mask = within_documents(mask, doc_ids)
            window_mask = within_documents(window_mask, doc_ids) if window else None
        return positions, mask, window_mask

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        kv_cache: KVCache | AttentionCache | None = None,
        attention_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        last_only: bool = False,
        doc_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(logits, loss)``; ``loss`` is the mean cross-entropy when ``targets`` is given.

        With targets and ``loss_impl != "plain"`` logits are None: the loss never materialises
        the whole batch's logits (:mod:`nextok.model.loss`).

        idx: (B, T) token ids. targets: (B, T), -100 = ignored. kv_cache: continue from the
        cached positions and append these T. attention_mask: (B, T), 0 marks (left) padding;
        positions then count real tokens only, so a padded row matches its unpadded self.
        positions: explicit (T,) or (B, T) positions. last_only: LM head on the last position
        only (prefill/decode need nothing else). An :class:`AttentionCache` (B = 1: several
        sequences' new tokens end to end) supplies positions, masking and ``logit_index`` itself.
        doc_ids: (B, T) document of each position (:func:`~nextok.model.masks.document_ids`):
        attention stays inside a document (``model.doc_mask`` runs pass them for packed training
        blocks); None: the whole sequence is one document, as for generation.
        """
        B, T = idx.shape
        external = isinstance(kv_cache, AttentionCache)
        c = self.config
        if external:  # the cache lays out the sequences, their positions and masking
            if doc_ids is not None:
                raise ValueError("doc_ids (document masking) is for full forwards, not the cache")
            positions, mask, window_mask = kv_cache.positions, None, None
        else:
            positions, mask, window_mask = self._positions_and_mask(
                idx, kv_cache, attention_mask, positions, doc_ids
            )
        x = self.tok_emb(idx)
        if self.pos_emb is not None:
            x = x + self.pos_emb(positions)
        x = self.drop(x)
        rope = self.rope(positions) if self.rope is not None else None

        v_first = None
        skips = []  # U-net: the first half's block outputs, for their mirror blocks
        n_skip = len(self.unet_skips.weight) if self.unet_skips is not None else 0
        for i, block in enumerate(self.blocks):
            m = window_mask if c.slides(i) else mask
            mirror = c.n_layer - 1 - i
            if mirror < n_skip:
                x = x + self.unet_skips.weight[mirror].to(x.dtype) * skips[mirror]
            if self.activation_checkpointing and self.training:
                x, v = checkpoint(block, x, rope, m, kv_cache, v_first, use_reentrant=False)
            else:
                x, v = block(x, rope, m, kv_cache, v_first)
            if i == 0 and c.value_residual:
                v_first = v
            if i < n_skip:
                skips.append(x)
        if isinstance(kv_cache, KVCache):
            kv_cache.seq_len += T

        x = self.norm(x)
        if external and kv_cache.logit_index is not None:
            x = x[:, kv_cache.logit_index]
        if last_only:
            x = x[:, -1:, :]
        if targets is not None and self.loss_impl != "plain" and self.lm_head.bias is None:
            return None, lm_loss(
                x,
                self.lm_head.weight,
                targets,
                self.loss_impl,
                self.loss_chunk_rows,
                c.logit_softcap,
            )
        logits = softcap_logits(self.lm_head(x), c.logit_softcap)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100
            )
        return logits, loss
