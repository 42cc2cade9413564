"""The repeated-body layouts are learned while they pay, rarely when they do not, and bounded."""

from __future__ import annotations

from sightglass.ingest.learning import LearnGate
from sightglass.ingest.prometheus_text import TextParser


def test_a_sender_that_never_repeats_is_learned_one_body_in_16() -> None:
    g = LearnGate()
    decisions = []
    for _ in range(200):
        learn = g.should()
        decisions.append(learn)
        if learn:
            g.learned_one()
    assert all(decisions[:4])
    assert 10 <= sum(decisions[4:]) <= 16  # about 1 in 16 of the other 196


def test_a_sender_that_repeats_is_learned_every_time_it_changes() -> None:
    g = LearnGate()
    for _ in range(100):
        assert g.should()
        g.learned_one()
        for _ in range(3):
            g.hit()


def test_shuffled_text_bodies_parse_right_and_keep_few_layouts() -> None:
    import random

    lines = [f'm{{gpu="{i}"}} {i} 1790000000000' for i in range(200)]
    p = TextParser()
    rng = random.Random(1)
    for k in range(60):
        rng.shuffle(lines)
        body = "\n".join(x.replace(" 1790000000000", f" {1790000000000 + k}") for x in lines) + "\n"
        got = p.parse(body)
        want = TextParser().parse(body).batch.rows()
        assert sorted((k.text(), t, v) for k, t, v in got.batch.rows()) == sorted(
            (k.text(), t, v) for k, t, v in want
        )
    assert len(p._templates) <= 4 + 60 // 16 + 1
