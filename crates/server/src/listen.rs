//! Accepting connections: plain TCP or TLS, HTTP/1.1 and HTTP/2 on one port, a bound on the
//! connections open at once, and a graceful close.
//!
//! Each connection is one task running hyper's connection future. The close signal is a flag
//! read at every poll (an atomic load) plus a notifier polled once per connection, which wakes
//! it when the flag is set. A stream's connection wakes for every event it writes, and polling
//! a server-wide notifier at each wake takes a lock that every connection shares (what the
//! accept loop of `axum-server`, used before, did twice per wake).

use std::net::TcpListener as StdListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::{Builder, UpgradeableConnection};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::Front;

/// Longest a TLS handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every listener of a server shares: the close signal and the connection bound.
pub struct Gate {
    closing: AtomicBool,
    closed: Notify,
    permits: Arc<Semaphore>,
}

/// Files the process keeps besides connections: the store's database, WAL and readers,
/// listeners, logs.
const FILES_BESIDES_CONNECTIONS: usize = 256;

/// The process's open-file limit (soft), from `/proc/self/limits`; `None` where it cannot be
/// read or is unlimited.
fn open_files_limit() -> Option<usize> {
    soft_open_files(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

fn soft_open_files(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

impl Gate {
    /// At most `max_connections` open at once over all listeners, and fewer if the process
    /// may not open that many files; past it, new connections wait in the kernel's accept
    /// queue until one closes.
    pub fn new(max_connections: usize) -> Arc<Gate> {
        let max_connections = match open_files_limit() {
            Some(files) if files.saturating_sub(FILES_BESIDES_CONNECTIONS) < max_connections => {
                let fit = files.saturating_sub(FILES_BESIDES_CONNECTIONS);
                tracing::warn!(
                    max_connections,
                    open_files_limit = files,
                    "connections limited to {fit} by the open-file limit"
                );
                fit
            }
            _ => max_connections,
        };
        Arc::new(Gate {
            closing: AtomicBool::new(false),
            closed: Notify::new(),
            permits: Arc::new(Semaphore::new(max_connections.clamp(1, Semaphore::MAX_PERMITS))),
        })
    }

    /// Stops accepting and asks every connection to finish its requests and close.
    pub fn close(&self) {
        // The flag first: a connection woken by the notifier must see it.
        self.closing.store(true, Ordering::SeqCst);
        self.closed.notify_waiters();
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    async fn closed(&self) {
        let notified = self.closed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if !self.is_closing() {
            notified.await;
        }
    }
}

/// hyper's connection settings with timers (for its keep-alive and header timeouts).
pub fn builder() -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    // Flattened writes: an event or answer is a few hundred bytes, and one `send` of one
    // buffer costs the kernel less than a `writev` of chunk header, body and trailer
    // (1 × 1,000 fan-out +4 % in alternating runs).
    b.http1().timer(TokioTimer::new()).header_read_timeout(None).writev(false);
    b.http2().timer(TokioTimer::new());
    b
}

/// Serves `router` on `listener` until the gate closes, then gives open connections `drain`
/// to finish and cuts the rest.
pub async fn serve(
    listener: StdListener,
    tls: Option<TlsAcceptor>,
    router: Front,
    builder: Builder<TokioExecutor>,
    gate: Arc<Gate>,
    drain: Duration,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    let builder = Arc::new(builder);
    let mut connections = JoinSet::new();
    let mut permit: Option<OwnedSemaphorePermit> = None;
    let (mut failed, mut last_warning) = (0u64, None);
    loop {
        tokio::select! {
            biased;
            _ = gate.closed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            p = gate.permits.clone().acquire_owned(), if permit.is_none() => match p {
                Ok(p) => permit = Some(p),
                Err(_) => break,
            },
            accepted = listener.accept(), if permit.is_some() => match accepted {
                Ok((tcp, _)) => {
                    if let Some(p) = permit.take() {
                        let (tls, router, builder, gate) = (tls.clone(), router.clone(), builder.clone(), gate.clone());
                        connections.spawn(connection(tcp, tls, router, builder, gate, p));
                    }
                }
                Err(e) => {
                    // Out of file descriptors, or the peer gave up in the queue: wait a little
                    // rather than spin, and say so at most once a minute.
                    failed += 1;
                    if last_warning.is_none_or(|t: std::time::Instant| t.elapsed() >= Duration::from_secs(60)) {
                        tracing::warn!(error = %e, failed, "accepting connections failed");
                        last_warning = Some(std::time::Instant::now());
                        failed = 0;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    let _ = tokio::time::timeout(drain, async { while connections.join_next().await.is_some() {} }).await;
    connections.shutdown().await;
    Ok(())
}

/// One connection, from its TLS handshake (if any) to its end. Holds its permit until then.
async fn connection(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    router: Front,
    builder: Arc<Builder<TokioExecutor>>,
    gate: Arc<Gate>,
    _permit: OwnedSemaphorePermit,
) {
    let service = TowerToHyperService::new(router);
    match tls {
        None => run(builder.serve_connection_with_upgrades(TokioIo::new(tcp), service), &gate).await,
        Some(acceptor) => {
            let stream = tokio::select! {
                biased;
                _ = gate.closed() => return,
                handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => match handshake {
                    Ok(Ok(stream)) => stream,
                    _ => return,
                },
            };
            run(builder.serve_connection_with_upgrades(TokioIo::new(stream), service), &gate).await
        }
    }
}

/// Drives a connection; once the gate closes, asks it to finish its requests and close.
async fn run<I>(conn: UpgradeableConnection<'_, I, TowerToHyperService<Front>, TokioExecutor>, gate: &Gate)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    use std::future::Future;
    let mut conn = std::pin::pin!(conn);
    let mut notified = std::pin::pin!(gate.closed.notified());
    let (mut registered, mut asked) = (false, false);
    let _ = std::future::poll_fn(|cx| {
        if !asked {
            if !registered {
                // Registers this task to be woken by `Gate::close` (always this task: the
                // connection future never moves to another).
                registered = true;
                let _ = notified.as_mut().poll(cx);
            }
            if gate.is_closing() {
                asked = true;
                conn.as_mut().graceful_shutdown();
            }
        }
        conn.as_mut().poll(cx)
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_open_file_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63422                63422                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(soft_open_files(limits), Some(1024));
        let unlimited = "Max open files            unlimited            unlimited            files     \n";
        assert_eq!(soft_open_files(unlimited), None);
        assert!(open_files_limit().is_some_and(|n| n > 0), "this process's own limit");
    }

    #[test]
    fn the_connection_bound_fits_under_the_open_file_limit() {
        let files = open_files_limit().unwrap_or(usize::MAX);
        let gate = Gate::new(usize::MAX / 2);
        assert!(gate.permits.available_permits() <= files.saturating_sub(FILES_BESIDES_CONNECTIONS).max(1));
    }
}
