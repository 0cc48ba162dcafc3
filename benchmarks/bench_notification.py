"""Notifications delivered per second by the NotificationCenter.

Peer, measured in the same run: a plain Python loop that builds the same
Notification and calls the same observers directly.  The ratio (direct / center)
is the price of the center: matching, the per-thread queue, exception isolation.
"""

import time

from sipsimple.notification import Any, Notification, NotificationCenter, NotificationData

NAME = "BenchNotification"
ROUNDS = 20_000
REPEATS = 5


class Counter:
    def __init__(self) -> None:
        self.count = 0

    def handle_notification(self, notification: Notification) -> None:
        self.count += 1


class Sender:
    pass


def best_rates(runs, rounds: int) -> list[float]:
    """Notifications per second of each run, best of REPEATS, the runs interleaved."""
    best = [float("inf")] * len(runs)
    for _ in range(REPEATS):
        for index, run in enumerate(runs):
            start = time.perf_counter()
            run(rounds)
            best[index] = min(best[index], time.perf_counter() - start)
    return [rounds / seconds for seconds in best]


def exact(index: int, sender: Sender) -> tuple[object, object]:
    return NAME, sender


def mixed(index: int, sender: Sender) -> tuple[object, object]:
    """(name, sender), (Any, sender), (name, Any), (Any, Any) in turn: the merging path."""
    return (NAME if index % 2 == 0 else Any), (sender if index % 4 < 2 else Any)


def measure(label: str, count: int, registration=exact, unrelated: int = 0):
    center = NotificationCenter()
    sender = Sender()
    noise = [(Counter(), Sender()) for _ in range(unrelated)]
    for index, (observer, other) in enumerate(noise):
        center.add_observer(observer, f"Unrelated{index % 50}", other)
    observers = [Counter() for _ in range(count)]
    for index, observer in enumerate(observers):
        center.add_observer(observer, *registration(index, sender))

    post = center.post_notification

    def via_center(rounds: int) -> None:
        for _ in range(rounds):
            post(NAME, sender)

    handlers = [observer.handle_notification for observer in observers]

    def direct(rounds: int) -> None:
        for _ in range(rounds):
            notification = Notification(NAME, sender, NotificationData())
            for handler in handlers:
                handler(notification)

    center_rate, direct_rate = best_rates([via_center, direct], ROUNDS)
    expected = 2 * REPEATS * ROUNDS
    assert all(observer.count == expected for observer in observers), "missed deliveries"
    for observer in observers:
        center.purge_observer(observer)
    for observer, _ in noise:
        center.purge_observer(observer)
    return label, center_rate, direct_rate


def main() -> None:
    rows = [
        measure("1 observer", 1),
        measure("10 observers", 10),
        measure("1 observer among 1000 unrelated", 1, unrelated=1000),
        measure("10 observers, name/sender/Any mixed", 10, mixed),
    ]
    print(f"notifications per second (best of {REPEATS} x {ROUNDS})")
    print(f"{'case':<38}{'center':>12}{'direct loop':>14}{'direct/center':>15}")
    for label, center_rate, direct_rate in rows:
        print(
            f"{label:<38}{center_rate:>12,.0f}{direct_rate:>14,.0f}"
            f"{direct_rate / center_rate:>14.2f}x"
        )


if __name__ == "__main__":
    main()
