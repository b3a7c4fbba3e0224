//! Reading a server-sent-events byte stream piece by piece, whatever the chunk borders: the
//! `data` of each complete event. Partial lines are kept until their `\n` (a `\r` before it
//! is dropped), `data:` lines are collected until the blank line that ends the event (joined
//! with `\n`), comments and other fields are ignored. Shared by the Anthropic stream
//! translator and the session reply tap.

/// Longest line or event kept; a longer one is dropped whole rather than buffered without
/// bound.
pub const MAX_EVENT: usize = 4 << 20;

#[derive(Debug, Default)]
pub struct Events {
    /// The current line, before its `\n`.
    line: Vec<u8>,
    /// The `data` of the current event.
    data: Vec<u8>,
    has_data: bool,
    /// The current line or event is over [`MAX_EVENT`]: drop it.
    line_too_long: bool,
    event_too_long: bool,
}

impl Events {
    /// Feed a chunk; `each` gets the data of every event completed by it.
    pub fn push(&mut self, mut chunk: &[u8], mut each: impl FnMut(&[u8])) {
        while !chunk.is_empty() {
            let Some(nl) = memchr::memchr(b'\n', chunk) else {
                if self.line.len() + chunk.len() > MAX_EVENT {
                    self.line_too_long = true;
                    self.line.clear();
                } else if !self.line_too_long {
                    self.line.extend_from_slice(chunk);
                }
                return;
            };
            let (piece, rest) = (&chunk[..nl], &chunk[nl + 1..]);
            chunk = rest;
            if std::mem::take(&mut self.line_too_long) {
                self.line.clear();
                continue;
            }
            if self.line.is_empty() {
                self.on_line(piece.strip_suffix(b"\r").unwrap_or(piece), &mut each);
            } else {
                // Taken out (and put back, to keep its allocation) while the line is handled.
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(piece);
                self.on_line(line.strip_suffix(b"\r").unwrap_or(&line), &mut each);
                line.clear();
                self.line = line;
            }
        }
    }

    /// The stream ended: a last line without its `\n`, then the event without its blank
    /// line, if any.
    pub fn finish(&mut self, mut each: impl FnMut(&[u8])) {
        let line = std::mem::take(&mut self.line);
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        if !line.is_empty() && !self.line_too_long {
            self.on_line(line, &mut each);
        }
        self.on_line(b"", &mut each);
    }

    /// Bytes held for a line not yet complete (for tests of the bound).
    #[cfg(test)]
    pub fn buffered(&self) -> usize {
        self.line.len()
    }

    /// One complete line (without its `\n` / `\r\n`).
    fn on_line(&mut self, line: &[u8], each: &mut impl FnMut(&[u8])) {
        if line.is_empty() {
            if self.has_data && !self.event_too_long {
                each(&self.data);
            }
            self.data.clear();
            self.has_data = false;
            self.event_too_long = false;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(at) => {
                let v = &line[at + 1..];
                (&line[..at], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        if field != b"data" || self.event_too_long {
            return;
        }
        if self.data.len() + value.len() + 1 > MAX_EVENT {
            self.event_too_long = true;
            self.data.clear();
            return;
        }
        if self.has_data {
            self.data.push(b'\n');
        }
        self.data.extend_from_slice(value);
        self.has_data = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<String> {
        let mut events = Events::default();
        let mut out = Vec::new();
        for c in chunks {
            events.push(c, |d| out.push(String::from_utf8_lossy(d).into_owned()));
        }
        out
    }

    #[test]
    fn payloads_whatever_the_chunk_borders() {
        let stream =
            b"data: {\"a\":1}\n\n: comment\r\ndata:{\"b\":2}\r\n\r\nevent: x\ndata: [DONE]\n\n";
        let want = vec!["{\"a\":1}", "{\"b\":2}", "[DONE]"];
        assert_eq!(all(&[stream]), want);
        for cut in 0..stream.len() {
            assert_eq!(all(&[&stream[..cut], &stream[cut..]]), want, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(all(&bytes), want);
    }

    #[test]
    fn multi_line_data_is_one_event_and_finish_flushes() {
        let mut events = Events::default();
        let mut out = Vec::new();
        events.push(b"data: a\ndata: b\n\ndata: last", |d| out.push(d.to_vec()));
        events.finish(|d| out.push(d.to_vec()));
        assert_eq!(out, vec![b"a\nb".to_vec(), b"last".to_vec()]);
    }

    #[test]
    fn an_endless_line_is_dropped_not_buffered() {
        let mut events = Events::default();
        let mut out = Vec::new();
        let junk = vec![b'x'; MAX_EVENT / 2 + 1];
        for _ in 0..3 {
            events.push(&junk, |d| out.push(d.to_vec()));
        }
        assert!(events.buffered() <= MAX_EVENT);
        events.push(b"tail\ndata: ok\n\n", |d| out.push(d.to_vec()));
        assert_eq!(out, vec![b"ok".to_vec()]);
    }
}
