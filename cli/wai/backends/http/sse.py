"""An incremental server-sent-events reader: bytes in, each event's data out.

Written for the variants Workers AI is seen to send: CRLF or bare CR line ends, `data:` with or
without the space, `:` keep-alive comments, and events split across reads anywhere, even inside
a UTF-8 character. A last event the server closed without its blank line is still delivered,
so a `data: [DONE]` that lost only its final newline is not mistaken for a broken stream.
"""

from __future__ import annotations

import codecs


class SSEReader:
    """Feed it raw chunks in order; it returns the `data` of every event completed so far."""

    def __init__(self) -> None:
        # "replace": one bad byte from the server must not cost the rest of the reply.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""  # text of the current line, not yet ended
        self._after_cr = False  # the last chunk ended in CR: a following LF belongs to it
        self._data: list[str] = []
        self._has_data = False
        self.comments = 0  # keep-alive lines seen, for debugging

    def feed(self, chunk: bytes) -> list[str]:
        return self._text(self._decoder.decode(chunk))

    def close(self) -> list[str]:
        """The stream ended: deliver what a final, unterminated event carried."""
        events = self._text(self._decoder.decode(b"", final=True))
        if self._partial:
            self._line(self._partial)
            self._partial = ""
        if self._has_data:
            events.append(self._dispatch())
        return events

    def _text(self, text: str) -> list[str]:
        events: list[str] = []
        if not text:
            return events
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        self._after_cr = False
        start = 0
        length = len(text)
        while start < length:
            cr = text.find("\r", start)
            lf = text.find("\n", start)
            if cr < 0 and lf < 0:
                self._partial += text[start:]
                break
            end = lf if cr < 0 or (0 <= lf < cr) else cr
            line = self._partial + text[start:end]
            self._partial = ""
            if text[end] == "\r":
                if end + 1 < length:
                    start = end + 2 if text[end + 1] == "\n" else end + 1
                else:
                    self._after_cr = True
                    start = length
            else:
                start = end + 1
            if line:
                self._line(line)
            elif self._has_data:
                events.append(self._dispatch())
        return events

    def _line(self, line: str) -> None:
        if line.startswith(":"):
            self.comments += 1
            return
        name, _, value = line.partition(":")
        if name != "data":
            return  # event names, ids and retry hints mean nothing to this client
        if value.startswith(" "):
            value = value[1:]
        self._data.append(value)
        self._has_data = True

    def _dispatch(self) -> str:
        data = "\n".join(self._data)
        self._data = []
        self._has_data = False
        return data
