use std::sync::Arc;

use tower::Layer;

use super::recorder::Recorder;
use super::{Metrics, MetricsHandle, Snapshot, DEFAULT_PREFIX};
use crate::ByError;

/// Wraps services in [`Metrics`]. Every service this layer builds, and every clone of the layer,
/// records into the same numbers (one state behind an `Arc`); build two layers for two sets.
///
/// The `metrics` facade handles are registered when the layer is built, with the recorder
/// installed at that moment: install the exporter first.
#[derive(Debug)]
pub struct MetricsLayer<C = ByError> {
    recorder: Arc<Recorder>,
    classifier: C,
}

impl MetricsLayer<ByError> {
    /// A layer whose numbers carry the label `name="{name}"`, under the prefix
    /// [`DEFAULT_PREFIX`], judging errors by their own [`ClassifyError`](crate::ClassifyError).
    pub fn new(name: impl Into<String>) -> Self {
        MetricsLayer::builder(name).build()
    }

    /// Starts a layer with another prefix or classifier.
    pub fn builder(name: impl Into<String>) -> MetricsBuilder<ByError> {
        MetricsBuilder {
            name: name.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            classifier: ByError,
        }
    }
}

impl<C> MetricsLayer<C> {
    /// A cloneable handle on the numbers, to keep once the layer has moved into a stack.
    pub fn handle(&self) -> MetricsHandle {
        MetricsHandle::new(Arc::clone(&self.recorder))
    }

    /// The numbers since the layer was created or last reset.
    pub fn snapshot(&self) -> Snapshot {
        self.recorder.snapshot(false)
    }

    /// The numbers since the layer was created or last reset, and a new window starting now.
    pub fn snapshot_and_reset(&self) -> Snapshot {
        self.recorder.snapshot(true)
    }
}

impl<C: Clone> Clone for MetricsLayer<C> {
    fn clone(&self) -> Self {
        MetricsLayer {
            recorder: Arc::clone(&self.recorder),
            classifier: self.classifier.clone(),
        }
    }
}

impl<S, C: Clone> Layer<S> for MetricsLayer<C> {
    type Service = Metrics<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics::new(inner, self.classifier.clone(), Arc::clone(&self.recorder))
    }
}

/// Configures a [`MetricsLayer`]; from [`MetricsLayer::builder`].
#[derive(Clone, Debug)]
pub struct MetricsBuilder<C = ByError> {
    name: String,
    prefix: String,
    classifier: C,
}

impl<C> MetricsBuilder<C> {
    /// The prefix of the metric names: `{prefix}_requests_total` and so on. Default
    /// [`DEFAULT_PREFIX`].
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How errors are sorted into outcomes: any [`Classifier`](crate::Classifier), such as a
    /// closure `Fn(&E) -> Failure` for an error type that does not implement
    /// [`ClassifyError`](crate::ClassifyError).
    pub fn classifier<C2>(self, classifier: C2) -> MetricsBuilder<C2> {
        MetricsBuilder {
            name: self.name,
            prefix: self.prefix,
            classifier,
        }
    }

    /// Builds the layer and registers its metrics with the `metrics` recorder installed now.
    pub fn build(self) -> MetricsLayer<C> {
        MetricsLayer {
            recorder: Arc::new(Recorder::new(self.prefix, self.name)),
            classifier: self.classifier,
        }
    }
}
