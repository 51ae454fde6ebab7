"""Patch moto's SQS queue so that DeleteMessage cannot lose a message sent at the same time.

moto (5.2.x) appends a sent message to a queue's list while holding the queue's lock, but
DeleteMessage rebuilds that list without it: a message appended while a delete walks the queue
is dropped when the rebuilt list replaces the old one. With several pollers deleting while a
producer sends (the billing fan-out queues hundreds of tenant messages while workers delete
theirs), a 10,000-tenant billing run lost 3 tenant messages and never finished. Real SQS does
not lose messages; the emulator must not either.

The patch wraps the rebuild in the queue's lock (a Condition over an RLock, the one sending
takes). It is idempotent, and it refuses to run on a moto whose code it does not recognise, so
that an upgrade is noticed instead of silently running unpatched.

Usage: python patch-moto.py   (with the virtualenv's python; prints what it did)
"""

import sys

import moto.sqs.models as models

MARK = "# cms: rebuilt under the queue's lock (local/scripts/patch-moto.py)"

OLD = """        # Delete message from queue regardless of pending state
        new_messages = []
        for message in self._messages:
            if message.had_receipt_handle(receipt_handle):
                self.pending_messages.discard(message)
                self.deleted_messages.update(message.all_receipt_handles)  # type: ignore
                continue
            new_messages.append(message)
        self._messages = new_messages
"""

NEW = """        # Delete message from queue regardless of pending state
        with self._messages_lock:  """ + MARK + """
            new_messages = []
            for message in self._messages:
                if message.had_receipt_handle(receipt_handle):
                    self.pending_messages.discard(message)
                    self.deleted_messages.update(message.all_receipt_handles)  # type: ignore
                    continue
                new_messages.append(message)
            self._messages = new_messages
"""


def main() -> int:
    path = models.__file__
    with open(path, encoding="utf-8") as f:
        src = f.read()
    if MARK in src:
        print(f"moto SQS delete lock: already patched ({path})")
        return 0
    if src.count(OLD) != 1:
        print(f"moto SQS delete lock: {path} does not have the code this patch expects "
              "(another moto version?): update local/scripts/patch-moto.py", file=sys.stderr)
        return 1
    with open(path, "w", encoding="utf-8") as f:
        f.write(src.replace(OLD, NEW))
    print(f"moto SQS delete lock: patched {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
