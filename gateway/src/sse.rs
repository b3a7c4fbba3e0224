//! Reading a server-sent-events byte stream piece by piece: the `data:` payloads of complete
//! lines, whatever the chunk borders (a line may arrive split over many chunks).

/// A line longer than this is dropped rather than buffered without bound.
pub const MAX_LINE: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct DataLines {
    pending: Vec<u8>,
    /// The current line grew past [`MAX_LINE`]: skip it up to its newline.
    skipping: bool,
}

impl DataLines {
    /// Feed a chunk; `each` gets the payload of every `data:` line completed by it (without
    /// the prefix, one leading space and the line ending).
    pub fn push(&mut self, chunk: &[u8], mut each: impl FnMut(&[u8])) {
        let mut rest = chunk;
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            let (head, tail) = (&rest[..nl], &rest[nl + 1..]);
            rest = tail;
            if std::mem::take(&mut self.skipping) {
                self.pending.clear();
                continue;
            }
            let line: &[u8] = if self.pending.is_empty() {
                head
            } else {
                self.pending.extend_from_slice(head);
                &self.pending
            };
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(data) = line.strip_prefix(b"data:") {
                each(data.strip_prefix(b" ").unwrap_or(data));
            }
            self.pending.clear();
        }
        if !self.skipping {
            self.pending.extend_from_slice(rest);
            if self.pending.len() > MAX_LINE {
                self.pending.clear();
                self.skipping = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<String> {
        let mut lines = DataLines::default();
        let mut out = Vec::new();
        for c in chunks {
            lines.push(c, |d| out.push(String::from_utf8_lossy(d).into_owned()));
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
    fn an_endless_line_is_dropped_not_buffered() {
        let mut lines = DataLines::default();
        let mut out = Vec::new();
        let junk = vec![b'x'; MAX_LINE / 2 + 1];
        for _ in 0..3 {
            lines.push(&junk, |d| out.push(d.to_vec()));
        }
        assert!(lines.pending.len() <= MAX_LINE);
        lines.push(b"tail\ndata: ok\n", |d| out.push(d.to_vec()));
        assert_eq!(out, vec![b"ok".to_vec()]);
    }
}
