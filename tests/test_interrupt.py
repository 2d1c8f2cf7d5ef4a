"""The one SIGINT/SIGTERM mechanism of every long command (real signals to this process)."""

from __future__ import annotations

import os
import signal

import pytest

from etl.errors import Aborted
from etl.interrupt import stop_on_signals


@pytest.mark.parametrize(("first", "second", "abort_on_second", "aborts"), [
    (signal.SIGINT, signal.SIGINT, True, True),
    (signal.SIGTERM, signal.SIGINT, True, True),
    (signal.SIGTERM, signal.SIGTERM, False, False),  # the daemon: the chunk always finishes
    (signal.SIGINT, signal.SIGINT, False, False),
])
def test_first_signal_asks_to_stop_second_aborts_or_not(first: signal.Signals,
                                                         second: signal.Signals,
                                                         abort_on_second: bool,
                                                         aborts: bool) -> None:
    said: list[str] = []
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with stop_on_signals(said.append, abort_on_second=abort_on_second) as stop:
        assert not stop()
        os.kill(os.getpid(), first)
        assert stop() and stop.signal_name == first.name
        assert said == [f"{first.name} received: stopping after the current chunk and the "
                        "writes already sent (whole chunks are kept, the watermark does not "
                        "move); " + (
                            "press Ctrl-C again to abort now" if abort_on_second
                            else "the run in progress finishes its chunk first")]
        if aborts:
            with pytest.raises(Aborted, match=f"aborted by a second {second.name}"):
                os.kill(os.getpid(), second)
            os.kill(os.getpid(), second)  # while aborting: ignored, clean-up goes on
            assert said[-1].startswith(f"{second.name} received again: aborting now")
        else:
            os.kill(os.getpid(), second)
            assert said[-1] == (f"{second.name} received again: already stopping after the "
                                "current chunk")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
