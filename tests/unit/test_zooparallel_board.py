"""The pool's shared board: claims, cut claims handed back, and the lock a dead worker drops."""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Iterator

import pytest

from zoopipe_hpc.engines._pool import Board


@pytest.fixture
def board() -> Iterator[Board]:
    board = Board.create(2)
    yield board
    board.close()
    board.unlink()
    assert not os.path.exists(board.path)


def test_a_new_board_is_idle(board: Board) -> None:
    with board.locked():
        assert board.counter == 0
        assert [board.held(s) for s in range(2)] == [-1, -1]
        assert [board.started_pid(s) for s in range(2)] == [0, 0]


def test_claims_take_each_index_once_then_none(board: Board) -> None:
    assert board.claim(0, 3) == 0
    assert board.claim(1, 3) == 1
    with board.locked():
        assert (board.held(0), board.held(1), board.counter) == (0, 1, 2)
    assert board.claim(0, 3) == 2
    assert board.claim(1, 3) is None
    assert board.claim(0, 3) is None
    with board.locked():
        assert (board.held(0), board.held(1), board.counter) == (-1, -1, 3)


def test_a_claim_cut_between_publish_and_commit_is_handed_back(board: Board) -> None:
    assert board.claim(0, 5) == 0
    with board.locked():
        board.set_held(1, board.counter)  # published, the worker died before committing
        assert board.hand_back_cut_claims() == 1
        assert (board.held(0), board.held(1)) == (0, -1)
    assert board.claim(1, 5) == 1


def _claim_then_die(path: str) -> None:
    other = Board(path, 2)
    with other.locked():
        other.set_held(1, other.counter)
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_holding_the_lock_does_not_block_the_pool(board: Board) -> None:
    context = multiprocessing.get_context("fork")
    process = context.Process(target=_claim_then_die, args=(board.path,))
    process.start()
    process.join(30)
    assert process.exitcode == -signal.SIGKILL
    with board.locked():  # would hang if the dead worker's lock survived it
        assert board.hand_back_cut_claims() == 0
        assert board.held(1) == -1
    assert board.claim(0, 1) == 0
