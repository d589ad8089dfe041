//! Reading one line with a bound on the memory it takes.

use bytes::BytesMut;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Appends the rest of the current line to `buf`, keeping at most `max + 1` bytes of it (so a
/// line of `max` bytes keeps its newline), and adds every byte taken from the reader to
/// `consumed`. Returns `true` at a newline, `false` at the end of what the reader holds now.
///
/// Cancel safe: bytes are consumed from the reader only once they are in `buf` and `consumed`,
/// which belong to the caller, so an interrupted call is completed by the next one.
pub(super) async fn read_line<R: AsyncBufRead + Unpin + ?Sized>(
    reader: &mut R,
    buf: &mut BytesMut,
    consumed: &mut u64,
    max: usize,
) -> std::io::Result<bool> {
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(false);
        }
        let (take, found) = match memchr::memchr(b'\n', available) {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let room = (max + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&available[..take.min(room)]);
        reader.consume(take);
        *consumed += take as u64;
        if found {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_cut_but_fully_consumed() {
        let input = b"short\nthis one is far too long\nok".to_vec();
        let mut r = tokio::io::BufReader::with_capacity(4, &input[..]);
        let (mut buf, mut consumed) = (BytesMut::new(), 0u64);
        assert!(read_line(&mut r, &mut buf, &mut consumed, 8).await.unwrap());
        assert_eq!((&buf[..], consumed), (&b"short\n"[..], 6));
        buf.clear();
        consumed = 0;
        assert!(read_line(&mut r, &mut buf, &mut consumed, 8).await.unwrap());
        assert_eq!((&buf[..], consumed), (&b"this one "[..], 25));
        buf.clear();
        consumed = 0;
        assert!(!read_line(&mut r, &mut buf, &mut consumed, 8).await.unwrap());
        assert_eq!((&buf[..], consumed), (&b"ok"[..], 2));
    }
}
