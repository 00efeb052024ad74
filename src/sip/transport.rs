//! UDP and TCP on one port around the [`Engine`]. One task receives UDP, one accepts
//! TCP (a reader and a writer task per connection), one drives the engine's timers.
//! The engine sits behind a mutex held only for the pure processing of one message; all
//! socket I/O happens outside it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::engine::{BanInfo, Engine, Out, Registration};
use super::message::{self, Frame};
use super::{BindingStore, Directory, EventSink, Peer, SipConfig, StoredBinding, Transport};

/// Most TCP connections one address may hold: an office behind one NAT address has a
/// connection per phone. At the limit (and at the global one) a new connection takes the
/// place of the oldest one that has not authenticated anything yet; phones that did keep
/// theirs, so idle or slow connections from one address cannot lock its phones out.
const MAX_CONNS_PER_IP: usize = 256;
/// Outgoing messages queued per TCP connection before new ones are dropped.
const CONN_QUEUE: usize = 512;
/// Kernel receive buffer asked for on the UDP socket. The default (208 KiB on Linux) holds
/// ~150 datagrams, a few milliseconds of traffic at thousands of calls a second: one
/// scheduling pause of the receiving task on a busy box and the kernel drops requests and
/// replies, each a 500 ms retransmission and sometimes a lost call. 4 MiB rides out
/// ~100 ms. Linux caps it at `net.core.rmem_max`.
pub const UDP_RECV_BUFFER: usize = 4 << 20;
/// Kernel send buffer asked for on the UDP socket, so a burst of replies and timer
/// retransmissions never makes the receiving task wait for room (`net.core.wmem_max`).
pub const UDP_SEND_BUFFER: usize = 1 << 20;

/// One TCP connection: its send queue, when it opened, whether a request on it passed
/// authentication (or the box opened it), and how to close it from outside.
struct Conn {
    tx: mpsc::Sender<Vec<u8>>,
    opened: Instant,
    proven: bool,
    close: Arc<tokio::sync::Notify>,
}

struct Shared {
    engine: Mutex<Engine>,
    udp: UdpSocket,
    conns: Mutex<HashMap<SocketAddr, Conn>>,
    /// Open SIP WebSockets (their browser's address) and their send queues.
    ws: Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>,
    /// The runtime the server started on: a WebSocket's messages are processed there,
    /// whichever runtime the web server runs the socket on.
    rt: tokio::runtime::Handle,
    shutdown: watch::Receiver<bool>,
    max_conns: usize,
    /// A message must be complete this long after its first byte arrived (slow senders).
    message_timeout: Duration,
    /// A connection that has not authenticated anything is closed after this long
    /// without a complete message; one that has, after `idle_timeout`.
    unproven_idle: Duration,
    idle_timeout: Duration,
}

impl Shared {
    fn engine(&self) -> MutexGuard<'_, Engine> {
        // A panic while holding the lock would poison it; the state is still usable.
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn conns(&self) -> MutexGuard<'_, HashMap<SocketAddr, Conn>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ws(&self) -> MutexGuard<'_, HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>> {
        self.ws.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn dispatch(self: &Arc<Self>, outs: Vec<Out>) {
        for o in outs {
            match o.to.transport {
                Transport::Udp => {
                    // try_send_to avoids a wakeup when the socket is writable (always,
                    // except under kernel buffer pressure).
                    match self.udp.try_send_to(&o.data, o.to.addr) {
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            let _ = self.udp.send_to(&o.data, o.to.addr).await;
                        }
                        Err(_) => {}
                    }
                }
                Transport::Ws => {
                    // A browser is reached only over its own socket; gone is gone.
                    let tx = self.ws().get(&o.to.addr).cloned();
                    if let Some(tx) = tx {
                        let _ = tx.try_send(o.data);
                    }
                }
                Transport::Tcp => {
                    let tx = self.conns().get(&o.to.addr).map(|c| c.tx.clone());
                    match tx {
                        Some(tx) => {
                            let _ = tx.try_send(o.data);
                        }
                        None => {
                            // The phone's connection is gone: open one (RFC 3261 §18.1.1).
                            let me = self.clone();
                            tokio::spawn(async move {
                                if let Ok(Ok(s)) = tokio::time::timeout(
                                    Duration::from_secs(3),
                                    TcpStream::connect(o.to.addr),
                                )
                                .await
                                {
                                    let tx = me.clone().adopt(s, o.to.addr, true);
                                    if let Some(tx) = tx {
                                        let _ = tx.try_send(o.data);
                                    }
                                }
                            });
                        }
                    }
                }
            }
        }
    }

    /// Registers a TCP connection and starts its reader and writer. `proven`: the box
    /// opened it (to a phone or a provider).
    fn adopt(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        proven: bool,
    ) -> Option<mpsc::Sender<Vec<u8>>> {
        let (tx, rx) = mpsc::channel::<Vec<u8>>(CONN_QUEUE);
        let close = Arc::new(tokio::sync::Notify::new());
        {
            let mut conns = self.conns();
            let same_ip = conns.keys().filter(|a| a.ip() == peer.ip()).count();
            if same_ip >= MAX_CONNS_PER_IP || conns.len() >= self.max_conns {
                // Make room: the oldest connection that proved nothing (from this address
                // when it is the address that is full).
                let victim = conns
                    .iter()
                    .filter(|(a, c)| {
                        !c.proven && (same_ip < MAX_CONNS_PER_IP || a.ip() == peer.ip())
                    })
                    .min_by_key(|(_, c)| c.opened)
                    .map(|(a, _)| *a);
                match victim {
                    Some(a) => {
                        if let Some(c) = conns.remove(&a) {
                            c.close.notify_one();
                        }
                    }
                    None => return None,
                }
            }
            conns.insert(
                peer,
                Conn {
                    tx: tx.clone(),
                    opened: Instant::now(),
                    proven,
                    close: close.clone(),
                },
            );
        }
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        tokio::spawn(write_loop(wr, rx, self.shutdown.clone()));
        let me = self.clone();
        tokio::spawn(async move {
            me.clone().read_loop(rd, peer, proven, close.clone()).await;
            let mut conns = me.conns();
            // Only our own entry: an evicted connection's address may be reused.
            if conns
                .get(&peer)
                .is_some_and(|c| Arc::ptr_eq(&c.close, &close))
            {
                conns.remove(&peer);
            }
            drop(conns);
            me.engine().tcp_closed(peer);
        });
        Some(tx)
    }

    async fn read_loop(
        self: Arc<Self>,
        mut rd: tokio::net::tcp::OwnedReadHalf,
        peer: SocketAddr,
        mut proven: bool,
        close: Arc<tokio::sync::Notify>,
    ) {
        let mut framer = message::Framer::default();
        let mut chunk = vec![0u8; 16 * 1024];
        let mut shutdown = self.shutdown.clone();
        let from = Peer {
            transport: Transport::Tcp,
            addr: peer,
        };
        let mut last_message = tokio::time::Instant::now();
        // When the partial message in the buffer began.
        let mut partial_since: Option<tokio::time::Instant> = None;
        loop {
            let deadline = match partial_since {
                Some(t) => t + self.message_timeout,
                None if proven => last_message + self.idle_timeout,
                None => last_message + self.unproven_idle,
            };
            let n = tokio::select! {
                r = rd.read(&mut chunk) => match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::debug!(peer = %peer, "SIP/TCP: read or idle timeout, closing");
                    return;
                }
                _ = close.notified() => return,
                _ = shutdown.changed() => return,
            };
            framer.push(&chunk[..n]);
            loop {
                match framer.next_frame() {
                    Frame::Incomplete => break,
                    Frame::Error => {
                        tracing::debug!(peer = %peer, "SIP/TCP: framing error, closing");
                        return;
                    }
                    Frame::KeepAlive(k) => {
                        // RFC 5626 §3.5.1: a double-CRLF ping gets a single-CRLF pong.
                        if k >= 4 {
                            if let Some(c) = self.conns().get(&peer) {
                                let _ = c.tx.try_send(b"\r\n".to_vec());
                            }
                        }
                        framer.consume(k);
                    }
                    Frame::Message(len) => {
                        let mut outs = Vec::new();
                        let now_proven = {
                            let mut e = self.engine();
                            e.on_packet(&framer.data()[..len], from, Instant::now(), &mut outs);
                            !proven && e.tcp_proven(peer)
                        };
                        if now_proven {
                            proven = true;
                            if let Some(c) = self.conns().get_mut(&peer) {
                                c.proven = true;
                            }
                        }
                        framer.consume(len);
                        last_message = tokio::time::Instant::now();
                        self.dispatch(outs).await;
                    }
                }
            }
            partial_since = match (framer.pending(), partial_since) {
                (0, _) => None,
                (_, Some(t)) => Some(t),
                (_, None) => Some(tokio::time::Instant::now()),
            };
        }
    }
}

async fn write_loop(
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::Receiver<Vec<u8>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some(data) => {
                    if wr.write_all(&data).await.is_err() {
                        return;
                    }
                }
                None => return,
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// A running SIP server.
pub struct SipHandle {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// A cheap, cloneable view of a running SIP server for admin screens and the API.
#[derive(Clone)]
pub struct SipControl {
    shared: Arc<Shared>,
}

/// A browser's SIP WebSocket as the web server sees it: each text frame it receives
/// goes into `inbound` (one SIP message per frame, RFC 7118 §4); what the box sends it
/// comes out of `outbound`, which ends when the SIP server stops.
pub struct WsLink {
    pub inbound: mpsc::Sender<Vec<u8>>,
    pub outbound: mpsc::Receiver<Vec<u8>>,
}

impl SipControl {
    /// Joins a signed-in user's browser socket (from `peer`) to the engine as
    /// `extension`. Dropping `inbound` closes it: its registrations go with it.
    pub fn ws_attach(&self, peer: SocketAddr, extension: &str) -> WsLink {
        let (out_tx, outbound) = mpsc::channel(CONN_QUEUE);
        let (inbound, mut in_rx) = mpsc::channel::<Vec<u8>>(64);
        self.shared.ws().insert(peer, out_tx);
        self.shared.engine().ws_opened(peer, extension);
        let me = self.shared.clone();
        self.shared.rt.spawn(async move {
            let from = Peer {
                transport: Transport::Ws,
                addr: peer,
            };
            let mut shutdown = me.shutdown.clone();
            loop {
                let data = tokio::select! {
                    d = in_rx.recv() => match d {
                        Some(d) => d,
                        None => break,
                    },
                    _ = shutdown.changed() => break,
                };
                if data.iter().all(|b| *b == b'\r' || *b == b'\n') {
                    continue; // keep-alive
                }
                let mut outs = Vec::new();
                me.engine()
                    .on_packet(&data, from, Instant::now(), &mut outs);
                me.dispatch(outs).await;
            }
            me.ws().remove(&peer);
            let mut outs = Vec::new();
            me.engine().ws_closed(peer, Instant::now(), &mut outs);
            me.dispatch(outs).await;
        });
        WsLink { inbound, outbound }
    }

    /// The port the server listens on (UDP and TCP).
    pub fn port(&self) -> u16 {
        self.shared.engine().config().listen.port()
    }

    pub fn registrations(&self) -> Vec<Registration> {
        self.shared.engine().registrations()
    }

    /// The SIP domain phones (and the softphone) register in: `sip:EXT@domain`.
    pub fn domain(&self) -> String {
        let e = self.shared.engine();
        let c = e.config();
        c.domains
            .first()
            .cloned()
            .unwrap_or_else(|| c.realm.clone())
    }

    pub fn bans(&self) -> Vec<BanInfo> {
        self.shared.engine().bans()
    }

    pub fn release_ban(&self, ip: IpAddr) -> bool {
        self.shared.engine().release(ip)
    }

    pub fn unregister_all(&self, extension: &str) {
        self.shared.engine().unregister_all(extension)
    }

    /// Replaces trunks, routes, dial rules and outbound policies; registrations of
    /// unchanged trunks carry on.
    pub fn set_plan(&self, plan: super::trunk::Plan) {
        self.shared.engine().set_plan(plan, Instant::now())
    }

    pub fn trunk_status(&self) -> Vec<super::trunk::TrunkStatus> {
        self.shared.engine().trunk_status(Instant::now())
    }

    /// Click-to-call: rings `operator`'s phone, then connects it to `target`. Returns
    /// the call id of the events.
    pub async fn click_to_call(&self, operator: &str, target: &str) -> Result<String, String> {
        let mut outs = Vec::new();
        let r = self
            .shared
            .engine()
            .click_to_call(operator, target, Instant::now(), &mut outs);
        self.shared.dispatch(outs).await;
        r
    }
}

impl SipHandle {
    pub fn control(&self) -> SipControl {
        SipControl {
            shared: self.shared.clone(),
        }
    }

    pub fn registrations(&self) -> Vec<Registration> {
        self.shared.engine().registrations()
    }

    pub fn contact_count(&self) -> usize {
        self.shared.engine().contact_count()
    }

    pub fn bans(&self) -> Vec<BanInfo> {
        self.shared.engine().bans()
    }

    pub fn release_ban(&self, ip: IpAddr) -> bool {
        self.shared.engine().release(ip)
    }

    /// Forgets an extension's registrations (it was removed or disabled).
    pub fn unregister_all(&self, extension: &str) {
        self.shared.engine().unregister_all(extension)
    }

    /// (transactions, dialogs, cached replies) — for tests of bounded state.
    pub fn state_size(&self) -> (usize, usize, usize) {
        self.shared.engine().state_size()
    }

    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }
}

/// The UDP socket with larger kernel buffers (best effort: the kernel may cap them).
fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(UDP_RECV_BUFFER);
    let _ = s.set_send_buffer_size(UDP_SEND_BUFFER);
    // Linux reports double the size set (its bookkeeping overhead included).
    let got = s.recv_buffer_size().unwrap_or(0) / 2;
    if got < UDP_RECV_BUFFER {
        tracing::info!(
            asked = UDP_RECV_BUFFER,
            got,
            "SIP: the kernel capped the UDP receive buffer (sysctl net.core.rmem_max); \
             bursts of calls may lose datagrams"
        );
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// Binds UDP and TCP on `cfg.listen` (port 0: the UDP port chosen, reused for TCP) and
/// starts serving.
pub async fn start(
    cfg: SipConfig,
    directory: Arc<dyn Directory>,
    store: Arc<dyn BindingStore>,
    events: Arc<dyn EventSink>,
    restored: Vec<StoredBinding>,
) -> std::io::Result<SipHandle> {
    start_with_media(cfg, directory, store, events, restored, None).await
}

/// [`start`], anchoring media through `media` when given.
pub async fn start_with_media(
    mut cfg: SipConfig,
    directory: Arc<dyn Directory>,
    store: Arc<dyn BindingStore>,
    events: Arc<dyn EventSink>,
    restored: Vec<StoredBinding>,
    media: Option<Arc<dyn super::MediaPlane>>,
) -> std::io::Result<SipHandle> {
    // Port 0: the UDP port the kernel picks must be free on TCP too; another program
    // may hold it there, so pick again a few times.
    let mut tries = if cfg.listen.port() == 0 { 20 } else { 1 };
    let (udp, addr, tcp) = loop {
        let udp = bind_udp(cfg.listen)?;
        let addr = udp.local_addr()?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => break (udp, addr, tcp),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries > 1 => tries -= 1,
            Err(e) => return Err(e),
        }
    };
    cfg.listen = addr;
    let max_conns = cfg.max_tcp_connections;
    let (message_timeout, unproven_idle, idle_timeout) = (
        Duration::from_secs(cfg.tcp_message_timeout_secs.max(1)),
        Duration::from_secs(cfg.tcp_unproven_idle_secs.max(1)),
        // A registered phone may say nothing until its next REGISTER.
        Duration::from_secs(cfg.max_expires as u64 + 120),
    );
    let mut engine = Engine::new(cfg, directory, store, events, restored);
    if let Some(m) = media {
        engine.set_media(m);
    }
    let (stop, shutdown) = watch::channel(false);
    let shared = Arc::new(Shared {
        engine: Mutex::new(engine),
        udp,
        conns: Mutex::new(HashMap::new()),
        ws: Mutex::new(HashMap::new()),
        rt: tokio::runtime::Handle::current(),
        shutdown,
        max_conns,
        message_timeout,
        unproven_idle,
        idle_timeout,
    });
    let mut tasks = Vec::new();
    let s = shared.clone();
    tasks.push(tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, src) = match s.udp.recv_from(&mut buf).await {
                Ok(x) => x,
                // ICMP port unreachable from an earlier send shows up here on some OSes.
                Err(_) => continue,
            };
            if n == 0 || buf[..n].iter().all(|b| *b == b'\r' || *b == b'\n') {
                continue; // keep-alive
            }
            let mut outs = Vec::new();
            s.engine().on_packet(
                &buf[..n],
                Peer {
                    transport: Transport::Udp,
                    addr: src,
                },
                Instant::now(),
                &mut outs,
            );
            s.dispatch(outs).await;
        }
    }));
    let s = shared.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = tcp.accept().await else {
                continue;
            };
            let _ = s.clone().adopt(stream, peer, false);
        }
    }));
    let s = shared.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let mut outs = Vec::new();
            s.engine().on_tick(Instant::now(), &mut outs);
            if !outs.is_empty() {
                s.dispatch(outs).await;
            }
        }
    }));
    tracing::info!(sip = %addr, "SIP registrar/proxy listening (UDP+TCP)");
    Ok(SipHandle {
        addr,
        shared,
        stop,
        tasks,
    })
}
