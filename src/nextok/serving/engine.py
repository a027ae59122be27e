"""The continuous-batching engine: a scheduler over a :class:`PagedKVCache`.

Each :meth:`Engine.step` runs one forward holding the decode token of every running sequence
and chunks of prompts being prefilled (``max_tokens_per_step`` in all); a waiting request is
admitted as soon as the blocks for its prompt are free. When a decode finds no free block, the
newest running sequence is preempted: its blocks are freed and it is recomputed later from its
prompt + the tokens it already produced (its sampling generator is not rewound, so its output
is the one it would have produced uninterrupted). A request that could never fit the pool is
refused when it is added, so nothing is ever truncated.

All rows of a step are sampled in one call (:func:`nextok.serving.sampling.sample_rows`), each
with its request's own ``SamplingParams`` and seeded generator: a request's draws never depend
on its batch companions.

Speculative decoding (``proposer=PromptLookup(k, n)``): the step budget left after every decode
and prefill goes to guesses: a decoding sequence whose text so far repeats an n-gram feeds its
next token plus up to k looked-up tokens as one chunk, :func:`nextok.generation.verify` keeps a
prefix of them by the rejection rule (greedy: while they equal the argmax), and the cache is
truncated to the kept tokens. Such a step yields one :class:`Output` per new token.
With ``proposer=DraftModel(draft, k)`` the guesses come from the draft model instead: its own
paged KV cache holds every sequence, one draft forward per guess position serves all the
guessing sequences (:mod:`nextok.serving.drafts`), and each sequence's draft cache is rolled
back with the target's to the kept tokens.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from nextok.generation import (
    DraftModel,
    PromptLookup,
    Proposal,
    SamplingParams,
    TextStream,
    check_fits,
    make_generator,
    verify,
)
from nextok.generation.loop import ends_with
from nextok.generation.proposers import lookup
from nextok.serving.drafts import PagedDraft, Want, check_draft
from nextok.serving.paged_cache import PagedKVCache, blocks_for_mb
from nextok.serving.sampling import sample_rows

if TYPE_CHECKING:
    from tokenizers import Tokenizer

    from nextok.model import Transformer


@dataclass
class Request:
    """One generation request (token ids in; see :class:`Output` for what comes back).

    ``stop``: strings that end the text (cut before them; needs the engine's tokenizer);
    ``stop_ids``: id sequences that end it (kept). ``logprobs``: the log-probability of each
    new token plus the ``logprobs`` most likely alternatives (None: none); ``echo_logprobs``:
    the prompt tokens' log-probabilities too (scoring).
    """

    prompt: Sequence[int]
    max_new_tokens: int
    sampling: SamplingParams = field(default_factory=SamplingParams)
    seed: int | None = None
    stop: Sequence[str] = ()
    stop_ids: Sequence[Sequence[int]] = ()
    logprobs: int | None = None
    echo_logprobs: bool = False


@dataclass
class Output:
    """What one step produced for one sequence.

    ``token`` is None when the step added no token (EOS, cancellation, a prompt-only request);
    at EOS ``logprob`` (when asked) is the EOS token's.
    ``text`` is the new printable text (empty without a tokenizer). ``prompt_logprobs``: once,
    when ``echo_logprobs`` was asked, one ``(logprob, top)`` per prompt token (the first is
    ``(None, {})``). ``finish_reason``: ``"stop"`` (EOS or a stop), ``"length"`` or ``"cancelled"``.
    """

    seq_id: int
    token: int | None = None
    text: str = ""
    logprob: float | None = None
    top_logprobs: dict[int, float] | None = None
    prompt_logprobs: list[tuple[float | None, dict[int, float]]] | None = None
    finish_reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


class _Seq:
    def __init__(self, seq_id: int, req: Request, engine: Engine) -> None:
        self.id, self.req = seq_id, req
        self.tokens = list(req.prompt)
        self.n_prompt = len(self.tokens)
        self.generated: list[int] = []
        self.computed = 0  # tokens whose keys/values are in the cache
        self.draft: list[int] = []  # tokens guessed for this step (speculative decoding)
        self.draft_q: torch.Tensor | None = None  # the draft's distributions of its guesses
        self.generator = make_generator(req.seed, engine.device)
        self.seen = None
        if req.sampling.repetition_penalty != 1.0:
            self.seen = torch.zeros((1, engine.vocab), dtype=torch.bool, device=engine.device)
            self.seen[0, torch.as_tensor(self.tokens, device=engine.device)] = True
        self.stream = TextStream(engine.tokenizer, req.stop) if engine.tokenizer else None
        self.prompt_logprobs: list[tuple[float | None, dict[int, float]]] | None = None
        if req.echo_logprobs:
            self.prompt_logprobs = [(None, {})]

    @property
    def pending(self) -> int:
        return len(self.tokens) - self.computed


class Engine:
    """Continuous batching over a paged KV cache for one :class:`Transformer`.

    Pool size: ``kv_blocks`` blocks of ``block_size_tokens`` tokens, or as many as fit in
    ``kv_cache_mb`` MiB (default: room for ``max_running`` full-length sequences).
    ``prefix_sharing``: a prompt starting with full blocks another sequence has computed
    holds those blocks instead of computing them again.
    ``proposer``: a :class:`~nextok.generation.PromptLookup` or
    :class:`~nextok.generation.DraftModel` spends the step budget left after decodes and
    prefills on guessed tokens (speculative decoding; its ``stats`` count them).
    ``add``/``cancel`` may be called from any thread; ``step`` from one thread at a time.
    """

    def __init__(
        self,
        model: Transformer,
        *,
        kv_blocks: int | None = None,
        kv_cache_mb: float | None = None,
        block_size_tokens: int = 16,
        max_tokens_per_step: int = 256,
        max_running: int = 64,
        tokenizer: Tokenizer | None = None,
        eos_id: int | None = None,
        vocab_limit: int | None = None,
        prefix_sharing: bool = True,
        proposer: PromptLookup | DraftModel | None = None,
    ) -> None:
        if kv_blocks is not None and kv_cache_mb is not None:
            raise ValueError("give kv_blocks or kv_cache_mb, not both")
        if not isinstance(prefix_sharing, bool):
            raise ValueError(f"prefix_sharing must be true or false, got {prefix_sharing!r}")
        for name, value in (
            ("max_tokens_per_step", max_tokens_per_step),
            ("max_running", max_running),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if proposer is not None and not isinstance(proposer, (PromptLookup, DraftModel)):
            raise ValueError(
                "the serving engine speculates with PromptLookup or DraftModel, "
                f"got {type(proposer).__name__}"
            )
        if isinstance(proposer, DraftModel):
            check_draft(proposer.model, model, vocab_limit)
        self.proposer = proposer
        self.model = model.eval()
        c = model.config
        w = model.lm_head.weight
        self.device, self.vocab = w.device, c.vocab_size
        if kv_cache_mb is not None:
            if not isinstance(kv_cache_mb, (int, float)) or kv_cache_mb <= 0:
                raise ValueError(f"kv_cache_mb must be > 0, got {kv_cache_mb!r}")
            kv_blocks = blocks_for_mb(c, kv_cache_mb, block_size_tokens, w.dtype)
            if kv_blocks < 1:
                raise ValueError(f"kv_cache_mb={kv_cache_mb} holds no block of KV cache")
        if kv_blocks is None:
            kv_blocks = max_running * -(-c.block_size // block_size_tokens)
        self.cache = PagedKVCache(c, kv_blocks, block_size_tokens, w.dtype, w.device)
        self.drafts = None
        if isinstance(proposer, DraftModel):
            # twice the blocks: it shares prompt blocks less often than the target (sequences
            # in one draft forward each compute theirs) and holds its guesses until verified
            self.drafts = PagedDraft(proposer, 2 * kv_blocks, block_size_tokens, prefix_sharing)
        self.max_tokens_per_step, self.max_running = max_tokens_per_step, max_running
        self.prefix_sharing = prefix_sharing
        self.tokenizer, self.eos_id = tokenizer, eos_id
        self.pad_ids = torch.arange(vocab_limit or self.vocab, self.vocab, device=self.device)
        self.waiting: deque[_Seq] = deque()
        self.running: list[_Seq] = []
        self.preemptions = 0
        self.cancellations = 0
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._inbox: list[_Seq] = []
        self._cancelled: set[int] = set()

    # ------------------------------------------------------------------ requests
    def add(self, request: Request) -> int:
        """Queue ``request``; returns its sequence id. Raises ``ValueError`` for a request that
        is malformed or could never fit (the model's ``block_size`` or the KV pool)."""
        prompt = list(request.prompt)
        if not prompt:
            raise ValueError("prompt is empty; generation needs at least one token")
        bad = [t for t in prompt if not isinstance(t, int) or not 0 <= t < self.vocab]
        if bad:
            raise ValueError(
                f"prompt token id {bad[0]!r} is outside the vocabulary [0, {self.vocab})"
            )
        n = request.max_new_tokens
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"max_new_tokens must be a non-negative integer, got {n!r}")
        check_fits(self.model, len(prompt), n)
        need = -(-(len(prompt) + n) // self.cache.block_size)
        if need > self.cache.num_blocks:
            raise ValueError(
                f"prompt + max_new_tokens = {len(prompt) + n} tokens need {need} KV blocks; the "
                f"pool has {self.cache.num_blocks} (raise kv_blocks or kv_cache_mb)"
            )
        if request.stop and self.tokenizer is None:
            raise ValueError("stop strings need the engine's tokenizer")
        with self._lock:
            seq = _Seq(next(self._ids), request, self)
            self._inbox.append(seq)
        return seq.id

    def cancel(self, seq_id: int) -> None:
        """Stop ``seq_id`` at the next step and free its blocks (unknown ids are ignored)."""
        with self._lock:
            self._cancelled.add(seq_id)

    def reset(self) -> None:
        """Drop every sequence and free every block (after a failed step)."""
        with self._lock:
            self._inbox.clear()
            self._cancelled.clear()
        for seq in (*self.running, *self.waiting):
            self._free(seq)
        self.running.clear()
        self.waiting.clear()

    @property
    def has_work(self) -> bool:
        with self._lock:
            return bool(self.waiting or self.running or self._inbox)

    # ------------------------------------------------------------------ scheduling
    def _free(self, seq: _Seq) -> None:
        """Return the blocks of ``seq`` (and of its draft cache)."""
        self.cache.free(seq.id)
        if self.drafts is not None:
            self.drafts.free(seq.id)

    def _finish(self, seq: _Seq) -> None:
        self._free(seq)
        if seq in self.running:
            self.running.remove(seq)

    def _preempt(self, victim: _Seq, plan: dict[int, int]) -> None:
        self._free(victim)  # its draft cache is rebuilt when it decodes again
        victim.computed = 0
        victim.draft = []
        if victim.prompt_logprobs is not None:  # recomputed from the start
            victim.prompt_logprobs = [(None, {})]
        self.running.remove(victim)
        self.waiting.appendleft(victim)
        plan.pop(victim.id, None)
        self.preemptions += 1

    def _schedule(self) -> dict[int, int]:
        """sequence id -> tokens to feed this step; blocks are reserved for them."""
        plan: dict[int, int] = {}
        budget = self.max_tokens_per_step
        cache = self.cache
        for seq in [s for s in self.running if s.pending == 1]:  # decodes first, oldest first
            if seq not in self.running or budget == 0:
                continue
            while not cache.can_grow(seq.id, seq.computed + 1):
                self._preempt(self.running[-1], plan)
                if seq not in self.running:
                    break
            if seq in self.running:
                cache.grow(seq.id, seq.computed + 1)
                plan[seq.id] = 1
                budget -= 1
        for seq in self.running:  # prefills in progress: what fits in the free blocks
            if seq.id in plan or budget == 0:
                continue
            n = self._fit(seq, min(seq.pending, budget))
            if n:
                cache.grow(seq.id, seq.computed + n)
                plan[seq.id] = n
                budget -= n
        while self.waiting and budget and len(self.running) < self.max_running:
            seq = self.waiting[0]
            shared = self._shared_prefix(seq)
            need = -(-len(seq.tokens) // cache.block_size) - len(shared)
            if need > cache.allocator.num_free:  # admit only when the prompt fits
                break
            self.waiting.popleft()
            self.running.append(seq)
            if shared:
                cache.adopt(seq.id, shared)
                seq.computed = cache.lengths[seq.id]
            n = min(seq.pending, budget)
            cache.grow(seq.id, seq.computed + n)
            plan[seq.id] = n
            budget -= n
        if self.proposer is not None:  # what is left of the budget: guesses for the decodes
            wants: list[Want] = []
            for seq in self.running:
                if budget == 0:
                    break
                if plan.get(seq.id) != 1 or seq.pending != 1:
                    continue
                k = self._guess_room(seq, budget)
                if not k:
                    continue
                if self.drafts is not None:  # reserve k; the draft runs for all of them at once
                    want = Want(
                        seq.id, seq.tokens, seq.n_prompt, k, seq.req.sampling, seq.generator
                    )
                    if self.drafts.reserve(want):
                        cache.grow(seq.id, seq.computed + 1 + k)
                        wants.append(want)
                        budget -= k
                    continue
                seq.draft = lookup(torch.tensor(seq.tokens), k, self.proposer.max_ngram).tolist()
                cache.grow(seq.id, seq.computed + 1 + len(seq.draft))
                plan[seq.id] += len(seq.draft)
                budget -= len(seq.draft)
            if wants:
                guessed = self.drafts.propose(wants, self.vocab, self.pad_ids)
                for seq in self.running:
                    if seq.id in guessed:
                        seq.draft, seq.draft_q = guessed[seq.id]
                        plan[seq.id] += len(seq.draft)
        return plan

    def _guess_room(self, seq: _Seq, budget: int) -> int:
        """How many tokens ``seq`` may guess this step: k within ``budget``, its
        ``max_new_tokens`` (the verified step adds one more) and the free blocks. Requests
        with a repetition penalty or scoring their prompt are not guessed for."""
        req = seq.req
        if req.sampling.repetition_penalty != 1.0 or seq.prompt_logprobs is not None:
            return 0
        k = self.proposer.num_speculative_tokens
        k = min(k, req.max_new_tokens - len(seq.generated) - 1, budget)
        return max(0, min(k, self._fit(seq, 1 + k) - 1))

    def _shared_prefix(self, seq: _Seq) -> list[int]:
        """Registered blocks holding ``seq``'s leading full blocks; its last token is always
        computed (its logits pick the first new token), and a request scoring its prompt
        computes every position."""
        if not self.prefix_sharing or seq.prompt_logprobs is not None:
            return []
        return self.cache.match_prefix(seq.tokens, (len(seq.tokens) - 1) // self.cache.block_size)

    def _fit(self, seq: _Seq, n: int) -> int:
        """The most of ``n`` tokens the free blocks give ``seq`` room for."""
        cache = self.cache
        room = len(cache.tables.get(seq.id, ())) * cache.block_size - seq.computed
        room += cache.allocator.num_free * cache.block_size
        return max(0, min(n, room))

    # ------------------------------------------------------------------ one step
    @torch.inference_mode()
    def step(self) -> list[Output]:
        """Schedule, run one forward, sample; the outputs of every sequence that advanced or ended."""
        outputs: list[Output] = []
        with self._lock:
            self.waiting.extend(self._inbox)
            self._inbox.clear()
            cancelled, self._cancelled = self._cancelled, set()
        for seq in [s for s in (*self.running, *self.waiting) if s.id in cancelled]:
            if seq in self.waiting:
                self.waiting.remove(seq)
            self._finish(seq)
            self.cancellations += 1
            outputs.append(Output(seq.id, finish_reason="cancelled"))
        plan = self._schedule()
        if not plan:
            return outputs
        seqs = [s for s in self.running if s.id in plan]
        ids: list[int] = []
        rows: dict[int, list[int]] = {}
        logit_index: list[int] = []
        for seq in seqs:
            n = plan[seq.id]
            start = len(ids)
            ids += seq.tokens[seq.computed : seq.computed + n - len(seq.draft)] + seq.draft
            want = range(start, start + n)
            if seq.prompt_logprobs is None and not seq.draft:  # logits for the next token only
                want = want[-1:] if seq.computed + n == len(seq.tokens) else range(0)
            rows[seq.id] = list(range(len(logit_index), len(logit_index) + len(want)))
            logit_index += want
        step = self.cache.step(
            [(s.id, plan[s.id]) for s in seqs],
            torch.tensor(logit_index, dtype=torch.long, device=self.device),
        )
        idx = torch.tensor(ids, dtype=torch.long, device=self.device)[None]
        logits = self.model(idx, kv_cache=step)[0][0].float()
        if len(self.pad_ids):
            logits = logits.index_fill(-1, self.pad_ids, float("-inf"))
        stepped: list[tuple[_Seq, Output]] = []
        to_sample: list[tuple[_Seq, int, Output]] = []
        for seq in seqs:
            n = plan[seq.id]
            seq_rows = rows[seq.id]
            if seq.draft:
                stepped += [(seq, out) for out in self._verify(seq, logits[seq_rows])]
                continue
            first = seq.computed
            seq.computed += n
            if self.prefix_sharing:
                self.cache.register(seq.id, seq.tokens, seq.n_prompt)
            out = Output(seq.id)
            if seq.prompt_logprobs is not None and seq_rows:
                self._prompt_logprobs(seq, logits[seq_rows], first, out)
            if seq.pending == 0:
                if len(seq.generated) >= seq.req.max_new_tokens:  # prompt-only (scoring)
                    out.finish_reason = "length"
                else:
                    to_sample.append((seq, seq_rows[-1], out))
            stepped.append((seq, out))
        if to_sample:  # every row in one call; the one host sync of the step reads the ids
            at = torch.tensor([r for _, r, _ in to_sample], device=self.device)
            picked = sample_rows(
                logits.index_select(0, at),
                [s.req.sampling for s, _, _ in to_sample],
                [s.generator for s, _, _ in to_sample],
                [s.seen for s, _, _ in to_sample],
            ).tolist()
            for (seq, r, out), tok in zip(to_sample, picked):
                self._accept(seq, logits[r], out, tok)
        for seq, out in stepped:  # a sequence that speculated has an output per new token
            if out.finished:
                self._finish(seq)
            if out.finished or out.token is not None or out.prompt_logprobs is not None:
                outputs.append(out)
        return outputs

    def _verify(self, seq: _Seq, logits: torch.Tensor) -> list[Output]:
        """Keep the prefix of ``seq.draft`` the rejection rule accepts (``logits``: the target's
        rows after the fed token and each guess) plus the next token; truncate the cache to the
        kept tokens. One :class:`Output` per new token, up to the first that ends ``seq``."""
        draft, seq.draft = seq.draft, []
        d = torch.tensor([draft], device=self.device)
        lengths = torch.tensor([len(draft)], device=self.device)
        q, seq.draft_q = seq.draft_q, None
        proposal = Proposal(d, lengths, q)
        accepted, nxt = verify(logits[None], proposal, seq.req.sampling, seq.generator)
        kept = int(accepted[0])
        self.proposer.stats["proposed"] += len(draft)
        self.proposer.stats["accepted"] += kept
        if self.drafts is not None:
            self.drafts.truncate(seq.id, len(seq.tokens) + kept)
        seq.computed += 1 + kept
        self.cache.truncate(seq.id, seq.computed)
        outs = []
        for j, tok in enumerate([*draft[:kept], int(nxt[0])]):
            outs.append(Output(seq.id))
            self._accept(seq, logits[j], outs[-1], tok)
            if outs[-1].finished:
                break
        return outs

    def _prompt_logprobs(self, seq: _Seq, logits: torch.Tensor, first: int, out: Output) -> None:
        """Log-probabilities of the prompt tokens after positions first.. (rows of ``logits``)."""
        logp = logits.log_softmax(-1)
        k = seq.req.logprobs or 0
        for r in range(logp.shape[0]):
            target = first + r + 1
            if target >= seq.n_prompt:
                break
            seq.prompt_logprobs.append(_logprob(logp[r], seq.tokens[target], k))
        if len(seq.prompt_logprobs) == seq.n_prompt:
            out.prompt_logprobs, seq.prompt_logprobs = seq.prompt_logprobs, None

    def _accept(self, seq: _Seq, row: torch.Tensor, out: Output, tok: int) -> None:
        """Record the sampled ``tok`` (logits ``row``) and decide whether ``seq`` ends."""
        req = seq.req
        if req.logprobs is not None:  # EOS too: a scorer sees the probability it ended with
            out.logprob, out.top_logprobs = _logprob(row.log_softmax(-1), tok, req.logprobs)
        if self.eos_id is not None and tok == self.eos_id:
            out.finish_reason = "stop"
            out.text = seq.stream.flush() if seq.stream else ""
            return
        seq.tokens.append(tok)
        seq.generated.append(tok)
        if seq.seen is not None:
            seq.seen[0, tok] = True
        out.token = tok
        if seq.stream is not None:
            out.text = seq.stream.push(seq.generated)
        if ends_with(seq.generated, req.stop_ids) or (seq.stream and seq.stream.stopped):
            out.finish_reason = "stop"
        elif len(seq.generated) == req.max_new_tokens:
            out.finish_reason = "length"
        if out.finished and seq.stream is not None:
            out.text += seq.stream.flush()

    # ------------------------------------------------------------------ convenience
    def generate(self, requests: Sequence[Request]) -> list[list[int]]:
        """Run ``requests`` to the end; the new token ids of each (EOS excluded)."""
        ids = [self.add(r) for r in requests]
        out: dict[int, list[int]] = {i: [] for i in ids}
        while self.has_work:
            for o in self.step():
                if o.token is not None and o.seq_id in out:
                    out[o.seq_id].append(o.token)
        return [out[i] for i in ids]


def _logprob(logp: torch.Tensor, token: int, k: int) -> tuple[float, dict[int, float]]:
    top: dict[int, float] = {}
    if k:
        values, indices = logp.topk(k)
        top = dict(zip(indices.tolist(), values.tolist()))
    return float(logp[token]), top
