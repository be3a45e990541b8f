//! `roost bench fanout` and `roost bench idle`: streams under load, against Roost or nchan.
//!
//! Fan-out: `subscribers` SSE streams spread over `channels` (structures for Roost, channel ids
//! for nchan); publishers send events carrying their send time; every subscriber measures the
//! delivery latency of every event it receives. Reports delivered events/s, publishes/s and
//! latency p50/p99/max, and the server's RSS.
//!
//! Idle: opens `streams` SSE streams multiplexed over HTTP/2 connections (`per_connection`
//! each), waits for every initial event, then reports the server's RSS per stream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;

use crate::bed::Bed;

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// The message every publisher sends, to Roost and to nchan alike (the same payload size):
/// Roost needs the structure to place a channel's product data in, and keeps it in the
/// element its subscribers see, so nchan's messages carry an id of the same length.
fn message(structure_id: &str, seq: u64) -> String {
    format!("{{\"location\":{{\"structure_id\":\"{structure_id}\"}},\"sent_us\":{},\"seq\":{seq}}}", now_us())
}

/// A structure id's length (32 characters) for nchan's channel `channel`.
fn stand_in_structure_id(channel: usize) -> String {
    format!("{channel:0>32}")
}

/// Where to publish and subscribe.
#[derive(Clone)]
pub enum Peer {
    /// Roost: channel `k` is product data `/devices/bench/meter/m<k>` in structure `k`.
    /// Publishers write to `addr`; subscribers listen on `sub_addr` (another node of a
    /// cluster) or on `addr`.
    Roost { addr: SocketAddr, sub_addr: Option<SocketAddr>, tokens: Vec<String>, structures: Vec<String> },
    /// nchan: publisher `/pub?id=ch<k>`, subscriber `/sub?id=ch<k>` (EventSource).
    Nchan { addr: SocketAddr },
    /// PocketBase: channel `k` is record `records[k]`; a publish is a PATCH of its `sent_us`,
    /// a subscriber is `/api/realtime` subscribed to `thermostats/<record>`.
    PocketBase { addr: SocketAddr, token: String, records: Vec<String> },
}

impl Peer {
    fn addr(&self) -> SocketAddr {
        match self {
            Peer::Roost { addr, .. } | Peer::Nchan { addr } | Peer::PocketBase { addr, .. } => *addr,
        }
    }

    /// Where subscribers connect.
    fn sub_addr(&self) -> SocketAddr {
        match self {
            Peer::Roost { sub_addr: Some(a), .. } => *a,
            _ => self.addr(),
        }
    }

    fn subscribe(&self, channel: usize) -> hyper::Request<Empty<Bytes>> {
        let b = hyper::Request::builder().header("host", "localhost").header("accept", "text/event-stream");
        let b = match self {
            Peer::Roost { tokens, .. } => b
                .uri(format!("/devices/bench/meter/m{channel}"))
                .header("authorization", format!("Bearer {}", tokens[channel % tokens.len()])),
            Peer::Nchan { .. } => b.uri(format!("/sub?id=ch{channel}")),
            Peer::PocketBase { .. } => b.uri("/api/realtime"),
        };
        b.body(Empty::new()).unwrap_or_default()
    }

    /// PocketBase's second step: subscribe the realtime client to its channel's record.
    async fn pocketbase_subscribe(&self, first_event: &str, channel: usize) -> anyhow::Result<()> {
        let Peer::PocketBase { addr, token, records } = self else { return Ok(()) };
        let client_id = first_event
            .split("\"clientId\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .ok_or_else(|| anyhow!("no clientId in PocketBase's first event"))?;
        let body = format!(
            "{{\"clientId\":\"{client_id}\",\"subscriptions\":[\"thermostats/{}\"]}}",
            records[channel % records.len()]
        );
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        let req = hyper::Request::post("/api/realtime")
            .header("host", "localhost")
            .header("authorization", token.as_str())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let resp = send.send_request(req).await?;
        if !resp.status().is_success() {
            bail!("PocketBase realtime subscription: {}", resp.status());
        }
        Ok(())
    }

    fn publish(&self, channel: usize, seq: u64) -> hyper::Request<Full<Bytes>> {
        let b = hyper::Request::builder().header("host", "localhost");
        let req = match self {
            Peer::Roost { tokens, structures, .. } => {
                let body = message(&structures[channel % structures.len()], seq);
                b.method("PUT")
                    .uri(format!("/devices/bench/meter/m{channel}"))
                    .header("authorization", format!("Bearer {}", tokens[channel % tokens.len()]))
                    .body(Full::new(Bytes::from(body)))
            }
            Peer::Nchan { .. } => {
                let body = message(&stand_in_structure_id(channel), seq);
                b.method("POST").uri(format!("/pub?id=ch{channel}")).body(Full::new(Bytes::from(body)))
            }
            Peer::PocketBase { token, records, .. } => {
                let body = format!("{{\"sent_us\":{},\"seq\":{seq}}}", now_us());
                b.method("PATCH")
                    .uri(format!("/api/collections/thermostats/records/{}", records[channel % records.len()]))
                    .header("authorization", token.as_str())
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
            }
        };
        req.unwrap_or_default()
    }
}

#[derive(Debug, Serialize)]
pub struct FanoutStats {
    pub peer: String,
    pub subscribers: usize,
    pub channels: usize,
    pub seconds: f64,
    pub published_per_second: f64,
    /// A publish's round trip (request sent to answer read), median and 99th percentile.
    pub publish_p50_ms: f64,
    pub publish_p99_ms: f64,
    pub delivered_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub server_rss_mib: f64,
}

/// Pulls the `"sent_us":N` of every event in `text`.
fn sent_times(text: &str) -> impl Iterator<Item = u64> + '_ {
    text.match_indices("\"sent_us\":").filter_map(move |(i, m)| {
        let rest = &text[i + m.len()..];
        let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        rest[..end].parse().ok()
    })
}

pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")?.trim().trim_end_matches(" kB").trim().parse::<f64>().ok()
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

#[allow(clippy::too_many_arguments)]
pub async fn fanout(
    name: &str,
    peer: &Peer,
    server_pid: Option<u32>,
    subscribers: usize,
    channels: usize,
    rate: u64,
    publishers: usize,
    seconds: u64,
) -> anyhow::Result<FanoutStats> {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicU64::new(0));
    let mut subs = Vec::new();
    for i in 0..subscribers {
        let tcp = tokio::net::TcpStream::connect(peer.sub_addr()).await.context("subscriber connect")?;
        tcp.set_nodelay(true)?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        let resp = send.send_request(peer.subscribe(i % channels)).await?;
        if !resp.status().is_success() {
            bail!("subscriber {i}: {}", resp.status());
        }
        let (measuring, stop, delivered, ready) =
            (measuring.clone(), stop.clone(), delivered.clone(), ready.clone());
        let sub_peer = peer.clone();
        subs.push(tokio::spawn(async move {
            let mut body = resp.into_body();
            let mut lat: Vec<u32> = Vec::new();
            let mut carry: Vec<u8> = Vec::new();
            let mut first = true;
            if matches!(sub_peer, Peer::PocketBase { .. }) {
                // Its first event names the realtime client; then subscribe it.
                let mut text = String::new();
                while !text.contains("clientId") {
                    match tokio::time::timeout(Duration::from_secs(10), body.frame()).await {
                        Ok(Some(Ok(f))) => {
                            if let Ok(d) = f.into_data() {
                                text.push_str(&String::from_utf8_lossy(&d));
                            }
                        }
                        _ => return lat,
                    }
                }
                if sub_peer.pocketbase_subscribe(&text, i % channels).await.is_err() {
                    return lat;
                }
                first = false;
                ready.fetch_add(1, Ordering::Relaxed);
            }
            while !stop.load(Ordering::Relaxed) {
                let frame = match tokio::time::timeout(Duration::from_millis(200), body.frame()).await {
                    Ok(Some(Ok(f))) => f,
                    Ok(_) => break,
                    Err(_) => continue,
                };
                let Ok(data) = frame.into_data() else { continue };
                if first {
                    first = false;
                    ready.fetch_add(1, Ordering::Relaxed);
                }
                // Events can be split across reads (several missed ones arrive in one write):
                // only whole events (up to the last blank line) are counted.
                carry.extend_from_slice(&data);
                let Some(end) = carry.windows(2).rposition(|w| w == b"\n\n") else { continue };
                let whole: Vec<u8> = carry.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&whole);
                let now = now_us();
                for sent in sent_times(&text) {
                    if measuring.load(Ordering::Relaxed) {
                        lat.push(now.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    // Wait until every subscriber has its first event (Roost sends the snapshot at once; nchan
    // sends nothing until a publish, so publishing starts after a short pause either way).
    let deadline = Instant::now() + Duration::from_secs(30);
    while matches!(peer, Peer::Roost { .. } | Peer::PocketBase { .. })
        && (ready.load(Ordering::Relaxed) as usize) < subscribers
    {
        if Instant::now() > deadline {
            bail!(
                "only {} of {subscribers} subscribers got their first event",
                ready.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let published = Arc::new(AtomicU64::new(0));
    let mut pubs = Vec::new();
    let per_publisher_interval =
        if rate == 0 { None } else { Some(Duration::from_secs_f64(publishers as f64 / rate as f64)) };
    for p in 0..publishers {
        let tcp = tokio::net::TcpStream::connect(peer.addr()).await?;
        tcp.set_nodelay(true)?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        let (peer, stop, published, measuring) =
            (peer.clone(), stop.clone(), published.clone(), measuring.clone());
        pubs.push(tokio::spawn(async move {
            let mut seq = 0u64;
            let mut round_trips: Vec<u32> = Vec::new();
            let mut tick = per_publisher_interval.map(tokio::time::interval);
            while !stop.load(Ordering::Relaxed) {
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                seq += 1;
                let channel = (p + publishers * seq as usize) % channels.max(1);
                if send.ready().await.is_err() {
                    break;
                }
                let sent = Instant::now();
                let Ok(resp) = send.send_request(peer.publish(channel, seq)).await else { break };
                let ok = resp.status().is_success();
                let _ = resp.into_body().collect().await;
                if ok && measuring.load(Ordering::Relaxed) {
                    published.fetch_add(1, Ordering::Relaxed);
                    round_trips.push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                }
            }
            round_trips
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let mut last = 0;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let d = delivered.load(Ordering::Relaxed);
        eprintln!(
            "bench {name}: {:>4.1}s  {:>9} events/s delivered",
            started.elapsed().as_secs_f64(),
            d - last
        );
        last = d;
    }
    measuring.store(false, Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    let rss = server_pid.map(rss_mib).unwrap_or(0.0);
    stop.store(true, Ordering::Relaxed);
    let mut round_trips = Vec::new();
    for p in pubs {
        round_trips.extend(p.await.unwrap_or_default());
    }
    round_trips.sort_unstable();
    let mut all = Vec::new();
    for s in subs {
        all.extend(s.await.unwrap_or_default());
    }
    all.sort_unstable();
    let pct_of = |v: &[u32], q: f64| {
        if v.is_empty() { 0.0 } else { f64::from(v[((v.len() - 1) as f64 * q) as usize]) / 1000.0 }
    };
    let pct = |q: f64| pct_of(&all, q);
    Ok(FanoutStats {
        peer: name.to_string(),
        subscribers,
        channels,
        seconds: secs,
        published_per_second: published.load(Ordering::Relaxed) as f64 / secs,
        publish_p50_ms: pct_of(&round_trips, 0.5),
        publish_p99_ms: pct_of(&round_trips, 0.99),
        delivered_per_second: all.len() as f64 / secs,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: all.last().map(|m| f64::from(*m) / 1000.0).unwrap_or(0.0),
        server_rss_mib: rss,
    })
}

/// Seeds one product-data channel per structure and returns the Roost peer for a bed.
pub async fn roost_peer(bed: &Bed) -> anyhow::Result<Peer> {
    let tokens: Vec<String> = bed.homes.iter().map(|(_, t)| t.clone()).collect();
    let structures: Vec<String> = bed.homes.iter().map(|(d, _)| d.structure_id.clone()).collect();
    // With a cluster bed: publish on the first node, subscribe on the second (cross-node).
    let sub_addr = bed.others.first().map(|(_, t)| t.addr);
    let peer = Peer::Roost { addr: bed.target.addr, sub_addr, tokens, structures };
    let tcp = tokio::net::TcpStream::connect(bed.target.addr).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    for k in 0..bed.homes.len() {
        send.ready().await?;
        let resp = send.send_request(peer.publish(k, 0)).await?;
        if !resp.status().is_success() {
            bail!("seeding channel {k}: {}", resp.status());
        }
        let _ = resp.into_body().collect().await;
    }
    Ok(peer)
}

#[derive(Debug, Serialize)]
pub struct IdleStats {
    pub streams: usize,
    pub connections: usize,
    pub server_rss_mib: f64,
    pub server_rss_before_mib: f64,
    pub kib_per_stream: f64,
    pub open_seconds: f64,
}

/// Opens `streams` idle streams over HTTP/2 connections of `per_connection` streams each.
pub async fn idle(
    peer: &Peer,
    server_pid: u32,
    streams: usize,
    per_connection: usize,
) -> anyhow::Result<IdleStats> {
    let before = rss_mib(server_pid);
    let started = Instant::now();
    let ready = Arc::new(AtomicU64::new(0));
    let mut holders = Vec::new();
    let connections = streams.div_ceil(per_connection.max(1));
    for c in 0..connections {
        let tcp = tokio::net::TcpStream::connect(peer.addr()).await?;
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(65_535)
            .max_concurrent_reset_streams(0)
            .handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
            .await?;
        tokio::spawn(conn);
        let n = per_connection.min(streams - c * per_connection);
        for _ in 0..n {
            let mut send = send.clone();
            let req = peer.subscribe(0);
            let ready = ready.clone();
            holders.push(tokio::spawn(async move {
                let Ok(resp) = send.send_request(req).await else { return };
                let mut body = resp.into_body();
                if let Some(Ok(_)) = body.frame().await {
                    ready.fetch_add(1, Ordering::Relaxed);
                }
                // Hold the stream open, reading whatever comes.
                while let Some(Ok(_)) = body.frame().await {}
            }));
        }
        if c % 10 == 9 {
            eprintln!("bench idle: {} connections, {} streams ready", c + 1, ready.load(Ordering::Relaxed));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while (ready.load(Ordering::Relaxed) as usize) < streams {
        if Instant::now() > deadline {
            bail!("only {} of {streams} streams opened", ready.load(Ordering::Relaxed));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let open_seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_mib(server_pid);
    for h in holders {
        h.abort();
    }
    Ok(IdleStats {
        streams,
        connections,
        server_rss_mib: rss,
        server_rss_before_mib: before,
        kib_per_stream: (rss - before) * 1024.0 / streams as f64,
        open_seconds,
    })
}

/// Seeds a bed, starts Roost with stream limits lifted, and returns it with its peer. With
/// `store` (PostgreSQL), two nodes: publishers on one, subscribers on the other.
pub async fn roost_bed(channels: usize, store: Option<&str>) -> anyhow::Result<(Bed, Peer)> {
    let tmp = std::env::temp_dir().join(format!("roost-fanout-{}", roost_server::ids::random_b64(6)));
    let options =
        crate::bed::BedOptions { store, nodes: if store.is_some() { 2 } else { 1 }, homes_per_token: 1 };
    let bed = crate::bed::bed_on(
        &tmp,
        channels,
        false,
        &["--max-streams-per-token", "1000000", "--max-streams-per-user", "1000000"],
        &options,
    )
    .await?;
    let peer = roost_peer(&bed).await?;
    Ok((bed, peer))
}

#[derive(Debug, Serialize)]
pub struct RevokeStats {
    pub streams: usize,
    pub all_closed: bool,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Opens `streams` streams of one token, revokes it (`DELETE /oauth2/access_tokens/{token}`)
/// and measures how long each stream takes to get `auth_revoked`.
pub async fn revoke(bed: &Bed, streams: usize) -> anyhow::Result<RevokeStats> {
    let token = bed.homes[0].1.clone();
    let addr = bed.target.addr;
    let ready = Arc::new(AtomicU64::new(0));
    let (start_tx, start_rx) = tokio::sync::watch::channel(None::<Instant>);
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .uri("/metadata")
            .header("host", "localhost")
            .header("accept", "text/event-stream")
            .header("authorization", format!("Bearer {token}"))
            .body(Empty::<Bytes>::new())?;
        let resp = send.send_request(req).await?;
        let (ready, start_rx) = (ready.clone(), start_rx.clone());
        tasks.push(tokio::spawn(async move {
            let mut body = resp.into_body();
            let mut first = true;
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(data) = frame.into_data() else { continue };
                if first {
                    first = false;
                    ready.fetch_add(1, Ordering::Relaxed);
                }
                if String::from_utf8_lossy(&data).contains("event: auth_revoked") {
                    let started = *start_rx.borrow();
                    return started.map(|s| s.elapsed());
                }
            }
            None
        }));
    }
    while (ready.load(Ordering::Relaxed) as usize) < streams {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method("DELETE")
        .uri(format!("/oauth2/access_tokens/{token}"))
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())?;
    let _ = start_tx.send(Some(Instant::now()));
    let resp = send.send_request(req).await?;
    if resp.status() != hyper::StatusCode::NO_CONTENT {
        bail!("revocation answered {}", resp.status());
    }
    let mut times = Vec::new();
    for t in tasks {
        if let Ok(Ok(Some(d))) = tokio::time::timeout(Duration::from_secs(10), t).await {
            times.push(d.as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    let pct = |q: f64| if times.is_empty() { 0.0 } else { times[((times.len() - 1) as f64 * q) as usize] };
    Ok(RevokeStats {
        streams,
        all_closed: times.len() == streams,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: times.last().copied().unwrap_or(0.0),
    })
}
