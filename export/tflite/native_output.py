"""Keeping TensorFlow's native start-up and conversion lines off the terminal."""

import contextlib
import io
import os
import sys
import tempfile


@contextlib.contextmanager
def native_output_captured():
    """Keeps what native code prints ("fully_quantize: 0, ...", "INFO: Created ... delegate") off the terminal.

    The calibrator and the interpreter write straight to file descriptors 1 and 2, past Python's
    sys.stdout; what was captured is replayed on stderr if the call fails.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 1)
        os.dup2(captured.fileno(), 2)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                yield
        except BaseException:
            os.dup2(saved[1], 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
