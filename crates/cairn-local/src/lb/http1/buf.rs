//! A read buffer a connection keeps for its whole life: read into, parsed
//! in place, consumed from the front.

use std::io::{self, Read as _};

use tokio::io::{AsyncReadExt, Interest};
use tokio::net::TcpStream;

/// Bytes `start..end` of `data` are read and not yet consumed.
pub(in crate::lb) struct ReadBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
    /// It grows up to this (a large head, a buffered body), never beyond.
    max: usize,
}

impl ReadBuf {
    pub fn new(initial: usize, max: usize) -> Self {
        Self {
            data: vec![0; initial],
            start: 0,
            end: 0,
            max: max.max(initial),
        }
    }

    pub fn filled(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Forgets what it holds; its size, for whoever keeps it for reuse.
    pub fn reset(&mut self) -> usize {
        self.start = 0;
        self.end = 0;
        self.data.len()
    }

    /// Drops the first `n` unread bytes.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
        if self.start == self.end {
            // Empty: the next read starts at the front, so a connection
            // that reads whole messages never moves a byte.
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads once from `s` (0: end of stream), making room first: unread
    /// bytes move to the front, then the buffer grows up to its maximum. A
    /// full buffer at its maximum is an error the caller sees as a too large
    /// message.
    ///
    /// A read that returns less than the room it was
    /// given found the socket drained, so its readiness is cleared at once
    /// (as nginx does): the next read then waits for the next epoll event
    /// instead of making a system call only to hear it would block, one
    /// such call saved per message each way. New data after this read
    /// raises a new edge-triggered event, and an end of stream already seen
    /// stays ready (tokio never clears it), so nothing is missed.
    pub async fn read_socket(&mut self, s: &mut TcpStream) -> io::Result<usize> {
        self.make_room()?;
        let room = self.data.len() - self.end;
        let n = s.read(&mut self.data[self.end..]).await?;
        self.end += n;
        if n > 0 && n < room {
            let _ = s.try_io(Interest::READABLE, || {
                Err::<(), _>(io::ErrorKind::WouldBlock.into())
            });
        }
        Ok(n)
    }

    /// Reads what has already arrived on `s`, without waiting: whether it
    /// read anything. A socket tokio has just registered is not known to
    /// be readable until the event loop's next turn reports it, though a
    /// client's first request has usually arrived by the time its
    /// connection is accepted; reading it now spares that turn (a wake and
    /// a poll of the connection's task) for each new connection. The read
    /// goes around tokio, whose readiness stays as it was: a later read
    /// that finds nothing just waits for the next event. The end of the
    /// stream is left for that later read to see, and so is an error in
    /// effect: a reset this read takes (the socket reports it once) leaves
    /// the later read an end of stream, which closes the connection all
    /// the same.
    pub fn read_arrived(&mut self, s: &TcpStream) -> bool {
        if self.make_room().is_err() {
            return false;
        }
        let socket = socket2::SockRef::from(s);
        match (&*socket).read(&mut self.data[self.end..]) {
            Ok(n) if n > 0 => {
                self.end += n;
                true
            }
            _ => false,
        }
    }

    fn make_room(&mut self) -> io::Result<()> {
        if self.end == self.data.len() {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else if self.data.len() < self.max {
                let grown = (self.data.len() * 2).clamp(1024, self.max);
                self.data.resize(grown, 0);
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    "read buffer full",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn reads_what_arrived_without_waiting() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut writer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut reader, _) = listener.accept().await.unwrap();
        let mut buf = ReadBuf::new(1024, 4096);
        assert!(!buf.read_arrived(&reader), "nothing sent yet");
        writer.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        // Bounded: loopback delivers within a few tries.
        let mut read = false;
        for _ in 0..1000 {
            if buf.read_arrived(&reader) {
                read = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert!(read);
        assert_eq!(buf.filled(), b"GET / HTTP/1.1\r\n\r\n");
        // tokio's own reads go on from there.
        writer.write_all(b"more").await.unwrap();
        drop(writer);
        assert_eq!(buf.read_socket(&mut reader).await.unwrap(), 4);
        assert_eq!(&buf.filled()[18..], b"more");
        assert_eq!(buf.read_socket(&mut reader).await.unwrap(), 0);
        assert!(
            !buf.read_arrived(&reader),
            "the end of the stream is left to read_socket"
        );
    }

    #[tokio::test]
    async fn grows_to_its_maximum_then_refuses() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut writer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut reader, _) = listener.accept().await.unwrap();
        writer.write_all(&[7u8; 10_000]).await.unwrap();
        drop(writer);
        let mut buf = ReadBuf::new(1024, 4096);
        let mut total = 0;
        // Bounded: 10,000 bytes arrive in far fewer reads.
        for _ in 0..10_000 {
            match buf.read_socket(&mut reader).await {
                Ok(n) => total += n,
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::OutOfMemory);
                    break;
                }
            }
        }
        assert_eq!((total, buf.len()), (4096, 4096));
        buf.consume(4000);
        let mut more = 0;
        while buf.len() < 4096 {
            more += buf.read_socket(&mut reader).await.unwrap();
        }
        assert_eq!(more, 4000);
        buf.consume(4096);
        assert!(buf.is_empty());
        // The rest, then the end of the stream: a short read cleared the
        // readiness, and the close is still seen.
        let mut rest = 0;
        loop {
            let n = buf.read_socket(&mut reader).await.unwrap();
            if n == 0 {
                break;
            }
            rest += n;
            buf.consume(n);
        }
        assert_eq!(rest, 10_000 - 8096);
    }
}
