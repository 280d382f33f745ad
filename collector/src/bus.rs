//! The bus: every sealed batch goes to every sink, as the same `Arc<TableBatch>`.
//!
//! Each subscriber has a bounded queue and publishing waits for room: a slow sink slows the
//! reader, the kernel's ring buffer absorbs the burst, and what it cannot hold is counted there.
//! Nothing is lost between the reader and the sinks.

use std::sync::Arc;

use sandwatch_schema::TableBatch;
use tokio::sync::mpsc;

use crate::CollectorError;

#[derive(Default)]
pub struct BatchBus {
    subscribers: Vec<(String, mpsc::Sender<Arc<TableBatch>>)>,
}

impl BatchBus {
    /// A new sink's queue, `capacity` batches deep.
    pub fn subscribe(&mut self, name: &str, capacity: usize) -> mpsc::Receiver<Arc<TableBatch>> {
        let (tx, rx) = mpsc::channel(capacity);
        self.subscribers.push((name.to_owned(), tx));
        rx
    }

    pub async fn publish(&self, batch: TableBatch) -> Result<(), CollectorError> {
        let batch = Arc::new(batch);
        for (name, tx) in &self.subscribers {
            tx.send(batch.clone()).await.map_err(|_| {
                CollectorError::Internal(format!(
                    "sink {name} stopped; its error is reported separately"
                ))
            })?;
        }
        Ok(())
    }
}
