"""When the decoders learn a body's layout for the repeated-body paths, and how much they keep.

Learning a layout costs about as much as decoding the body once more (a wire-format walk, a rebuild
check), and pays only for a sender that repeats its bodies. A sender that orders its series
differently each time would pay it on every request, so after a few layouts that were never used
again only one body in 16 is learned (enough to notice when the sender settles).
"""

from __future__ import annotations

MAX_TEMPLATE_BYTES = 64 * 2**20
"""What one decoder keeps in learned layouts at most; all are dropped when a new one would pass it."""


class LearnGate:
    """Counts attempts to learn a layout and hits of learned ones; :meth:`should` says whether to try."""

    __slots__ = ("hits", "learned", "tries")

    def __init__(self) -> None:
        self.learned = self.hits = self.tries = 0

    def should(self) -> bool:
        self.tries += 1
        if self.tries >= 4096:  # forget old history slowly, so a change of sender behaviour shows
            self.tries, self.learned, self.hits = self.tries // 2, self.learned // 2, self.hits // 2
        return self.learned < 4 or self.hits * 4 >= self.learned or self.tries % 16 == 0

    def learned_one(self) -> None:
        self.learned += 1

    def hit(self) -> None:
        self.hits += 1
