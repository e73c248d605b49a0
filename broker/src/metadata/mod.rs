//! The broker's view of cluster metadata: an immutable image swapped whole when the controller
//! publishes a new one. Handlers take an `Arc` snapshot and never lock.

use std::sync::Arc;

use sluice_controller::image::MetadataImage;
use tokio::sync::watch;

/// A handle on the newest committed metadata image.
#[derive(Clone)]
pub struct MetadataView {
    rx: watch::Receiver<Arc<MetadataImage>>,
}

impl MetadataView {
    pub fn new(rx: watch::Receiver<Arc<MetadataImage>>) -> Self {
        Self { rx }
    }

    /// The newest image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.rx.borrow().clone()
    }

    /// A receiver that wakes on every new image.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.rx.clone()
    }
}
