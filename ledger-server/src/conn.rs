//! Serving connections: the accept loop, TLS handshakes, and HTTP/1.1 per connection,
//! on the plain and the TLS path alike.
//!
//! Every connection is bounded in time and in number, so idle or slow clients cannot
//! use up the process's file descriptors:
//! - **header read**: the TLS handshake, and then each request's head (request line and
//!   headers), must be done within `server.header_read_timeout_seconds` of starting it
//!   (hyper's `header_read_timeout`; between requests of a kept-alive connection the
//!   same clock runs, so an idle kept-alive connection is closed by then too);
//! - **idle**: a connection with no request in progress and no bytes moving for
//!   `server.idle_timeout_seconds` is closed gracefully, and dropped after twice that
//!   if it still does not move (a client that stops reading its response);
//! - **count**: at most `server.max_connections` at once, lowered to fit the
//!   file-descriptor limit; at the cap the loop stops accepting until one closes, so
//!   new clients wait in the listen queue instead of being refused.
//!
//! A connection is its own task, so a slow handshake or client holds up no one else.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::metrics::Metrics;

/// The bounds every connection is served under.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// TLS handshake, and each request head, within this.
    pub header_read: Duration,
    /// No request in progress and no bytes moving for this long: closed.
    pub idle: Duration,
    /// Connections at once.
    pub max_connections: usize,
    /// At shutdown, how long requests in flight may take to finish.
    pub drain: Duration,
}

/// File descriptors kept free of connections, at least: the store's files, the index,
/// log reads, and the listening socket.
const FD_RESERVE_MIN: u64 = 64;

/// `configured`, lowered if the process's file-descriptor limit could not hold that
/// many connections beside the store's own files; says why when it lowered it.
pub(crate) fn fit_to_fd_limit(configured: usize) -> (usize, Option<String>) {
    let Some(soft) = fd_limit() else {
        return (configured, None);
    };
    let reserve = FD_RESERVE_MIN.max(soft / 8);
    let fits = soft.saturating_sub(reserve).max(1);
    if (configured as u64) <= fits {
        return (configured, None);
    }
    let fits = fits as usize;
    (
        fits,
        Some(format!(
            "server.max_connections = {configured} does not fit the file-descriptor limit of {soft} \
             (ulimit -n); serving at most {fits} connections at once"
        )),
    )
}

#[cfg(unix)]
fn fd_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and reads nothing else.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0;
    // rlim_t is u64 on Linux but not on every unix.
    #[allow(clippy::unnecessary_cast)]
    let soft = r.rlim_cur as u64;
    (ok && r.rlim_cur != libc::RLIM_INFINITY).then_some(soft)
}

#[cfg(not(unix))]
fn fd_limit() -> Option<u64> {
    None
}

/// Accepts on `listener` and serves `app` on every connection until `shutdown`
/// resolves; then stops accepting, asks every connection to finish (requests in
/// flight complete; idle connections close at once) and waits for them, at most
/// `limits.drain`.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    let mut told_full = false;
    loop {
        // At the cap, wait for a connection to close before accepting another: the
        // kernel's listen queue holds the newcomers meanwhile.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(s) => s,
            Err(_) => {
                if !told_full {
                    eprintln!(
                        "ledger serve: {} connections open (server.max_connections); \
                         accepting again when one closes",
                        limits.max_connections
                    );
                    told_full = true;
                }
                tokio::select! {
                    s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
                    _ = &mut shutdown => break,
                }
            }
        };
        let (sock, _addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    eprintln!("ledger serve: accept: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = &mut shutdown => break,
                    }
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        if slots.available_permits() > limits.max_connections / 2 {
            told_full = false;
        }
        let _ = sock.set_nodelay(true);
        let (app, tls, stop, metrics) =
            (app.clone(), tls.clone(), stop_rx.clone(), metrics.clone());
        tokio::spawn(async move {
            let _slot = slot;
            metrics.connection_opened();
            let reason = match tls {
                None => connection(sock, app, limits, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_read, acceptor.accept(sock)).await {
                        Ok(Ok(stream)) => connection(stream, app, limits, stop).await,
                        // A failed handshake has nothing to serve; the client saw the alert.
                        Ok(Err(_)) => "handshake_failed",
                        Err(_) => "handshake_timeout",
                    }
                }
            };
            metrics.connection_closed(reason);
        });
    }
    // Stop accepting: new connections are refused from here on.
    drop(listener);
    let _ = stop_tx.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.drain, slots.acquire_many(all))
        .await
        .is_err()
    {
        eprintln!(
            "ledger serve: {} connections still open after {} s; closing them",
            limits.max_connections - slots.available_permits(),
            limits.drain.as_secs()
        );
    }
}

/// Serves one connection until it closes; returns why it closed (a metric label).
async fn connection<I>(
    io: I,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) -> &'static str
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        io,
        activity: activity.clone(),
    });
    let inner = TowerToHyperService::new(app);
    let counted = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let busy = Busy::start(&counted);
        let fut = hyper::service::Service::call(&inner, req);
        async move {
            let r = fut.await;
            drop(busy);
            r
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .keep_alive(true);
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut stopping = false;
    let mut idle_closing = false;
    loop {
        let deadline = activity.last() + limits.idle;
        tokio::select! {
            r = conn.as_mut() => {
                return match r {
                    Ok(()) if idle_closing => "idle",
                    Ok(()) => "done",
                    Err(e) if e.is_timeout() => "header_timeout",
                    Err(_) => "error",
                };
            }
            changed = stop.changed(), if !stopping => {
                // Shutting down (or the server is gone): finish what is in flight.
                let _ = changed;
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(deadline) => {
                if activity.busy() {
                    // A handler is working: that is not idleness.
                    activity.touch();
                    continue;
                }
                if activity.last() + limits.idle > Instant::now() {
                    continue;
                }
                if idle_closing {
                    // Asked to close and still stuck (a response nobody reads): drop it.
                    return "idle";
                }
                idle_closing = true;
                activity.touch();
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// When a connection last moved bytes, and how many of its requests are in progress.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    fn busy(&self) -> bool {
        self.busy.load(Ordering::Relaxed) > 0
    }
}

/// A request in progress on a connection (until its handler answered).
struct Busy(Arc<Activity>);

impl Busy {
    fn start(a: &Arc<Activity>) -> Busy {
        a.busy.fetch_add(1, Ordering::Relaxed);
        Busy(a.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connection's byte stream, noting when bytes move.
struct Tracked<I> {
    io: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_fits_the_fd_limit() {
        let (n, why) = fit_to_fd_limit(1);
        assert_eq!((n, why), (1, None));
        if let Some(soft) = fd_limit() {
            let (n, why) = fit_to_fd_limit(usize::MAX / 2);
            assert!((n as u64) < soft, "{n} < {soft}");
            assert!(why.unwrap().contains("ulimit -n"));
        }
    }
}
