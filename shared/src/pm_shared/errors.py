"""The errors a stream handler raises to steer what happens to its message.

Exception                 -- anything else: transient; the entry stays pending and is retried
                             (up to the delivery limit, then dead-lettered)
PermanentError            -- retrying cannot help: dead-letter at once (reason `unrecoverable`)
  NotImplementedYet       -- this service cannot handle the message yet: dead-letter at once
                             (reason `unhandled`) so it waits, intact, for a replay
"""

from __future__ import annotations


class PermanentError(Exception):
    """The message can never be handled as it is."""

    reason = "unrecoverable"


class NotImplementedYet(PermanentError):
    """The logic for this message is not part of this build."""

    reason = "unhandled"
