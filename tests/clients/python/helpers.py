import queue
import threading
import time

WAIT = 10.0  # default bound for awaited events


class Events:
    """Thread-safe collector for kazoo watch callbacks / listener states."""

    def __init__(self):
        self.q = queue.Queue()
        self.all = []

    def __call__(self, ev):
        self.all.append(ev)
        self.q.put(ev)

    def get(self, timeout=WAIT):
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no event within %ss (seen so far: %r)" % (timeout, self.all))

    def none_within(self, timeout=0.5):
        try:
            ev = self.q.get(timeout=timeout)
        except queue.Empty:
            return True
        raise AssertionError("unexpected event %r" % (ev,))


class StateWaiter:
    """kazoo connection-state listener; wait_for(state) blocks until seen."""

    def __init__(self, client):
        self.cond = threading.Condition()
        self.seen = []
        client.add_listener(self._on)

    def _on(self, state):
        with self.cond:
            self.seen.append(state)
            self.cond.notify_all()

    def wait_for(self, state, timeout=WAIT, after=0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while state not in self.seen[after:]:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("state %s not seen within %ss (seen %r)"
                                         % (state, timeout, self.seen))
                self.cond.wait(left)


def wait_until(pred, timeout=WAIT, interval=0.05, what="condition"):
    """Bounded poll for conditions that have no event to await (e.g. 4lw output)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("%s not reached within %ss" % (what, timeout))
        time.sleep(interval)
