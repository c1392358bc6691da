//! Message bodies by their framing. A body is relayed as it arrives, so the
//! proxy only has to know where it ends: after `Content-Length` bytes, after
//! the last chunk and its trailers, or at the end of the stream. Chunked
//! bodies go on verbatim (chunk sizes, extensions and trailers included) and
//! are only followed here; for an HTTP/1.0 client the chunk data alone is
//! handed out, since such a client cannot read chunked framing.

use super::head::{Framing, MAX_HEAD};

/// Chunk extensions longer than this on one size line are refused: nobody
/// needs them, and they would let a peer make us scan without end.
const MAX_EXTENSION: usize = 4096;
/// The trailer section's limit, as a head's.
const MAX_TRAILERS: usize = MAX_HEAD;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(in crate::lb) enum BodyError {
    #[error("the body ended early (the peer closed the connection)")]
    Truncated,
    #[error("invalid chunked framing: {0}")]
    Chunk(&'static str),
}

/// Where a body is between reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length,
    UntilClose,
    /// In a chunk-size line's hex digits (`digits` read so far).
    Size,
    /// After the size, up to the line's CR: extensions or whitespace.
    Extension,
    /// The size line's CR was read.
    SizeLf,
    /// In chunk data (`remaining` bytes left).
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    Trailer,
    TrailerLf,
    /// The final empty line's CR was read.
    EndLf,
    Done,
}

/// A body being relayed: how much of what arrives belongs to it.
#[derive(Debug)]
pub(in crate::lb) struct Body {
    state: State,
    /// Bytes left: of the whole body (`Length`) or of the current chunk.
    remaining: u64,
    /// Hex digits of the current chunk size.
    digits: u8,
    /// Bytes of the current size line's extensions, or of all trailers.
    line: usize,
}

impl Body {
    pub fn new(framing: Framing) -> Self {
        let (state, remaining) = match framing {
            Framing::Empty | Framing::Length(0) => (State::Done, 0),
            Framing::Length(n) => (State::Length, n),
            Framing::Chunked => (State::Size, 0),
            Framing::UntilClose => (State::UntilClose, 0),
        };
        Self {
            state,
            remaining,
            digits: 0,
            line: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// How many of `input`'s first bytes belong to this body (all of them
    /// unless it ends inside `input`), following the framing past them.
    /// With `data`, the body's content alone (chunk framing taken out) is
    /// appended to it.
    pub fn take(
        &mut self,
        input: &[u8],
        mut data: Option<&mut Vec<u8>>,
    ) -> Result<usize, BodyError> {
        match self.state {
            State::Done => return Ok(0),
            State::UntilClose => {
                if let Some(d) = data {
                    d.extend_from_slice(input);
                }
                return Ok(input.len());
            }
            State::Length => {
                let n = input
                    .len()
                    .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                if let Some(d) = data {
                    d.extend_from_slice(&input[..n]);
                }
                self.remaining -= n as u64;
                if self.remaining == 0 {
                    self.state = State::Done;
                }
                return Ok(n);
            }
            _ => {}
        }
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Size => match hex(b) {
                    Some(v) => {
                        // 16 hex digits fill a u64; more would overflow.
                        if self.digits == 16 {
                            return Err(BodyError::Chunk("chunk size too large"));
                        }
                        self.remaining = self.remaining << 4 | u64::from(v);
                        self.digits += 1;
                    }
                    None if self.digits == 0 => {
                        return Err(BodyError::Chunk("no chunk size"));
                    }
                    None => match b {
                        b';' | b' ' | b'\t' => {
                            self.line = 0;
                            self.state = State::Extension;
                        }
                        b'\r' => self.state = State::SizeLf,
                        _ => return Err(BodyError::Chunk("invalid chunk size")),
                    },
                },
                State::Extension => match b {
                    b'\r' => self.state = State::SizeLf,
                    // A bare LF ends a line for some parsers and not for
                    // others: the classic way to smuggle a second message.
                    b'\n' => return Err(BodyError::Chunk("bare LF in a chunk extension")),
                    _ => {
                        self.line += 1;
                        if self.line > MAX_EXTENSION {
                            return Err(BodyError::Chunk("chunk extension too long"));
                        }
                    }
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(BodyError::Chunk("chunk size line not ended by CRLF"));
                    }
                    self.digits = 0;
                    if self.remaining == 0 {
                        self.line = 0;
                        self.state = State::TrailerStart;
                    } else {
                        self.state = State::Data;
                    }
                }
                State::Data => {
                    let n = (input.len() - i)
                        .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                    if let Some(d) = data.as_deref_mut() {
                        d.extend_from_slice(&input[i..i + n]);
                    }
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    i += n;
                    continue;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(BodyError::Chunk("chunk data not followed by CRLF"));
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(BodyError::Chunk("chunk data not followed by CRLF"));
                    }
                    self.state = State::Size;
                }
                State::TrailerStart | State::Trailer => {
                    match b {
                        b'\r' if self.state == State::TrailerStart => self.state = State::EndLf,
                        b'\r' => self.state = State::TrailerLf,
                        b'\n' => return Err(BodyError::Chunk("bare LF in the trailers")),
                        _ => self.state = State::Trailer,
                    }
                    self.line += 1;
                    if self.line > MAX_TRAILERS {
                        return Err(BodyError::Chunk("trailers too large"));
                    }
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(BodyError::Chunk("trailer line not ended by CRLF"));
                    }
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    if b != b'\n' {
                        return Err(BodyError::Chunk("last chunk not ended by CRLF"));
                    }
                    self.state = State::Done;
                    return Ok(i + 1);
                }
                State::Length | State::UntilClose | State::Done => unreachable!("handled above"),
            }
            i += 1;
        }
        Ok(input.len())
    }

    /// The sender closed its side: the end of an `UntilClose` body, and a
    /// truncated one otherwise.
    pub fn eof(&mut self) -> Result<(), BodyError> {
        match self.state {
            State::Done => Ok(()),
            State::UntilClose => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(BodyError::Truncated),
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; (bytes taken, data, done).
    fn feed(
        framing: Framing,
        input: &[u8],
        step: usize,
    ) -> Result<(usize, Vec<u8>, bool), BodyError> {
        let mut body = Body::new(framing);
        let mut data = Vec::new();
        let mut taken = 0;
        for piece in input.chunks(step) {
            let n = body.take(piece, Some(&mut data))?;
            taken += n;
            if n < piece.len() {
                break;
            }
        }
        Ok((taken, data, body.is_done()))
    }

    #[test]
    fn chunked_ends_after_trailers_in_any_split() {
        let msg = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nx-sum: 1\r\nx-more: 2\r\n\r\nGET / HTTP/1.1\r\n";
        let body_len = msg.len() - b"GET / HTTP/1.1\r\n".len();
        for step in [1, 2, 3, 7, 100] {
            let (taken, data, done) = feed(Framing::Chunked, msg, step).unwrap();
            assert!(done, "step {step}");
            assert_eq!(taken, body_len, "step {step}");
            assert_eq!(data, b"Wikipedia in\r\n\r\nchunks.");
        }
        let (taken, _, done) = feed(Framing::Chunked, b"0\r\n\r\n", 1).unwrap();
        assert_eq!((taken, done), (5, true));
    }

    #[test]
    fn chunked_framing_errors_are_refused() {
        for (bad, why) in [
            (&b"x\r\n"[..], "no chunk size"),
            (b"4\nWiki\r\n0\r\n\r\n", "invalid chunk size"),
            (b"4;a\nWiki", "bare LF in a chunk extension"),
            (b"4\r\nWikiX\r\n", "chunk data not followed by CRLF"),
            (b"4\r\nWiki\rX", "chunk data not followed by CRLF"),
            (b"0\r\nx: 1\n\r\n", "bare LF in the trailers"),
            (b"0\r\n\rX", "last chunk not ended by CRLF"),
            (b"4\rX", "chunk size line not ended by CRLF"),
            (b"10000000000000000\r\n", "chunk size too large"),
        ] {
            assert_eq!(
                feed(Framing::Chunked, bad, 1).unwrap_err(),
                BodyError::Chunk(why),
                "{bad:?}"
            );
        }
        let long = [b"1;".as_slice(), &[b'a'; MAX_EXTENSION + 1]].concat();
        assert_eq!(
            feed(Framing::Chunked, &long, 4096).unwrap_err(),
            BodyError::Chunk("chunk extension too long")
        );
    }

    #[test]
    fn length_and_until_close() {
        let (taken, data, done) = feed(Framing::Length(5), b"helloGET", 3).unwrap();
        assert_eq!((taken, data.as_slice(), done), (5, &b"hello"[..], true));
        assert!(Body::new(Framing::Length(0)).is_done());
        assert!(Body::new(Framing::Empty).is_done());
        let mut body = Body::new(Framing::Length(5));
        assert_eq!(body.take(b"hel", None), Ok(3));
        assert_eq!(body.eof(), Err(BodyError::Truncated));
        let mut body = Body::new(Framing::UntilClose);
        assert_eq!(body.take(b"anything", None), Ok(8));
        assert!(!body.is_done());
        assert_eq!(body.eof(), Ok(()));
        assert!(body.is_done());
        let mut body = Body::new(Framing::Chunked);
        assert_eq!(body.take(b"5\r\nab", None), Ok(5));
        assert_eq!(body.eof(), Err(BodyError::Truncated));
    }
}
