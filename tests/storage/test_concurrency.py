"""8 threads at once: duplicate events are answered once and no correction is lost, on both databases."""

from __future__ import annotations

import threading
from collections import Counter

from sqlalchemy import func, select

from storage import corrections, events
from storage.db import session_scope
from storage.models import Correction, ProcessedEvent
from tests.storage.helpers import make_caption

THREADS = 8
EVENTS = 12


def test_threads_lose_nothing_and_answer_each_event_once(engine, blobs):
    with session_scope(engine) as session:
        caption_id = make_caption(session, blobs).id
    barrier = threading.Barrier(THREADS)
    claimed: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for i in range(EVENTS):
                # Half the threads read before they write (record_correction loads the caption first):
                # the pattern that makes SQLite answer "database is locked" without BEGIN IMMEDIATE.
                with session_scope(engine) as session:
                    if n % 2:
                        corrections.record_correction(session, caption_id=caption_id, user_id=f"U{n}-{i}",
                                                      text=f"a brown dog number {n} {i}")
                    if events.mark_event_processed(session, "slack", f"Ev{i}"):
                        with lock:
                            claimed.append(f"Ev{i}")
                    if not n % 2:
                        corrections.record_correction(session, caption_id=caption_id, user_id=f"U{n}-{i}",
                                                      text=f"a brown dog number {n} {i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert Counter(claimed) == {f"Ev{i}": 1 for i in range(EVENTS)}
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(ProcessedEvent)) == EVENTS
        texts = set(session.scalars(select(Correction.text).where(Correction.status == "accepted")))
    assert texts == {f"a brown dog number {n} {i}" for n in range(THREADS) for i in range(EVENTS)}
