//! How the processor hands decoded items to the service: one item per call ([`PerItem`], any
//! `tower::Service<T>`), or a chunk of items per call ([`Chunks`], a `Service<Vec<T>>` that
//! answers each item's outcome, such as the batch layer's
//! [`BatchChunks`](cio_layers::batch::BatchChunks)).
//!
//! Items are read and decoded in chunks already; handing them over as chunks saves, per item,
//! the call, the future, its queue message and its wake-up, which in `cio pipe` were about a
//! fifth of its CPU.

use std::fmt::Display;
use std::future::Future;
use std::task::{Context, Poll};

use futures_util::future::{FutureExt, Map};
use tower::Service;

/// What the service answered for the items of one call.
#[derive(Debug)]
pub enum Answers<E> {
    /// One outcome per item, in the order handed over.
    Each(Vec<Result<(), E>>),
    /// One outcome for every item of the call.
    All(Result<(), E>),
}

/// The processor's view of a service: items in, each item's outcome out. Implemented by
/// [`PerItem`] and [`Chunks`]; [`Processor::new`](super::Processor::new) and
/// [`Processor::chunked`](super::Processor::chunked) pick one.
pub trait Handoff<T>: Send {
    /// The service's error, for dead letters and a failed readiness.
    type Error: Display + Send + 'static;
    /// The answer to one call.
    type Answer: Future<Output = Answers<Self::Error>> + Send + 'static;

    /// The most items one call takes (at least 1).
    fn max_items(&self) -> usize;

    /// Whether the service takes a call now (the tower contract: an error ends the run).
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>>;

    /// Hands over every item of `items` (at most [`max_items`](Self::max_items)), leaving it
    /// empty. Called only after `poll_ready` answered `Ready(Ok(()))`.
    fn call(&mut self, items: &mut Vec<T>) -> Self::Answer;
}

/// Any `Service<T>`, called once per item.
#[derive(Clone, Debug)]
pub struct PerItem<S>(pub S);

fn one<R, E>(answer: Result<R, E>) -> Answers<E> {
    Answers::All(answer.map(drop))
}

impl<S, T> Handoff<T> for PerItem<S>
where
    S: Service<T> + Send,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Display + Send + 'static,
{
    type Error = S::Error;
    type Answer = Map<S::Future, fn(Result<S::Response, S::Error>) -> Answers<S::Error>>;

    fn max_items(&self) -> usize {
        1
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, items: &mut Vec<T>) -> Self::Answer {
        let item = items.pop();
        debug_assert!(items.is_empty(), "one item per call");
        // `max_items` is 1: the processor never calls with an empty or longer `items`.
        let item = item.unwrap_or_else(|| unreachable!("PerItem called without an item"));
        self.0
            .call(item)
            .map(one::<S::Response, S::Error> as fn(_) -> _)
    }
}

/// A `Service<Vec<T>>` answering one outcome per item, called with up to `max` items at once.
#[derive(Clone, Debug)]
pub struct Chunks<S> {
    service: S,
    max: usize,
}

impl<S> Chunks<S> {
    /// Calls `service` with up to `max` items (at least 1) at once.
    pub fn new(service: S, max: usize) -> Self {
        Chunks {
            service,
            max: max.max(1),
        }
    }
}

type ManyAnswer<F, E> = Map<F, fn(Result<Vec<Result<(), E>>, E>) -> Answers<E>>;

fn many<E>(answer: Result<Vec<Result<(), E>>, E>) -> Answers<E> {
    match answer {
        Ok(each) => Answers::Each(each),
        Err(e) => Answers::All(Err(e)),
    }
}

impl<S, T> Handoff<T> for Chunks<S>
where
    S: Service<Vec<T>, Response = Vec<Result<(), <S as Service<Vec<T>>>::Error>>> + Send,
    S::Future: Send + 'static,
    S::Error: Display + Send + 'static,
{
    type Error = S::Error;
    type Answer = ManyAnswer<S::Future, S::Error>;

    fn max_items(&self) -> usize {
        self.max
    }

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, items: &mut Vec<T>) -> Self::Answer {
        let chunk = std::mem::replace(items, Vec::with_capacity(self.max));
        self.service.call(chunk).map(many::<S::Error> as fn(_) -> _)
    }
}
