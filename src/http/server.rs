//! The connection layer: appealflow's own accept loop on hyper, so that no client can
//! hold the service's connections hostage. Every connection is bounded:
//!
//! - a header-read timeout: a request's headers must arrive whole within it (slow-header
//!   clients are cut off);
//! - an idle timeout: a kept-alive connection with no request in flight is closed after it;
//! - a cap on open connections (kept below the process's file limit): when it is reached,
//!   the connection that has waited longest without a request in flight is closed to make
//!   room, so idle and slow clients cannot lock out a new one;
//! - the request time limits (a whole-body limit for uploads) live in the router.
//!
//! An accept error (too many open files, say) is logged and the loop waits briefly
//! instead of spinning. On shutdown, connections finish their requests and close.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tower::ServiceExt;
use tracing::{debug, warn};

/// How connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

struct Tracked {
    inflight: AtomicUsize,
    idle_since: Mutex<Instant>,
    abort: OnceLock<tokio::task::AbortHandle>,
}

impl Tracked {
    fn idle_for(&self) -> Option<Duration> {
        if self.inflight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(self.idle_since.lock().unwrap_or_else(|p| p.into_inner()).elapsed())
    }

    fn close(&self) {
        if let Some(a) = self.abort.get() {
            a.abort();
        }
    }
}

#[derive(Default)]
struct Registry {
    conns: Mutex<HashMap<u64, Arc<Tracked>>>,
    next: AtomicU64,
}

impl Registry {
    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Tracked>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn len(&self) -> usize {
        self.conns().len()
    }

    /// Closes the connection idle the longest; false when every one has a request in flight.
    fn evict_idlest(&self) -> bool {
        let mut conns = self.conns();
        let victim = conns
            .iter()
            .filter_map(|(id, t)| t.idle_for().map(|idle| (*id, idle)))
            .max_by_key(|(_, idle)| *idle)
            .map(|(id, _)| id);
        match victim.and_then(|id| conns.remove(&id)) {
            Some(t) => {
                t.close();
                true
            }
            None => false,
        }
    }

    /// Closes every connection idle for longer than `limit`.
    fn close_idle(&self, limit: Duration) -> usize {
        let mut conns = self.conns();
        let stale: Vec<u64> =
            conns.iter().filter(|(_, t)| t.idle_for().is_some_and(|idle| idle > limit)).map(|(id, _)| *id).collect();
        for id in &stale {
            if let Some(t) = conns.remove(id) {
                t.close();
            }
        }
        stale.len()
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets in-flight requests
/// finish (at most `grace`) and closes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnectionLimits,
    grace: Duration,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let registry = Arc::new(Registry::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sweeper = {
        let registry = registry.clone();
        let every = (limits.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let closed = registry.close_idle(limits.idle_timeout);
                if closed > 0 {
                    debug!(closed, "idle connections closed");
                }
            }
        })
    };
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and the like: wait for connections to close rather than spin.
                    warn!(error = %e, "accept failed; pausing before the next");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if registry.len() >= limits.max_connections && !registry.evict_idlest() {
            debug!(%peer, "every connection is busy: this one is refused");
            drop(stream);
            continue;
        }
        let id = registry.next.fetch_add(1, Ordering::SeqCst);
        let tracked = Arc::new(Tracked {
            inflight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            abort: OnceLock::new(),
        });
        registry.conns().insert(id, tracked.clone());
        let service = {
            let (router, tracked) = (router.clone(), tracked.clone());
            hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                let (router, tracked) = (router.clone(), tracked.clone());
                tracked.inflight.fetch_add(1, Ordering::SeqCst);
                req.extensions_mut().insert(ConnectInfo(peer));
                async move {
                    let response = router.oneshot(req.map(axum::body::Body::new)).await;
                    *tracked.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                    tracked.inflight.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
                }
            })
        };
        let (registry_for_task, mut stop) = (registry.clone(), stop_rx.clone());
        let task = tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout).keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        debug!(%peer, error = %e, "connection ended");
                    }
                }
                _ = async { stop.wait_for(|s| *s).await.map(|_| ()) } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            registry_for_task.conns().remove(&id);
        });
        let _ = tracked.abort.set(task.abort_handle());
    }
    let _ = stop_tx.send(true);
    let deadline = Instant::now() + grace;
    while registry.len() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sweeper.abort();
    for t in registry.conns().values() {
        t.close();
    }
    Ok(())
}
