"""Host-side state of one sequence being generated, and when it stops.

The KV lag rule: every model's KV for a row covers a prefix of ``row.tokens`` (prompt + emitted
tokens) of length ``kv_len <= len(tokens) - 1``; what a model has not seen yet
(``Row.unseen(kv_len)`` = ``tokens[kv_len:]``) is fed on its next forward, so a model that skipped
steps catches up in one forward. Rolling back (speculative rejection, BiLD) only truncates ``tokens``
and each model's KV. A row holds no method state: methods keep theirs, keyed by ``seq_id``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fsgen_engine.outputs import GenerationStats, Trace, TraceStep


class StopRules:
    """Stop conditions shared by all rows of a generate call.

    ``eos_ids``: finish reason "eos" (ignored when ``ignore_eos``); ``stop``: a string, a token id, or
    a list of strings / token ids / token-id sequences (finish reason "stop"). A stop string is removed
    from the text (the token ids keep the tokens that produced it)."""

    def __init__(self, tokenizer, eos_ids, stop, ignore_eos: bool):
        self.tokenizer = tokenizer
        self.eos = frozenset() if ignore_eos else frozenset(int(e) for e in eos_ids)
        self.strings: list[str] = []
        self.ids: set[int] = set()
        self.seqs: list[tuple[int, ...]] = []
        items = [] if stop is None else ([stop] if isinstance(stop, (str, int)) else list(stop))
        for s in items:
            if isinstance(s, bool):
                raise ValueError(f"stop={stop!r}: {s!r} is not a stop string or token id")
            if isinstance(s, str):
                if not s:
                    raise ValueError("stop contains an empty string; remove it")
                self.strings.append(s)
            elif isinstance(s, int):
                if s < 0:
                    raise ValueError(f"stop token id {s} must be >= 0")
                self.ids.add(s)
            elif isinstance(s, (list, tuple)) and s and all(isinstance(t, int) and not isinstance(t, bool)
                                                             for t in s):
                if len(s) == 1:
                    self.ids.add(int(s[0]))
                else:
                    self.seqs.append(tuple(int(t) for t in s))
            else:
                raise ValueError(f"stop item {s!r} must be a string, a token id or a list of token ids")
        if self.strings and tokenizer is None:
            raise ValueError("stop strings need a tokenizer to decode the text; the models were given without "
                             "one: pass stop token ids instead")
        self.window = max((len(s) for s in self.strings), default=0) + 8

    def decode(self, ids) -> str:
        if self.tokenizer is None:
            return ""
        return self.tokenizer.decode(ids, skip_special_tokens=True)


@dataclass
class Row:
    """One prompt in flight. ``generated`` = ``tokens[prompt_len:]``."""

    index: int
    seq_id: int
    prompt: list[int]
    max_new: int
    tokens: list[int] = field(default_factory=list)
    stats: GenerationStats = field(default_factory=GenerationStats)
    trace: Trace = field(default_factory=Trace)
    finish_reason: str | None = None
    text: str | None = None
    reserved_pages: int = 0

    def __post_init__(self):
        if not self.tokens:
            self.tokens = list(self.prompt)

    @property
    def prompt_len(self) -> int:
        return len(self.prompt)

    @property
    def num_generated(self) -> int:
        return len(self.tokens) - len(self.prompt)

    @property
    def generated(self) -> list[int]:
        return self.tokens[len(self.prompt):]

    def unseen(self, kv_len: int) -> list[int]:
        """The tokens a model whose KV holds ``kv_len`` of this row's tokens is fed next (KV lag rule)."""
        return self.tokens[kv_len:]

    def cut(self, n_generated: int) -> None:
        """Drop generated tokens from index ``n_generated`` on (rollback); the caller truncates KV."""
        del self.tokens[len(self.prompt) + n_generated:]
        self.trace.truncate(n_generated)

    def emit(self, tokens: list[int], steps: list[TraceStep], rules: StopRules) -> None:
        """Append tokens in order, stopping at the first stop condition (later tokens are dropped)."""
        for tok, step in zip(tokens, steps):
            tok = int(tok)
            step.position = self.num_generated
            self.tokens.append(tok)
            self.trace.append(step)
            reason = None
            if tok in rules.eos:
                reason = "eos"
            elif tok in rules.ids:
                reason = "stop"
            elif rules.seqs and any(self.tokens[-len(s):] == list(s) and self.num_generated >= len(s)
                                    for s in rules.seqs):
                reason = "stop"
            elif rules.strings and self._stop_string(rules):
                reason = "stop"
            if reason is None and self.num_generated >= self.max_new:
                reason = "length"
            if reason is not None:
                self.finish_reason = reason
                return

    def _stop_string(self, rules: StopRules) -> bool:
        gen = self.generated
        tail = rules.decode(gen[-rules.window:])
        if not any(s in tail for s in rules.strings):
            return False
        full = rules.decode(gen)
        hits = [full.find(s) for s in rules.strings if s in full]
        if not hits:  # the tail decoded differently from the whole (merged bytes): keep going
            return False
        self.text = full[:min(hits)]
        return True

    def final_text(self, rules: StopRules) -> str:
        if self.text is None:
            self.text = rules.decode(self.generated)
        return self.text
