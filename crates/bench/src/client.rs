//! The load client: keep-alive HTTP/1.1 connections (TLS or plain), one per client, each
//! sending its request over and over; latency percentiles; the server's own numbers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Serialize;

/// One request a client sends, over and over (bodies alternate to make every write real).
#[derive(Clone)]
pub struct RequestSpec {
    pub method: hyper::Method,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub bodies: Vec<Bytes>,
    /// A stream: done once its first event arrived; the connection is then closed (a new
    /// one for the next request), so each request opens a stream.
    pub stream: bool,
}

#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    /// Trust this CA (PEM) and speak TLS.
    pub tls_ca: Option<PathBuf>,
}

#[derive(Debug, Serialize, Clone)]
pub struct Stats {
    pub scenario: String,
    pub clients: usize,
    pub seconds: f64,
    pub requests: u64,
    pub errors: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

type Sender = http1::SendRequest<Full<Bytes>>;

pub(crate) async fn connect(
    target: &Target,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> anyhow::Result<Sender> {
    let tcp = tokio::net::TcpStream::connect(target.addr).await?;
    tcp.set_nodelay(true)?;
    match tls {
        Some(cfg) => {
            let name = rustls::pki_types::ServerName::try_from(target.host.clone())?;
            let stream = tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp).await?;
            let (send, conn) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            Ok(send)
        }
        None => {
            let (send, conn) = http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(conn);
            Ok(send)
        }
    }
}

pub(crate) fn tls_config(ca: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let mut cfg = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Runs `clients` connections, client `i` sending `specs[i % specs.len()]`, for `duration`
/// after a warm-up; returns the measured stats.
pub async fn load(
    name: &str,
    targets: &[Target],
    specs: &[RequestSpec],
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Stats> {
    let Some(first) = targets.first() else { anyhow::bail!("no target") };
    let tls = match &first.tls_ca {
        Some(ca) => Some(tls_config(ca)?),
        None => None,
    };
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..clients {
        let spec = specs[i % specs.len()].clone();
        // Clients spread over the targets (the nodes of a cluster) in turn.
        let target = &targets[i % targets.len()];
        let mut send =
            connect(target, tls.as_ref()).await.with_context(|| format!("connecting to {}", target.addr))?;
        let (measuring, stop, done, errors) = (measuring.clone(), stop.clone(), done.clone(), errors.clone());
        let host = target.host.clone();
        let (target, tls) = (target.clone(), tls.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::with_capacity(1 << 16);
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let body = spec.bodies.get(n % spec.bodies.len().max(1)).cloned().unwrap_or_default();
                n += 1;
                let mut req = hyper::Request::builder()
                    .method(spec.method.clone())
                    .uri(&spec.path)
                    .header("host", &host);
                for (k, v) in &spec.headers {
                    req = req.header(k, v);
                }
                let Ok(req) = req.body(Full::new(body)) else { break };
                let started = Instant::now();
                let ok = match async {
                    send.ready().await?;
                    send.send_request(req).await
                }
                .await
                {
                    Ok(resp) if spec.stream => {
                        let status = resp.status();
                        let first = resp.into_body().frame().await.is_some_and(|f| f.is_ok());
                        // The stream stays open on this connection: start a new one.
                        if let Ok(s) = connect(&target, tls.as_ref()).await {
                            send = s;
                        }
                        first && status.is_success()
                    }
                    Ok(resp) => {
                        let status = resp.status();
                        let drained = resp.into_body().collect().await.is_ok();
                        drained && status.is_success()
                    }
                    Err(_) => false,
                };
                let micros = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        latencies.push(micros);
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if !ok {
                    match connect(&target, tls.as_ref()).await {
                        Ok(s) => send = s,
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let mut last = 0;
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(1).min(duration.saturating_sub(started.elapsed()))).await;
        let now = done.load(Ordering::Relaxed);
        eprintln!(
            "bench {name}: {:>4.1}s  {:>8} req/s  ({} errors)",
            started.elapsed().as_secs_f64(),
            now - last,
            errors.load(Ordering::Relaxed)
        );
        last = now;
    }
    measuring.store(false, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<u32> = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((all.len() as f64 - 1.0) * p).round() as usize;
        f64::from(all[i]) / 1000.0
    };
    let requests = all.len() as u64;
    Ok(Stats {
        scenario: name.to_string(),
        clients,
        seconds,
        requests,
        errors: errors.load(Ordering::Relaxed),
        per_second: requests as f64 / seconds,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: all.last().map(|m| f64::from(*m) / 1000.0).unwrap_or(0.0),
    })
}

pub(crate) fn print_stats(stats: &Stats) {
    println!(
        "{:<10} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  ({} requests, {} errors)",
        stats.scenario,
        stats.per_second,
        stats.p50_ms,
        stats.p99_ms,
        stats.max_ms,
        stats.requests,
        stats.errors
    );
}

/// Writes per transaction (one fsync each), from the server's /metrics.
pub(crate) async fn scrape_batch_size(target: &Target) -> anyhow::Result<f64> {
    let tls = match &target.tls_ca {
        Some(ca) => Some(tls_config(ca)?),
        None => None,
    };
    let mut send = connect(target, tls.as_ref()).await?;
    let req = hyper::Request::builder()
        .uri("/metrics")
        .header("host", &target.host)
        .body(Full::new(Bytes::new()))?;
    let body = send.send_request(req).await?.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&body);
    let value = |name: &str| -> f64 {
        text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or(0.0)
    };
    let count = value("roost_store_commit_batch_size_count");
    let tx = value("roost_store_commit_seconds_count").max(1.0);
    eprintln!(
        "bench: writer: {:.0} transactions, {:.3} ms each, of which {:.3} ms in COMMIT (WAL write + fsync)",
        tx,
        value("roost_store_commit_seconds_sum") / tx * 1000.0,
        value("roost_store_sync_seconds_sum") / tx * 1000.0
    );
    let mean_ms = |histogram: &str| {
        value(&format!("{histogram}_sum")) / value(&format!("{histogram}_count")).max(1.0) * 1000.0
    };
    eprintln!(
        "bench: a write waited {:.3} ms on average for its transaction to start, and its request \
         resumed {:.3} ms after queueing it",
        mean_ms("roost_store_write_queue_seconds"),
        mean_ms("roost_store_write_seconds")
    );
    Ok(if count > 0.0 { value("roost_store_commit_batch_size_sum") / count } else { 0.0 })
}
