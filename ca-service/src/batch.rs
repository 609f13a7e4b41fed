//! Group requests that are cheaper served many at a time.
//!
//! A database statement costs a round trip and a fixed amount of server work
//! however many rows it touches. Under load, the requests that queue up while one
//! batch is being served are taken together as the next batch (up to a maximum), so
//! the fixed costs are shared; when the service is idle a request is served alone,
//! at once. Issuance uses it to store certificates (group commit), EST to read what
//! each enrollment needs to know.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

/// The batching task has stopped (the runtime is shutting down), or it dropped the
/// request without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the batching task has stopped")]
pub struct Stopped;

/// A handle to a batching task: [`Batcher::call`] sends one request and waits for
/// its answer.
#[derive(Debug)]
pub struct Batcher<T, R> {
    requests: mpsc::Sender<(T, oneshot::Sender<R>)>,
}

impl<T, R> Clone for Batcher<T, R> {
    fn clone(&self) -> Self {
        Self { requests: self.requests.clone() }
    }
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Spawns the batching task on the current tokio runtime. `serve` gets each
    /// batch (at most `max_batch` requests, in arrival order) and must answer with
    /// one result per request, in the same order; at most `in_flight` batches are
    /// served at a time.
    pub fn spawn<F, Fut>(max_batch: usize, in_flight: usize, serve: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let max_batch = max_batch.max(1);
        let (requests, mut queue) = mpsc::channel::<(T, oneshot::Sender<R>)>(max_batch * 4);
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(in_flight.max(1)));
            loop {
                // Wait for a slot first: requests arriving meanwhile join the batch.
                let Ok(slot) = slots.clone().acquire_owned().await else { break };
                let mut batch = Vec::with_capacity(max_batch);
                if queue.recv_many(&mut batch, max_batch).await == 0 {
                    break;
                }
                let (items, replies): (Vec<T>, Vec<oneshot::Sender<R>>) = batch.into_iter().unzip();
                let answers = serve(items);
                tokio::spawn(async move {
                    // A caller that gave up is no reason to fail the others.
                    for (reply, answer) in replies.into_iter().zip(answers.await) {
                        let _ = reply.send(answer);
                    }
                    drop(slot);
                });
            }
        });
        Self { requests }
    }

    /// Queues `item` and waits for its answer.
    pub async fn call(&self, item: T) -> Result<R, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.requests.send((item, reply)).await.map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_requests_are_served_together_and_each_gets_its_own_answer() {
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let gate = Arc::new(Semaphore::new(0));
        let (s, g) = (sizes.clone(), gate.clone());
        let batcher = Batcher::spawn(8, 1, move |items: Vec<u32>| {
            let (s, g) = (s.clone(), g.clone());
            async move {
                s.lock().unwrap().push(items.len());
                // Hold the first batch until the rest have queued up behind it.
                g.acquire().await.unwrap().forget();
                items.into_iter().map(|i| i * 10).collect::<Vec<_>>()
            }
        });
        let first = tokio::spawn({
            let b = batcher.clone();
            async move { b.call(1).await }
        });
        while sizes.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = (2..=11)
            .map(|i| {
                let b = batcher.clone();
                tokio::spawn(async move { b.call(i).await })
            })
            .collect();
        // Let all ten queue before the first batch finishes.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        gate.add_permits(3);
        assert_eq!(first.await.unwrap(), Ok(10));
        for (i, task) in (2..=11).zip(rest) {
            assert_eq!(task.await.unwrap(), Ok(i * 10), "request {i} got another request's answer");
        }
        // One alone, then the ten queued behind it in batches of at most eight.
        assert_eq!(*sizes.lock().unwrap(), vec![1, 8, 2]);
    }

    #[tokio::test]
    async fn a_request_left_unanswered_is_an_error_not_a_hang() {
        let served = Arc::new(AtomicUsize::new(0));
        let s = served.clone();
        // Answers nothing: a broken `serve` must not leave callers waiting forever.
        let batcher = Batcher::spawn(4, 1, move |_items: Vec<u8>| {
            s.fetch_add(1, Ordering::SeqCst);
            async { Vec::<u8>::new() }
        });
        assert_eq!(batcher.call(1).await, Err(Stopped));
        assert_eq!(served.load(Ordering::SeqCst), 1);
    }
}
