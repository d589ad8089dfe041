//! [`ChannelSource`]: producers in the same process, through a bounded tokio channel.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::{AckError, Acknowledge, Message, Position, Source, SourceError};

/// A bounded channel whose receiving end is a [`Source`]: `capacity` messages may wait; past
/// that, [`ChannelSender::send`] waits (back-pressure reaches the producers). The source ends
/// when every sender is dropped and the queue is empty.
///
/// A producer that needs to know the outcome sends with [`ChannelSender::send_with_receipt`]
/// and awaits the [`Receipt`].
///
/// ```
/// use cio_pipeline::source::{channel, Acknowledge, Settlement, Source};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (tx, mut source) = channel(16);
/// let receipt = tx.send_with_receipt("hello").await?;
/// drop(tx);
/// let message = source.next().await?.expect("one message");
/// message.ack.ack().await?;
/// assert!(source.next().await?.is_none()); // every sender gone: the end
/// assert_eq!(receipt.settled().await, Settlement::Acked);
/// # Ok(()) }
/// ```
pub fn channel(capacity: usize) -> (ChannelSender, ChannelSource) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (
        ChannelSender { tx },
        ChannelSource {
            rx,
            next_index: 0,
            origin: super::unique_origin("channel"),
        },
    )
}

type Envelope = (Bytes, Option<oneshot::Sender<Settlement>>);

/// The sending end of a [`channel`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ChannelSender {
    tx: mpsc::Sender<Envelope>,
}

/// The source is gone (closed or dropped): the payload was not queued.
#[derive(Debug, thiserror::Error)]
#[error("the channel source is closed")]
pub struct Closed(pub Bytes);

impl ChannelSender {
    /// Queues a payload, waiting while the channel is full.
    pub async fn send(&self, payload: impl Into<Bytes>) -> Result<(), Closed> {
        self.tx
            .send((payload.into(), None))
            .await
            .map_err(|e| Closed(e.0 .0))
    }

    /// Queues a payload and returns a receipt that resolves when it is settled.
    pub async fn send_with_receipt(&self, payload: impl Into<Bytes>) -> Result<Receipt, Closed> {
        let (done, receipt) = oneshot::channel();
        self.tx
            .send((payload.into(), Some(done)))
            .await
            .map_err(|e| Closed(e.0 .0))?;
        Ok(Receipt { rx: receipt })
    }
}

/// How a message sent with a receipt was settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// Its outcome is final: delivered, or in the dead-letter sink.
    Acked,
    /// Not processed (nacked, dropped unsettled, or the source went away): send it again if it
    /// matters.
    Nacked,
}

/// Resolves when the message it was given for is settled.
#[derive(Debug)]
pub struct Receipt {
    rx: oneshot::Receiver<Settlement>,
}

impl Receipt {
    /// Waits for the settlement. A handle dropped unsettled, or a source dropped with the
    /// message still queued, reads as [`Settlement::Nacked`].
    pub async fn settled(self) -> Settlement {
        self.rx.await.unwrap_or(Settlement::Nacked)
    }
}

/// The receiving end of a [`channel`]. Positions are [`Position::Sequence`] with the message's
/// 0-based index and an origin `channel@<unique>` that no other channel (in this process or an
/// earlier run) has had: indices restart at 0 in every run, and ids derived from them must not
/// repeat an earlier run's, or Customer.io would drop new events as duplicates.
#[derive(Debug)]
pub struct ChannelSource {
    rx: mpsc::Receiver<Envelope>,
    next_index: u64,
    origin: Arc<str>,
}

impl ChannelSource {
    /// Names the origin in positions (default `channel@<unique>`). Only a name that is never
    /// reused for other messages keeps derived event ids from colliding.
    pub fn with_origin(mut self, origin: &str) -> Self {
        self.origin = Arc::from(origin);
        self
    }
}

impl Source for ChannelSource {
    type Ack = ChannelAck;

    /// Cancel safe: `mpsc::Receiver::recv` is.
    async fn next(&mut self) -> Result<Option<Message<ChannelAck>>, SourceError> {
        let Some((payload, receipt)) = self.rx.recv().await else {
            return Ok(None);
        };
        let index = self.next_index;
        self.next_index += 1;
        Ok(Some(Message::new(
            payload,
            Position::Sequence {
                origin: self.origin.clone(),
                index,
            },
            ChannelAck { receipt },
        )))
    }

    /// Refuses further sends; messages still queued are dropped, so their receipts read
    /// [`Settlement::Nacked`].
    async fn close(&mut self) -> Result<(), SourceError> {
        self.rx.close();
        while self.rx.try_recv().is_ok() {}
        Ok(())
    }
}

/// The handle of a [`ChannelSource`] message: answers its [`Receipt`], if it has one.
#[derive(Debug)]
pub struct ChannelAck {
    receipt: Option<oneshot::Sender<Settlement>>,
}

impl Acknowledge for ChannelAck {
    async fn ack(self) -> Result<(), AckError> {
        self.ack_now().unwrap_or(Ok(()))
    }

    fn ack_now(mut self) -> Result<Result<(), AckError>, Self> {
        if let Some(r) = self.receipt.take() {
            // The producer may have stopped waiting; that is its choice.
            let _ = r.send(Settlement::Acked);
        }
        Ok(Ok(()))
    }

    async fn nack(mut self) -> Result<(), AckError> {
        if let Some(r) = self.receipt.take() {
            let _ = r.send(Settlement::Nacked);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_full_channel_holds_producers_back() {
        let (tx, mut source) = channel(2);
        tx.send("1").await.unwrap();
        tx.send("2").await.unwrap();
        let third = tokio::time::timeout(Duration::from_secs(1), tx.send("3")).await;
        assert!(third.is_err(), "the third send must wait for room");
        let m = source.next().await.unwrap().unwrap();
        assert_eq!(&m.payload[..], b"1");
        tx.send("3").await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn no_two_channels_share_an_origin() {
        // Indices restart in every run: a shared origin would give a new event an old id.
        let (tx_a, mut a) = channel(1);
        let (tx_b, mut b) = channel(1);
        tx_a.send("x").await.unwrap();
        tx_b.send("x").await.unwrap();
        let (ma, mb) = (
            a.next().await.unwrap().unwrap(),
            b.next().await.unwrap().unwrap(),
        );
        assert_ne!(ma.position, mb.position);
        assert_ne!(ma.position.stable_hash(), mb.position.stable_hash());
        assert!(ma.position.origin().starts_with("channel@"));
    }

    #[tokio::test(start_paused = true)]
    async fn receipts_report_nacks_and_drops() {
        let (tx, mut source) = channel(4);
        let r1 = tx.send_with_receipt("a").await.unwrap();
        let r2 = tx.send_with_receipt("b").await.unwrap();
        let r3 = tx.send_with_receipt("c").await.unwrap();
        let m1 = source.next().await.unwrap().unwrap();
        let m2 = source.next().await.unwrap().unwrap();
        m1.ack.nack().await.unwrap();
        drop(m2);
        source.close().await.unwrap();
        assert_eq!(r1.settled().await, Settlement::Nacked);
        assert_eq!(r2.settled().await, Settlement::Nacked);
        assert_eq!(r3.settled().await, Settlement::Nacked);
        assert!(tx.send("d").await.is_err());
    }
}
