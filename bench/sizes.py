"""How big each scenario is: the full run's sizes and the smoke run's."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    s1_streams: int = 50
    s1_chunks: int = 200
    s1_gap_ms: float = 5
    s1_first_token_ms: float = 200
    s1_control: int = 10
    """Direct streams run alongside the target's, interleaved with them: the baseline that
    "added" latency is measured against (same simulator, same moment, same load)."""
    s1_rounds: int = 3
    """S1 is repeated on the same target and the events of all rounds are pooled."""
    s2_streams: int = 200
    s2_chunks: int = 500
    s2_rounds: int = 3
    """S2 is repeated on the same target: totals are pooled, the per-round spread reported."""
    s3_streams: int = 2000
    s3_chunks: int = 10
    s3_gap_ms: float = 1000
    """S3 streams send their first content chunk after one gap too: open ~s3_chunks gaps."""
    s3_batch: int = 200
    """S3 opens streams this many at a time, every 0.1 s (aiohttp's listen backlog is 128)."""
    s4_concurrency: int = 100
    s4_seconds: float = 10


FULL = Sizes()
QUICK = Sizes(s1_rounds=1, s2_rounds=1, s4_seconds=5)
SMOKE = Sizes(s1_streams=6, s1_chunks=20, s1_first_token_ms=20, s1_control=2, s1_rounds=1,
              s2_streams=10, s2_chunks=50, s2_rounds=1, s3_streams=40, s3_chunks=2, s3_gap_ms=300,
              s3_batch=20, s4_concurrency=5, s4_seconds=1)


def describe(sizes: Sizes) -> dict[str, str]:
    return {
        "S1": f"{sizes.s1_streams} concurrent streams × {sizes.s1_chunks} chunks, "
              f"{sizes.s1_gap_ms:g} ms gaps, {sizes.s1_first_token_ms:g} ms first-token delay "
              f"(+ {sizes.s1_control} direct control streams; {sizes.s1_rounds} rounds pooled)",
        "S2": f"{sizes.s2_streams} concurrent streams × {sizes.s2_chunks} chunks, no gaps "
              f"({sizes.s2_rounds} rounds pooled)",
        "S3": f"{sizes.s3_streams} concurrent slow streams, {sizes.s3_chunks} chunks "
              f"{sizes.s3_gap_ms:g} ms apart",
        "S4": f"non-stream chat completions at {sizes.s4_concurrency} concurrency for "
              f"{sizes.s4_seconds:g} s",
    }
