"""The Pareto frontier of accuracy against latency: nothing faster is at least as accurate."""

from __future__ import annotations

from typing import Sequence


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of (latency, accuracy) points no other point dominates, fastest first.

    A point is dominated when another is no slower and no less accurate, and
    strictly better in one of the two. Exact duplicates both stay.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best_accuracy = float("-inf")
    best_latency_at_best = None
    for i in order:
        latency, accuracy = points[i]
        if accuracy > best_accuracy:
            front.append(i)
            best_accuracy, best_latency_at_best = accuracy, latency
        elif accuracy == best_accuracy and latency == best_latency_at_best:
            front.append(i)
    return front
