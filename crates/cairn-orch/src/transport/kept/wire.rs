//! Frames on a keeper's socket: a u32 big-endian length, a tag byte, then
//! that many bytes. A tag says what the bytes are: a JSON message, or a
//! script's input, output or errors as they are (an artifact of 50 MB on a
//! script's stdin is not turned into base64 and back).

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A JSON message ([`super::protocol::Request`], [`super::protocol::Reply`],
/// [`super::protocol::ShellInput`]).
pub const MESSAGE: u8 = 0;
/// Bytes for the script's (or the shell's) stdin.
pub const STDIN: u8 = 1;
pub const STDOUT: u8 = 2;
pub const STDERR: u8 = 3;

/// The largest frame read: a script's whole stdin comes in one, and a
/// length past this is a broken peer, not an input to allocate for.
const MAX_FRAME: usize = 1 << 30;

pub async fn write<W: AsyncWrite + Unpin>(w: &mut W, tag: u8, body: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(body.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "a frame past 4 GiB"))?;
    let mut head = [0u8; 5];
    head[..4].copy_from_slice(&len.to_be_bytes());
    head[4] = tag;
    w.write_all(&head).await?;
    w.write_all(body).await?;
    w.flush().await
}

pub async fn write_message<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    message: &T,
) -> std::io::Result<()> {
    let body = serde_json::to_vec(message).map_err(std::io::Error::other)?;
    write(w, MESSAGE, &body).await
}

/// The next frame; `None` when the peer closed between frames.
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<(u8, Bytes)>> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes, past the {MAX_FRAME} allowed"),
        ));
    }
    let mut body = BytesMut::zeroed(len);
    r.read_exact(&mut body).await?;
    Ok(Some((head[4], body.freeze())))
}

pub fn decode<T: DeserializeOwned>(body: &[u8]) -> std::io::Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a bad message: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_come_back_as_written_and_a_cut_frame_is_an_error() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            write(&mut a, STDIN, b"").await.unwrap();
            write(&mut a, STDOUT, &[7u8; 1000]).await.unwrap();
            write_message(&mut a, &serde_json::json!({"op": "list"}))
                .await
                .unwrap();
        });
        assert_eq!(read(&mut b).await.unwrap(), Some((STDIN, Bytes::new())));
        let (tag, body) = read(&mut b).await.unwrap().unwrap();
        assert_eq!((tag, body.len()), (STDOUT, 1000));
        let (tag, body) = read(&mut b).await.unwrap().unwrap();
        assert_eq!(tag, MESSAGE);
        let v: serde_json::Value = decode(&body).unwrap();
        assert_eq!(v["op"], "list");
        writer.await.unwrap();
        assert_eq!(read(&mut b).await.unwrap(), None);

        // A head promising more than comes, and a length past the limit.
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0, 0, 0, 9, STDOUT, 1, 2]).await.unwrap();
        drop(a);
        assert!(read(&mut b).await.is_err());
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0xff, 0xff, 0xff, 0xff, STDOUT])
            .await
            .unwrap();
        let e = read(&mut b).await.unwrap_err();
        assert!(e.to_string().contains("past"), "{e}");
        assert!(decode::<serde_json::Value>(b"{not json").is_err());
    }
}
