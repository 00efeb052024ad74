//! A one-shot SIP OPTIONS probe for `crm doctor`: does a trunk's provider answer SIP at
//! all? Any response (even 401, 403 or 404) proves the host, port and transport are right;
//! only silence or a refused connection is a problem.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use super::message;
use super::Transport;

/// Sends OPTIONS to `host:port` and returns the status code of the first response.
pub fn options(
    host: &str,
    port: u16,
    transport: Transport,
    timeout: Duration,
) -> Result<u16, String> {
    let target: SocketAddr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let tag: u64 = rand::random();
    let request = |local: SocketAddr| {
        format!(
            "OPTIONS sip:{host}:{port} SIP/2.0\r\n\
             Via: SIP/2.0/{t} {local};branch=z9hG4bKdoctor{tag:x};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:doctor@{ip}>;tag={tag:x}\r\n\
             To: <sip:{host}>\r\n\
             Call-ID: doctor-{tag:x}@{ip}\r\n\
             CSeq: 1 OPTIONS\r\n\
             User-Agent: crm-doctor\r\n\
             Content-Length: 0\r\n\r\n",
            t = transport.name(),
            ip = local.ip(),
        )
    };
    let deadline = Instant::now() + timeout;
    match transport {
        Transport::Ws => Err(format!("{target}: a trunk is never reached over WebSocket")),
        Transport::Udp => {
            let bind = if target.is_ipv6() {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            };
            let s = UdpSocket::bind(bind).map_err(|e| e.to_string())?;
            s.connect(target).map_err(|e| e.to_string())?;
            let local = s.local_addr().map_err(|e| e.to_string())?;
            let req = request(local);
            let mut buf = vec![0u8; 8192];
            // RFC 3261 timer A: resend on UDP, doubling from 500 ms, until the deadline.
            let mut wait = Duration::from_millis(500);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(format!("no SIP answer from {target} over UDP"));
                }
                s.send(req.as_bytes()).map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(wait.min(left)))
                    .map_err(|e| e.to_string())?;
                match s.recv(&mut buf) {
                    Ok(n) => return status_of(&buf[..n], true),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        wait = (wait * 2).min(Duration::from_secs(4));
                    }
                    Err(e) => return Err(format!("{target} over UDP: {e}")),
                }
            }
        }
        Transport::Tcp => {
            let mut s = TcpStream::connect_timeout(&target, timeout)
                .map_err(|e| format!("cannot connect to {target} over TCP: {e}"))?;
            let local = s.local_addr().map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            s.write_all(request(local).as_bytes())
                .map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 8192];
            let mut have = 0;
            while Instant::now() < deadline && have < buf.len() {
                let n = s
                    .read(&mut buf[have..])
                    .map_err(|e| format!("{target}: {e}"))?;
                if n == 0 {
                    break;
                }
                have += n;
                if buf[..have].windows(4).any(|w| w == b"\r\n\r\n") {
                    return status_of(&buf[..have], false);
                }
            }
            Err(format!("no SIP answer from {target} over TCP"))
        }
    }
}

fn status_of(bytes: &[u8], datagram: bool) -> Result<u16, String> {
    let m = message::parse(bytes, datagram).map_err(|e| format!("not a SIP answer: {e:?}"))?;
    match m.code() {
        0 => Err("answered with a request, not a response".into()),
        code => Ok(code),
    }
}
