"""A rebuild never makes a reader fail: many swaps of the board under readers that keep
reading the board, the list and one card, each through prepared statements (a reader's
cached plan locks the tables it names by their old identity, in its own order)."""

from __future__ import annotations

import threading

from eventsourcing.postgres import PostgresDatastore

from infra.bootstrap import Container
from projections.engine.rebuild import rebuild
from projections.engine.supervisor import ProjectionSupervisor
from tests.integration.test_projection_support import (
    create,
    datastore_fixture,  # noqa: F401 (provides the datastore fixture)
    read_side_fixture,  # noqa: F401 (provides the read_side fixture)
    run_to_completion,
)

SWAPS = 60
READERS = 4


def test_many_swaps_under_concurrent_reads_fail_no_reader(
    container: Container, read_side: ProjectionSupervisor, datastore: PostgresDatastore
) -> None:
    service = container.service
    ids = [create(service) for _ in range(20)]
    for execution_id in ids[:10]:
        run_to_completion(service, execution_id)
    read_side.start()
    read_side.catch_up()
    board = read_side.read_models.board
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0] * READERS

    def read(number: int) -> None:
        while not stop.is_set():
            try:
                board.board("default")
                board.list("default", limit=5)
                board.get("default", ids[number])
            except BaseException as error:  # the test reports it below
                errors.append(error)
            reads[number] += 1

    readers = [threading.Thread(target=read, args=(n,)) for n in range(READERS)]
    for reader in readers:
        reader.start()
    try:
        for _ in range(SWAPS):
            rebuild(service, datastore, "board", page_size=10)
    finally:
        stop.set()
        for reader in readers:
            reader.join()

    assert errors == []
    assert min(reads) > SWAPS  # they read all along
