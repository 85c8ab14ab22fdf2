//! The bounded worker pool: at most `workers` model runs at once, at most
//! `queue` more waiting, and a request beyond that refused at once with
//! `503` and `Retry-After`. A request takes its [`Ticket`] before its body
//! is read, so the memory that uploads hold is bounded too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use super::Limits;

/// Seconds a refused client is asked to wait.
pub const RETRY_AFTER_S: u64 = 1;

pub struct Pool {
    /// Places in the system: running plus waiting.
    places: Arc<Semaphore>,
    workers: Arc<Semaphore>,
    timeout: Duration,
}

/// A place in the pool, held from admission until the job ends.
pub struct Ticket {
    place: OwnedSemaphorePermit,
    /// When the request's time runs out.
    deadline: Instant,
}

impl Ticket {
    /// Time left before the request's deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

impl Pool {
    pub fn new(limits: &Limits) -> Self {
        let workers = limits.workers.max(1);
        Self {
            places: Arc::new(Semaphore::new(workers + limits.queue)),
            workers: Arc::new(Semaphore::new(workers)),
            timeout: limits.timeout,
        }
    }

    /// A place for one request, or `503` when every place is taken.
    pub fn admit(&self) -> Result<Ticket, ApiError> {
        match self.places.clone().try_acquire_owned() {
            Ok(place) => Ok(Ticket {
                place,
                deadline: Instant::now() + self.timeout,
            }),
            Err(_) => Err(ApiError::busy(
                "the server is busy: every worker and queue place is taken; try again shortly",
                RETRY_AFTER_S,
            )),
        }
    }

    /// Requests running or waiting now.
    pub fn in_use(&self, limits: &Limits) -> usize {
        limits.workers.max(1) + limits.queue - self.places.available_permits()
    }

    /// Runs `job` on a blocking worker once one is free, within the
    /// ticket's deadline (`503` when it runs out). A job that overruns keeps
    /// its worker and place until it ends, so the pool stays bounded.
    pub async fn run<T, F>(&self, ticket: Ticket, job: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    {
        let left = ticket.remaining();
        let workers = self.workers.clone();
        let work = async move {
            let worker = workers
                .acquire_owned()
                .await
                .map_err(|_| ApiError::busy("the server is shutting down", RETRY_AFTER_S))?;
            let Ticket { place, .. } = ticket;
            tokio::task::spawn_blocking(move || {
                let _held = (worker, place);
                job()
            })
            .await
            .map_err(|e| ApiError::internal(&anyhow::anyhow!("a worker failed: {e}")))?
        };
        match tokio::time::timeout(left, work).await {
            Ok(result) => result,
            Err(_) => Err(ApiError::busy(
                format!(
                    "the request took longer than the server's limit of {} s",
                    self.timeout.as_secs_f64()
                ),
                RETRY_AFTER_S,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn pool(workers: usize, queue: usize, timeout_ms: u64) -> (Pool, Limits) {
        let limits = Limits {
            workers,
            queue,
            timeout: Duration::from_millis(timeout_ms),
            ..Limits::default()
        };
        (Pool::new(&limits), limits)
    }

    #[test]
    fn admission_stops_at_workers_plus_queue_and_frees_on_drop() {
        let (p, limits) = pool(1, 2, 1000);
        let held: Vec<Ticket> = (0..3).map(|_| p.admit().unwrap()).collect();
        assert_eq!(p.in_use(&limits), 3);
        let refused = p.admit().err().unwrap();
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.retry_after, Some(RETRY_AFTER_S));
        drop(held);
        assert_eq!(p.in_use(&limits), 0);
        assert!(p.admit().is_ok());
    }

    #[tokio::test]
    async fn a_job_runs_and_an_overrun_times_out_holding_its_place() {
        let (p, limits) = pool(1, 0, 200);
        let ok = p.run(p.admit().unwrap(), || Ok(41 + 1)).await.unwrap();
        assert_eq!(ok, 42);
        assert_eq!(p.in_use(&limits), 0);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let slow = p.run(p.admit().unwrap(), move || {
            let _ = rx.recv_timeout(Duration::from_secs(5));
            Ok(())
        });
        let e = slow.await.err().unwrap();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        // The overrunning job still holds the only place until it ends.
        assert!(p.admit().is_err());
        tx.send(()).unwrap();
        let t0 = Instant::now();
        while p.admit().is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "the place was never freed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
